"""Procgen state bytes: parse/write round trips on real states, and edits the game obeys."""

import numpy as np
import pytest

import envs
from envs.coinrun_state import (
    ENEMY,
    GOAL,
    LAVA_TOP,
    SAW,
    CoinRunState,
    invisible_buzzsaws,
    without_hazards,
)
from envs.procgen_state import PLAYER, StateFormatError, parse_state, write_state

RIGHT, NOOP = 7, 4


@pytest.fixture(scope="module")
def env():
    env = envs.make_env("procgen:coinrun", seed=0, distribution_mode="hard")
    env.reset()
    yield env
    env.close()


def level_with(env, predicate, seeds=range(200)):
    """The start state of the first level whose parsed state satisfies `predicate`."""
    for seed in seeds:
        env.reset(seed=seed)
        state = env.get_state()
        if predicate(CoinRunState.from_bytes(state)):
            return state
    raise AssertionError("no such level")


@pytest.mark.parametrize("mode", ["hard", "easy"])
def test_round_trip_on_real_states_mid_episode(mode):
    venv = envs.make_vec_env("procgen:coinrun", 4, 3, distribution_mode=mode, paint_vel_info=True)
    venv.reset()
    rng = np.random.default_rng(0)
    seen_times, n_done = set(), 0
    for _ in range(150):
        for data in venv.get_states():
            state = parse_state(data)
            assert write_state(state) == data
            coinrun = CoinRunState.from_bytes(data)
            assert coinrun.to_bytes() == data
            assert coinrun.game.header.paint_vel_info == 1
            seen_times.add(coinrun.cur_time)
        actions = np.where(rng.random(4) < 0.5, 8, rng.integers(0, 15, 4))
        n_done += int(venv.step(actions)[2].sum())
    venv.close()
    assert n_done > 0 and max(seen_times) > 50  # states from several episodes and far into them


def test_fields_read_as_the_game_sets_them(env):
    env.reset(seed=5)
    state = CoinRunState.from_bytes(env.get_state())
    header, agent = state.game.header, state.agent
    assert header.game_name == b"coinrun" and header.timeout == 1000 and header.cur_time == 0
    assert header.distribution_mode == 1  # hard
    assert agent.type == PLAYER and (agent.x, agent.rx) == (1.5, 0.5)  # game_reset's start
    assert agent.ry == pytest.approx(0.5787) and agent.y == pytest.approx(1.5787)
    assert state.grid.shape == (64, 64) and len(state.coin_cells()) == 1
    assert state.coinrun.gravity == pytest.approx(0.2)
    for _ in range(10):
        env.step(RIGHT)
    moved = CoinRunState.from_bytes(env.get_state())
    assert moved.cur_time == 10 and moved.agent.x > agent.x and moved.agent.vx > 0


def test_other_games_round_trip():
    for game in ("bigfish", "maze", "jumper"):
        env = envs.make_env(f"procgen:{game}", seed=1)
        env.reset()
        for _ in range(20):
            data = env.get_state()
            assert write_state(parse_state(data)) == data
            env.step(int(np.random.default_rng(0).integers(15)))
        env.close()


def test_bad_bytes_raise_state_format_error(env):
    data = env.get_state()
    with pytest.raises(StateFormatError):
        parse_state(data[:-100])
    with pytest.raises(StateFormatError):
        parse_state(data[:-4] + b"\0\0\0\0")
    with pytest.raises(StateFormatError):
        CoinRunState.from_bytes(data[:-8] + data[-4:])  # a CoinRun field missing


def test_moving_the_agent_shows_in_the_observation_and_the_next_step(env):
    env.reset(seed=7)
    start = env.get_state()
    first = env.render()
    state = CoinRunState.from_bytes(start)
    state.agent.y += 3.0  # lift it into the air
    env.set_state(state.to_bytes())
    lifted = env.render()
    assert not np.array_equal(lifted, first)
    env.step(NOOP)
    after = CoinRunState.from_bytes(env.get_state())
    assert after.agent.y > 4.0 and after.agent.vy < 0  # falling from where it was put
    env.set_state(start)
    assert np.array_equal(env.render(), first)  # the untouched bytes restore the frame


def test_removed_and_invisible_buzzsaws_are_not_drawn(env):
    start = level_with(env, lambda s: any(abs(b.x - s.agent.x) < 7 for b in s.buzzsaws()))
    env.set_state(start)
    original = env.render()
    env.set_state(without_hazards(start, (SAW,)))
    removed = env.render()
    env.set_state(invisible_buzzsaws(start))
    invisible = env.render()
    assert not np.array_equal(original, removed)
    assert np.array_equal(invisible, removed)
    edited = CoinRunState.from_bytes(invisible_buzzsaws(start))
    assert len(edited.buzzsaws()) == len(CoinRunState.from_bytes(start).buzzsaws()) > 0
    assert all(b.alpha == 0.0 for b in edited.buzzsaws())
    env.step(NOOP)  # CoinRun redraws saws as SAW/SAW2 each step; they stay invisible
    still = CoinRunState.from_bytes(env.get_state())
    assert all(b.alpha == 0.0 for b in still.buzzsaws())


def test_an_invisible_buzzsaw_on_the_path_still_kills(env):
    env.reset(seed=11)
    state = CoinRunState.from_bytes(env.get_state())
    state.remove(SAW, ENEMY)
    agent = state.agent
    state.add_buzzsaw(agent.x + 1.2, agent.y - 0.0787)  # just ahead, on the floor
    env.set_state(state.to_bytes())
    visible = env.render()
    state.make_invisible()
    env.set_state(state.to_bytes())
    assert not np.array_equal(env.render(), visible)
    done = False
    for _ in range(10):
        _, _, done, _, info = env.step(RIGHT)
        if done:
            break
    assert done and not info["level_complete"]


def test_lava_edit_and_added_enemy_are_read_back(env):
    env.reset(seed=2)
    state = CoinRunState.from_bytes(env.get_state())
    state.game.grid[0, 3] = LAVA_TOP
    index = state.add_enemy(4.5, 1.5, vx=-0.15)
    data = state.to_bytes()
    again = CoinRunState.from_bytes(data)
    assert [3, 0] in again.lava_cells().tolist()
    assert again.entities[index].type == ENEMY and again.entities[index].vx == pytest.approx(-0.15)
    env.set_state(data)
    env.step(NOOP)
    stepped = CoinRunState.from_bytes(env.get_state())
    enemy = stepped.enemies()[-1]
    assert enemy.x < 4.5  # it walks left
    assert (stepped.grid == GOAL).sum() == 1
    copied = again.copy()
    assert len(copied.remove_lava().lava_cells()) == 0
    assert [3, 0] in again.lava_cells().tolist()  # the copy's edit left the original alone
    copied.game.header.rand_gen.is_seeded = 0
    assert again.game.header.rand_gen.is_seeded == 1
