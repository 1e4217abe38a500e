"""Cause of failure in CoinRun: constructed states with known answers, and real episodes."""

import numpy as np
import pytest

import envs
from envs.coinrun_state import ENEMY, LAVA, LAVA_TOP, SAW, CoinRunState
from interpret.audit.causes import (
    BUZZSAW,
    ENEMY_LEFT,
    ENEMY_RIGHT,
    LAVA_CAUSE,
    TABLE_COLUMNS,
    TIMEOUT,
    FailureCause,
    FailureLabeler,
    has_collision,
    touched_cells,
)

NOOP, RIGHT, LEFT = 4, 7, 1


@pytest.fixture(scope="module")
def labeler():
    with FailureLabeler() as labeler:
        yield labeler


@pytest.fixture(scope="module")
def env():
    env = envs.make_env("procgen:coinrun", seed=0, distribution_mode="hard")
    env.reset()
    yield env
    env.close()


@pytest.fixture()
def empty_level(env):
    """A level's start with its saws and enemies removed: the agent stands at (1.5, 1.58)."""
    env.reset(seed=3)
    return CoinRunState.from_bytes(env.get_state()).remove(SAW, ENEMY)


def real_outcome(env, state: bytes, action: int) -> tuple[bool, bool]:
    """(done, level_complete) of one real step from `state`."""
    env.set_state(state)
    _, _, done, _, info = env.step(action)
    return done, bool(info.get("level_complete", False))


def test_nothing_near_the_agent_is_no_cause(labeler, env, empty_level):
    data = empty_level.to_bytes()
    assert labeler.cause(data, RIGHT).causes == ()
    assert real_outcome(env, data, RIGHT) == (False, False)


def test_buzzsaw_on_the_agent(labeler, env, empty_level):
    agent = empty_level.agent
    index = empty_level.add_buzzsaw(agent.x + 0.9, agent.y - 0.0787)
    data = empty_level.to_bytes()
    cause = labeler.cause(data, NOOP)
    assert cause == FailureCause((BUZZSAW,), (index,))
    assert cause.category == BUZZSAW
    assert real_outcome(env, data, NOOP) == (True, False)


@pytest.mark.parametrize(("vx", "expected"), [(-0.15, ENEMY_LEFT), (0.15, ENEMY_RIGHT)])
def test_enemy_walking_into_the_agent_by_its_direction(labeler, env, empty_level, vx, expected):
    agent = empty_level.agent
    side = 1.0 if vx < 0 else -1.0  # put it on the side it walks in from
    if side < 0:
        agent.x = 3.5  # room on the left
    empty_level.add_enemy(agent.x + side * 1.1, 1.5, vx=vx)
    data = empty_level.to_bytes()
    state = CoinRunState.from_bytes(data)  # not touching before the step, by the game's tests:
    hazards = [e for e in state.entities if e.type in (SAW, ENEMY)]
    assert not any(has_collision(e, state.agent, e.collision_margin) for e in hazards)
    assert not any(obj in LAVA for _, _, obj in touched_cells(state, state.agent))
    assert labeler.cause(data, NOOP).causes == (expected,)  # ...but after the enemy moves
    assert real_outcome(env, data, NOOP) == (True, False)


def test_enemy_walking_away_is_not_a_cause(labeler, env, empty_level):
    agent = empty_level.agent
    empty_level.add_enemy(agent.x + 1.1, 1.5, vx=0.15)
    data = empty_level.to_bytes()
    assert labeler.cause(data, NOOP).causes == ()
    assert real_outcome(env, data, NOOP) == (False, False)


def test_lava_under_the_agent(labeler, env, empty_level):
    empty_level.game.grid[0, 1:3] = LAVA_TOP  # the floor cells under the agent
    data = empty_level.to_bytes()
    assert labeler.cause(data, NOOP).causes == (LAVA_CAUSE,)
    assert real_outcome(env, data, NOOP) == (True, False)


