"""`atari:<Game>`: ALE v5 (`frameskip=1`) with RL-Zoo preprocessing, obs uint8 (84, 84, 4).

SB3's `AtariWrapper` does no-op resets, frame skip with max-pooling, 84x84 grayscale, reward
clipping and terminal-on-life-loss; frames are stacked on the last axis (SB3's `VecFrameStack`
for vec envs, gymnasium's `FrameStackObservation` reshaped to match for a single env).
SB3's Monitor sits under the AtariWrapper, so `episode` infos report whole games, unclipped.
With terminal_on_life_loss (the default), `reset()` after a lost life continues the same game
(SB3's EpisodicLifeEnv); pass terminal_on_life_loss=False for evaluation.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium
import numpy as np
from gymnasium.wrappers import FrameStackObservation, TransformObservation
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from envs.gym_envs import SeedFirstReset, make_gym, vec_env_class
from envs.ids import bad_value, check_option_names

WRAPPER_DEFAULTS = {  # SB3 AtariWrapper keyword arguments
    "terminal_on_life_loss": True,
    "clip_reward": True,
    "noop_max": 30,
    "frame_skip": 4,
    "screen_size": 84,
}
ALE_DEFAULTS = {"repeat_action_probability": 0.25, "full_action_space": False}  # ALE v5's
DEFAULTS = {**WRAPPER_DEFAULTS, **ALE_DEFAULTS, "frame_stack": 4}


def atari_options(game: str, options: dict, extra: tuple[str, ...] = ()) -> tuple[dict, dict, int]:
    """Validate options (`extra`: other valid names, already handled); return
    (AtariWrapper kwargs, ALE kwargs, frames to stack)."""
    env_id = f"atari:{game}"
    check_option_names(env_id, options, [*DEFAULTS, *extra])
    merged = {**DEFAULTS, **options}
    for key, default in DEFAULTS.items():
        value = merged[key]
        if isinstance(default, bool):
            if not isinstance(value, (bool, np.bool_)):
                raise bad_value(env_id, key, value, "true or false")
        elif isinstance(default, int):
            low = 0 if key == "noop_max" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise bad_value(env_id, key, value, f"an integer >= {low}")
        elif not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise bad_value(env_id, key, value, "a probability in [0, 1]")
    wrapper_kwargs = {key: merged[key] for key in WRAPPER_DEFAULTS}
    ale_kwargs = {key: merged[key] for key in ALE_DEFAULTS}
    return wrapper_kwargs, ale_kwargs, int(merged["frame_stack"])


def _make_ale(game: str, **ale_kwargs: Any) -> gymnasium.Env:
    """`ALE/<game>-v5` without ALE's own frame skip (AtariWrapper skips and max-pools)."""
    return make_gym(f"ALE/{game}-v5", frameskip=1, **ale_kwargs)


def make_atari_vec_env(game: str, n_envs: int, seed: int | None, **options: Any) -> VecEnv:
    """SB3 `make_atari_env` + `VecFrameStack`: obs uint8 (n, 84, 84, frame_stack)."""
    wrapper_kwargs, ale_kwargs, frame_stack = atari_options(game, options, extra=("vec_env",))
    vec_cls = vec_env_class(f"atari:{game}", options)
    venv = make_atari_env(
        functools.partial(_make_ale, game),
        n_envs=n_envs,
        seed=seed,
        wrapper_kwargs=wrapper_kwargs,
        env_kwargs=ale_kwargs,
        vec_env_cls=vec_cls,
    )
    return VecFrameStack(venv, frame_stack) if frame_stack > 1 else venv


def make_atari_single_env(game: str, seed: int | None, **options: Any) -> gymnasium.Env:
    """The vec env's wrappers around one game: obs uint8 (84, 84, frame_stack)."""
    wrapper_kwargs, ale_kwargs, frame_stack = atari_options(game, options)
    env = AtariWrapper(Monitor(_make_ale(game, **ale_kwargs)), **wrapper_kwargs)
    if frame_stack > 1:
        height, width, channels = env.observation_space.shape
        stacked = gymnasium.spaces.Box(0, 255, (height, width, channels * frame_stack), np.uint8)
        env = FrameStackObservation(
            env, frame_stack, padding_type="zero"
        )  # zeros, like VecFrameStack
        # (k, H, W, C) oldest first -> (H, W, k*C), the layout of SB3's VecFrameStack
        env = TransformObservation(env, functools.partial(np.concatenate, axis=-1), stacked)
    return SeedFirstReset(env, seed)
