"""envs/: ids, options and errors; real Procgen, Atari, Box2D and classic-control envs."""

import numpy as np
import pytest
from gymnasium import spaces
from procgen import ProcgenGym3Env
from procgen.env import ENV_NAMES
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv

from envs import (
    PROCGEN_GAMES,
    EnvSpecError,
    ProcgenVecEnv,
    make_env,
    make_vec_env,
    parse_env_id,
    parse_options,
)

EASY = {"distribution_mode": "easy"}


def first_frame(level_seed: int, game: str = "coinrun") -> np.ndarray:
    """The first observation of `level_seed`, from a fresh procgen env made independently."""
    env = ProcgenGym3Env(num=1, env_name=game, num_levels=1, start_level=int(level_seed), **EASY)
    frame = env.observe()[1]["rgb"][0]
    env.close()
    return frame


def random_actions(n_steps: int, n_envs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 15, size=(n_steps, n_envs))


# ---- ids and options ----------------------------------------------------------------------------
def test_procgen_games_are_procgens():
    assert tuple(ENV_NAMES) == PROCGEN_GAMES


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("procgen:coinrun", ("procgen", "coinrun")),
        ("atari:Pong", ("atari", "Pong")),
        ("box2d:CarRacing-v3", ("box2d", "CarRacing-v3")),
        ("CartPole-v1", ("gym", "CartPole-v1")),
    ],
)
def test_parse_env_id(env_id, expected):
    assert parse_env_id(env_id) == expected


@pytest.mark.parametrize(
    ("env_id", "must_contain"),
    [
        ("procgen:coinrn", ["'coinrun'?", "valid games: bigfish, bossfight,", "starpilot"]),
        ("atari:Pongg", ["'Pong'?", "valid games:", "Breakout"]),
        ("box2d:CarRacing", ["'CarRacing-v3'?", "valid ids:", "LunarLander-v3"]),
        ("CartPol-v1", ["'CartPole-v1'?", "procgen:<game>, atari:<Game>, box2d:<id>"]),
        ("coinrun", ["'procgen:coinrun'?"]),
        ("procgn:coinrun", ["'procgen:coinrun'?"]),
        ("nothing-like-it", ["expected procgen:<game>"]),
    ],
)
def test_unknown_ids_raise_one_line_listing_valid(env_id, must_contain):
    with pytest.raises(EnvSpecError) as err:
        make_vec_env(env_id)
    message = str(err.value)
    assert "\n" not in message
    assert isinstance(err.value, ValueError)
    for text in must_contain:
        assert text in message


@pytest.mark.parametrize(
    ("env_id", "options", "must_contain"),
    [
        ("procgen:coinrun", {"foo": 1}, ["'foo'", "valid options: center_agent,", "num_levels"]),
        ("procgen:coinrun", {"num_level": 5}, ["'num_levels'?"]),
        ("procgen:coinrun", {"distribution_mode": "medium"}, ["easy, hard, extreme"]),
        ("procgen:coinrun", {"distribution_mode": "extreme"}, ["chaser, dodgeball"]),
        ("procgen:coinrun", {"num_levels": -1}, ["num_levels"]),
        ("procgen:coinrun", {"levels": [1, 2, 3]}, ["one level seed per env (2)"]),
        ("procgen:coinrun", {"levels": [1, 2], "num_levels": 3}, ["drop num_levels"]),
        ("atari:Pong", {"frame_stak": 2}, ["'frame_stack'?", "clip_reward"]),
        ("atari:Pong", {"clip_reward": "no"}, ["true or false"]),
        ("box2d:CarRacing-v3", {"continous": False}, ["'continuous'?", "domain_randomize"]),
        ("CartPole-v1", {"foo": 1}, ["'foo'", "valid options:", "max_episode_steps"]),
        ("CartPole-v1", {"vec_env": "threads"}, ["dummy or subproc"]),
    ],
)
def test_bad_options_raise_one_line(env_id, options, must_contain):
    with pytest.raises(EnvSpecError) as err:
        make_vec_env(env_id, 2, 0, **options)
    message = str(err.value)
    assert "\n" not in message
    for text in must_contain:
        assert text in message


def test_single_env_rejects_unknown_options():
    for env_id in ("procgen:coinrun", "atari:Pong", "CartPole-v1"):
        with pytest.raises(EnvSpecError, match="unknown option 'bogus'"):
            make_env(env_id, bogus=1)


def test_parse_options():
    pairs = ["num_levels=200", "lr=3e-4", "paint_vel_info=True", "center_agent=false"]
    pairs += ["start_level=none", "distribution_mode=easy", "levels=1,2,3", "name=a=b"]
    assert parse_options(pairs) == {
        "num_levels": 200,
        "lr": 3e-4,
        "paint_vel_info": True,
        "center_agent": False,
        "start_level": None,
        "distribution_mode": "easy",
        "levels": "1,2,3",
        "name": "a=b",
    }
    assert parse_options([]) == {}
    for bad in (["num_levels"], ["=3"], ["two words=1"], ["a=1", "a=2"]):
        with pytest.raises(EnvSpecError):
            parse_options(bad)