def test_timeout_on_the_last_allowed_step(labeler, env, empty_level):
    empty_level.game.header.cur_time = empty_level.timeout - 1
    data = empty_level.to_bytes()
    assert labeler.cause(data, NOOP).causes == (TIMEOUT,)
    assert real_outcome(env, data, NOOP) == (True, False)
    empty_level.game.header.cur_time = empty_level.timeout - 2
    assert labeler.cause(empty_level.to_bytes(), NOOP).causes == ()


def test_several_at_once_is_multiple(labeler, env, empty_level):
    agent = empty_level.agent
    agent.x = 2.5  # open floor on both sides (the first section's wall starts at x = 5)
    empty_level.add_buzzsaw(agent.x - 0.9, 1.5)
    empty_level.add_enemy(agent.x + 0.9, 1.5, vx=-0.15)
    data = empty_level.to_bytes()
    cause = labeler.cause(data, NOOP)
    assert cause.causes == (BUZZSAW, ENEMY_LEFT)
    assert cause.category == "multiple or other" and cause.label == "buzzsaw + enemy moving left"
    assert real_outcome(env, data, NOOP) == (True, False)


def test_failure_table_percentages():
    from interpret.audit.engine import AuditResult

    causes = [FailureCause((BUZZSAW,)), FailureCause((ENEMY_LEFT,)), FailureCause((LAVA_CAUSE,))]
    causes += [None] * 7  # completed levels
    n = len(causes)
    result = AuditResult(
        "procgen:coinrun", {}, np.arange(n), np.array([c is None for c in causes]),
        np.zeros(n), np.ones(n, dtype=int), causes, [None] * n, [], [], [],
    )  # fmt: skip
    table = result.failure_table()
    assert list(table) == [*TABLE_COLUMNS, "all failures"]
    shares = {column: 100.0 * row["rate"] for column, row in table.items()}
    expected = {BUZZSAW: 10.0, ENEMY_LEFT: 10.0, ENEMY_RIGHT: 0.0, TABLE_COLUMNS[3]: 10.0}
    assert shares == pytest.approx({**expected, "all failures": 30.0})


def test_every_real_failure_gets_a_cause_and_survived_steps_get_none(labeler):
    """Scripted runs to the right with random jumps and moves, in hard mode (all hazards)."""
    n = 8
    venv = envs.make_vec_env("procgen:coinrun", n, 1, distribution_mode="hard")
    venv.reset()
    rng = np.random.default_rng(0)
    failures, survived, labels = 0, 0, []
    while failures < 40:
        states = venv.get_states()
        actions = np.where(rng.random(n) < 0.5, 8, RIGHT)
        actions = np.where(rng.random(n) < 0.2, rng.integers(0, 15, n), actions)
        _, _, dones, infos = venv.step(actions)
        for i in range(n):
            if dones[i] and not infos[i]["level_complete"]:
                failures += 1
                labels.append(labeler.cause(states[i], int(actions[i])))
            elif not dones[i] and rng.random() < 0.02:  # a sample of steps that did not end
                survived += 1
                assert labeler.cause(states[i], int(actions[i])).causes == ()
    venv.close()
    assert all(label.causes for label in labels)
    assert survived > 0
    assert {BUZZSAW} <= {c for label in labels for c in label.causes}


def test_each_failed_episode_gets_a_cause(labeler):
    # what the audit does at every episode's end without the coin: label the state read before
    # the fatal step with the action taken there
    venv = envs.make_vec_env("procgen:coinrun", 1, 4, distribution_mode="hard")
    venv.reset()
    rng = np.random.default_rng(1)
    states, actions, dones, complete = [], [], [], []
    while sum(dones) < 6:
        states.append(venv.get_states()[0])
        action = 8 if rng.random() < 0.5 else RIGHT
        _, _, done, infos = venv.step(np.array([action]))
        actions.append(action)
        dones.append(bool(done[0]))
        complete.append(bool(infos[0].get("level_complete", False)))
    venv.close()
    failed_ends = [i for i in range(len(actions)) if dones[i] and not complete[i]]
    assert failed_ends
    labels = [labeler.cause(states[i], actions[i]) for i in failed_ends]
    assert all(cause.causes for cause in labels)
