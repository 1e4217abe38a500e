"""The rollout engine (`agents.rollout.play`) against independent facts: each level is played
once, a level's recorded actions replayed in a fresh game end it the same way, per-level
streams make outcomes independent of the number of envs, and the counts of each mode."""

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.rollout import explore, level_env, level_rng, play, sample_scores, sample_uniforms

COINRUN = "procgen:coinrun"
EASY = {"distribution_mode": "easy"}
LEVELS = [11, 12, 13, 14, 15]


def runner(levels, streams):
    """Actions that mostly jump right (episodes end fast), drawn from each level's stream."""
    probs = np.full(15, 0.1 / 13)
    probs[8], probs[7] = 0.6, 0.3

    def act(obs, playing):
        return np.array([streams[k].choice(15, p=probs) if k >= 0 else 0 for k in playing])

    return act


def played(n_envs):
    """{level position: (return, length, completed, actions)} of one ``levels`` rollout."""
    streams = [level_rng(0, s) for s in LEVELS]
    venv = level_env(COINRUN, LEVELS, n_envs, 0, num_levels=7, **EASY)  # level options dropped
    taken: dict[int, list[int]] = {k: [] for k in range(len(LEVELS))}
    out = {}
    try:
        for step in play(venv, runner(LEVELS, streams), levels=LEVELS):
            for slot, k in enumerate(step.playing):
                if k >= 0:
                    taken[int(k)].append(int(step.actions[slot]))
            for end in step.ended:
                assert end.k not in out, "a level played twice"
                episode = end.info["episode"]
                out[end.k] = (episode["r"], episode["l"], end.info["level_complete"], taken[end.k])
    finally:
        venv.close()
    return out


@pytest.fixture(scope="module")
def outcomes():
    return played(2)


def test_each_level_once_and_a_replay_of_its_actions_ends_it_the_same_way(outcomes):
    assert sorted(outcomes) == list(range(len(LEVELS)))
    for k, (ret, length, completed, actions) in outcomes.items():
        assert length == len(actions)
        venv = envs.make_vec_env(COINRUN, 1, 0, levels=[LEVELS[k]], **EASY)
        try:
            venv.reset()
            for t, action in enumerate(actions):
                _, _, dones, infos = venv.step(np.array([action]))
                assert bool(dones[0]) == (t == length - 1)
            assert infos[0]["episode"]["r"] == ret and infos[0]["level_complete"] == completed
        finally:
            venv.close()


def test_outcomes_do_not_depend_on_the_number_of_envs(outcomes):
    assert played(3) == outcomes


def test_episode_and_step_counts():
    venv = envs.make_vec_env(COINRUN, 3, 0, **EASY)
    rng = np.random.default_rng(0)
    try:
        act = lambda obs, _: rng.integers(15, size=len(obs))  # noqa: E731
        ends = [end.k for step in play(venv, act, episodes=4) for end in step.ended]
        assert ends == [0, 1, 2, 3]
        steps = list(play(venv, act, steps=5, record_states=True))
        assert len(steps) == 5 and all(len(s.states) == 3 for s in steps)
        assert all((s.playing == 0).all() for s in steps)
    finally:
        venv.close()
    with pytest.raises(ValueError, match="exactly one"):
        next(play(venv, act, levels=LEVELS, steps=3))


def test_samplers():
    import torch

    scores = np.log(np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]]))
    actions = sample_uniforms(scores, "logits", False, np.array([0.69, 0.95]))
    assert actions.tolist() == [1, 2]  # CDFs (0.2, 0.7, 1) and (0.9, 0.95, 1)
    assert sample_uniforms(scores, "q", False, np.zeros(2)).tolist() == [1, 0]
    assert sample_scores(torch.as_tensor(scores), "q", False, None).tolist() == [1, 0]
    assert sample_scores(torch.as_tensor(scores), "mean", False, None) is None
    space = gym.spaces.Discrete(15)
    always = explore(np.zeros(50, np.int64), space, np.random.default_rng(0), 1.0)
    never = explore(np.zeros(50, np.int64), space, np.random.default_rng(0), 0.0)
    assert len(set(always.tolist())) > 5 and not never.any()