# ---- procgen ------------------------------------------------------------------------------------
def test_procgen_spaces_and_step():
    venv = make_vec_env("procgen:coinrun", 2, 0, **EASY)
    assert isinstance(venv, (VecEnv, ProcgenVecEnv))
    assert venv.observation_space == spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert venv.action_space == spaces.Discrete(15)
    obs = venv.reset()
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    obs, rewards, dones, infos = venv.step(np.array([1, 7]))
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    assert rewards.shape == (2,) and rewards.dtype == np.float32
    assert dones.shape == (2,) and dones.dtype == bool
    assert len(infos) == 2 and all(isinstance(info["level_seed"], int) for info in infos)
    assert venv.render("rgb_array").shape == (128, 64, 3)
    venv.close()


def test_procgen_done_steps_carry_episode_infos():
    """On a done step procgen already shows the next level: the obs is that level's first
    frame, and terminal_observation is the frame the final action was taken on."""
    n_envs, start, n_levels = 16, 100, 5
    venv = make_vec_env(
        "procgen:coinrun", n_envs, 0, num_levels=n_levels, start_level=start, **EASY
    )
    obs = venv.reset()
    returns, lengths = np.zeros(n_envs), np.zeros(n_envs, int)
    checked = 0
    for actions in random_actions(3000, n_envs):
        seeds_before = venv.current_level_seeds()
        new_obs, rewards, dones, infos = venv.step(actions)
        returns += rewards
        lengths += 1
        for i, info in enumerate(infos):
            assert info["level_seed"] == seeds_before[i]  # the level the step was played in
            assert start <= info["level_seed"] < start + n_levels
            if not dones[i]:
                assert "terminal_observation" not in info
                continue
            assert np.array_equal(info["terminal_observation"], obs[i])
            assert isinstance(info["level_complete"], bool)
            assert info["level_complete"] == (rewards[i] > 0)  # coinrun rewards only the coin
            assert info["episode"]["r"] == pytest.approx(returns[i])
            assert info["episode"]["l"] == lengths[i]
            assert info["episode"]["t"] >= 0
            new_level = venv.current_level_seeds()[i]
            assert np.array_equal(new_obs[i], first_frame(new_level))
            returns[i], lengths[i] = 0, 0
            checked += 1
        obs = new_obs
        if checked >= 3:
            break
    assert checked >= 3
    venv.close()


def test_procgen_reset_semantics():
    venv = make_vec_env("procgen:coinrun", 2, 0, **EASY)
    first = venv.reset().copy()
    assert np.array_equal(venv.reset(), first)  # nothing stepped: same episodes
    for actions in random_actions(5, 2):
        venv.step(actions)
    reset_obs = venv.reset()
    twin = make_vec_env("procgen:coinrun", 2, 0, **EASY)  # same seed, same history, same reset
    twin.reset()
    for actions in random_actions(5, 2):
        twin.step(actions)
    assert np.array_equal(twin.reset(), reset_obs)
    venv.seed(7)  # like a fresh env with seed 7
    assert np.array_equal(venv.reset(), make_vec_env("procgen:coinrun", 2, 7, **EASY).reset())
    assert [info["level_seed"] for info in venv.reset_infos] == list(venv.current_level_seeds())
    venv.close()
    twin.close()


def test_procgen_levels_mode_plays_given_levels():
    levels = [3, 7, 11]
    venv = make_vec_env("procgen:coinrun", 3, 0, levels=levels, **EASY)
    obs = venv.reset()
    assert list(venv.current_level_seeds()) == levels
    for i, level in enumerate(levels):
        assert np.array_equal(obs[i], first_frame(level))
    finished = np.zeros(3, bool)
    for actions in random_actions(1100, 3):  # coinrun times out after 1000 steps
        _, _, dones, infos = venv.step(actions)
        assert [info["level_seed"] for info in infos] == levels
        finished |= dones
        if finished.all():
            break
    assert finished.all()
    assert list(venv.current_level_seeds()) == levels  # every episode replays its level

    new_obs = venv.replace_level(1, 42)
    assert np.array_equal(new_obs, first_frame(42))
    assert list(venv.current_level_seeds()) == [3, 42, 11]
    assert venv.levels == [3, 42, 11]
    _, _, _, infos = venv.step(np.zeros(3, int))
    assert infos[1]["level_seed"] == 42
    with pytest.raises(ValueError, match="levels="):
        make_vec_env("procgen:coinrun", 1, 0).replace_level(0, 5)
    venv.close()


