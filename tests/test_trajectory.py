"""Trajectory recording from a real agent in a real env, GAE, and the .npz round trip."""

import numpy as np
import pytest
from tiny_models import COINRUN, saved_model

import agents
import envs
from interpret.core.trajectory import Trajectory, gae_advantages, record_trajectories


def test_gae_known_answer():
    # gamma = lambda = 1: the advantage is the sum of future rewards minus the value,
    # reset at episode ends.
    rewards = np.array([0.0, 1.0, 0.0, 2.0], dtype=np.float32)
    values = np.array([0.5, 0.5, 0.0, 1.0], dtype=np.float32)
    dones = np.array([False, True, False, False])
    adv = gae_advantages(rewards, values, dones, last_value=3.0, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(adv, [1.0 - 0.5, 1.0 - 0.5, 2.0 + 3.0 - 0.0, 2.0 + 3.0 - 1.0])
    # lambda = 0: one-step TD errors.
    adv0 = gae_advantages(rewards, values, dones, last_value=3.0, gamma=0.9, lam=0.0)
    np.testing.assert_allclose(adv0, [0.9 * 0.5 - 0.5, 1.0 - 0.5, 0.9 * 1.0, 2.0 + 0.9 * 3.0 - 1.0])


@pytest.fixture(scope="module")
def ppo_view(tmp_path_factory):
    _, path = saved_model("ours-ppo-interpretable", tmp_path_factory.mktemp("ppo"))
    return agents.load(path)


def test_record_procgen_trajectories(ppo_view, tmp_path):
    trajs = record_trajectories(
        ppo_view,
        COINRUN,
        n_envs=2,
        n_steps=40,
        seed=3,
        record_states=True,
        distribution_mode="easy",
    )
    assert len(trajs) == 2
    t = trajs[0]
    assert t.observations.shape == (40, 64, 64, 3) and t.observations.dtype == np.uint8
    assert t.logits.shape == (40, 15) and t.values.shape == (40,)
    assert t.actions.shape == (40,) and (t.level_seeds >= 0).all()
    # Recorded values and logits are the model's outputs on the recorded observations.
    out = ppo_view.outputs(ppo_view.preprocess(t.observations[:5]))
    np.testing.assert_allclose(out["value"].detach().numpy(), t.values[:5], rtol=1e-5, atol=1e-5)
    # The recorded state reproduces the recorded observation.
    env = envs.make_env(COINRUN, distribution_mode="easy")
    env.reset()
    env.set_state(t.states[7])
    np.testing.assert_array_equal(env.render(), t.observations[7])
    env.close()
    # Round trip through the file, states included.
    loaded = Trajectory.load(t.save(tmp_path / "t.npz"))
    for name in Trajectory._ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(t, name))
    assert loaded.states == t.states
    assert loaded.metadata == t.metadata and loaded.metadata["scores"] == "logits"


def test_same_seed_same_trajectory_and_epsilon_one_is_random(ppo_view):
    a = record_trajectories(ppo_view, COINRUN, n_envs=1, n_steps=20, seed=5)[0]
    b = record_trajectories(ppo_view, COINRUN, n_envs=1, n_steps=20, seed=5)[0]
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.observations, b.observations)
    greedy = record_trajectories(ppo_view, COINRUN, n_envs=2, n_steps=30, deterministic=True)
    for t in greedy:
        np.testing.assert_array_equal(t.actions, t.logits.argmax(axis=1))
    noisy = record_trajectories(ppo_view, COINRUN, n_envs=2, n_steps=30, epsilon=1.0)
    agree = np.mean([np.mean(t.actions == t.logits.argmax(axis=1)) for t in noisy])
    assert agree < 0.5  # uniform over 15 actions agrees with argmax ~1/15 of the time


def test_dqn_records_q_values(tmp_path):
    _, path = saved_model("plain-dqn-cnn", tmp_path)
    view = agents.load(path)
    (t,) = record_trajectories(view, "atari:Pong", n_envs=1, n_steps=8)
    assert t.metadata["scores"] == "q" and t.logits.shape == (8, 6)
    np.testing.assert_allclose(t.values, t.logits.max(axis=1))
    assert (t.level_seeds == -1).all()


def test_bad_arguments(ppo_view):
    with pytest.raises(ValueError, match="epsilon"):
        record_trajectories(ppo_view, COINRUN, epsilon=2.0)
    with pytest.raises(ValueError, match="procgen"):
        record_trajectories(ppo_view, "CartPole-v1", record_states=True)