@pytest.mark.parametrize("levels", [None, [5, 9]])
def test_procgen_state_round_trip_replays_exactly(levels):
    options = {**EASY, "levels": levels} if levels else EASY
    venv = make_vec_env("procgen:coinrun", 2, 0, **options)
    venv.reset()
    for actions in random_actions(10, 2, seed=1):
        venv.step(actions)
    states = venv.get_states()
    assert all(isinstance(state, bytes) for state in states)
    venv.set_states(states)
    assert venv.get_states() == states
    assert venv.env_method("get_state") == states

    replay = random_actions(40, 2, seed=2)
    first = [venv.step(actions)[:3] for actions in replay]
    venv.set_states(states)
    second = [venv.step(actions)[:3] for actions in replay]
    other = make_vec_env("procgen:coinrun", 2, 123, **options)  # another env, another seed
    other.set_states(states)
    third = [other.step(actions)[:3] for actions in replay]
    for a, b, c in zip(first, second, third, strict=True):
        for x, y, z in zip(a, b, c, strict=True):
            assert np.array_equal(x, y) and np.array_equal(x, z)
    venv.env_method("set_state", states[0], indices=[1])  # per-env access
    assert venv.get_states()[1] == states[0]
    venv.close()
    other.close()


def test_procgen_single_env():
    env = make_env("procgen:coinrun", seed=0, **EASY)
    assert env.observation_space == spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == spaces.Discrete(15)
    obs, info = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert np.array_equal(obs, first_frame(info["level_seed"]))
    state = env.get_state()
    rng = np.random.default_rng(0)
    for _ in range(1100):
        last = obs
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(15)))
        assert isinstance(reward, float) and truncated is False
        if terminated:
            break
    assert terminated
    assert np.array_equal(obs, info["terminal_observation"]) and np.array_equal(obs, last)
    assert {"level_seed", "level_complete", "episode"} <= set(info)
    next_obs, next_info = env.reset()  # procgen already started the next level
    assert np.array_equal(next_obs, first_frame(next_info["level_seed"]))
    env.set_state(state)
    assert env.get_state() == state
    assert np.array_equal(env.reset(seed=0)[0], make_env("procgen:coinrun", 0, **EASY).reset()[0])
    env.close()


def test_procgen_works_with_sb3_evaluate_policy():
    class RandomPolicy:
        def predict(self, obs, state=None, episode_start=None, deterministic=False):
            return np.random.default_rng(0).integers(0, 15, len(obs)), None

    venv = make_vec_env("procgen:bigfish", 4, 0, **EASY)  # bigfish episodes end fast
    returns, lengths = evaluate_policy(RandomPolicy(), venv, 4, return_episode_rewards=True)
    assert len(returns) == len(lengths) == 4 and min(lengths) > 0
    venv.close()


# ---- atari, box2d, gymnasium --------------------------------------------------------------------
def test_atari_pong():
    venv = make_vec_env("atari:Pong", 2, 0)
    assert venv.observation_space == spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert venv.action_space == spaces.Discrete(6)
    obs = venv.reset()
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
    obs, rewards, dones, _ = venv.step(np.zeros(2, int))
    assert obs.shape == (2, 84, 84, 4) and rewards.shape == (2,) and dones.shape == (2,)

    env = make_env("atari:Pong", seed=0)
    assert env.observation_space == venv.observation_space
    single_obs, _ = env.reset()
    assert np.array_equal(single_obs, make_vec_env("atari:Pong", 1, 0).reset()[0])
    env.close()
    venv.close()

    small = make_vec_env("atari:Pong", 1, 0, frame_stack=2, clip_reward=False, screen_size=64)
    assert small.observation_space.shape == (64, 64, 2)
    small.close()


@pytest.mark.parametrize(
    ("options", "action_space"),
    [({}, spaces.Box(-1, 1, (3,))), ({"continuous": False}, spaces.Discrete(5))],
)
def test_box2d_car_racing(options, action_space):
    venv = make_vec_env("box2d:CarRacing-v3", 1, 0, **options)
    assert venv.observation_space == spaces.Box(0, 255, (96, 96, 3), np.uint8)
    assert type(venv.action_space) is type(action_space)
    assert venv.action_space.shape == action_space.shape
    if isinstance(action_space, spaces.Discrete):
        assert venv.action_space.n == 5
    assert venv.reset().shape == (1, 96, 96, 3)
    venv.close()
    env = make_env("box2d:CarRacing-v3", seed=0, **options)
    assert env.reset()[0].shape == (96, 96, 3)
    env.close()


def test_cartpole_episodes_carry_monitor_info():
    venv = make_vec_env("CartPole-v1", 2, 0)
    assert venv.observation_space.shape == (4,) and venv.action_space == spaces.Discrete(2)
    venv.reset()
    for _ in range(200):
        _, _, dones, infos = venv.step(np.zeros(2, int))  # always left: falls in ~10 steps
        if dones.any():
            info = infos[int(np.argmax(dones))]
            assert info["episode"]["l"] > 0 and "terminal_observation" in info
            break
    assert dones.any()
    venv.close()
    env = make_env("CartPole-v1", seed=3)
    assert np.array_equal(env.reset()[0], make_vec_env("CartPole-v1", 1, 3).reset()[0])


def test_subproc_vec_env():
    venv = make_vec_env("CartPole-v1", 2, 0, vec_env="subproc")
    assert isinstance(venv, SubprocVecEnv)
    assert venv.reset().shape == (2, 4)
    venv.close()
