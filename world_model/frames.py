"""Image envs for the World Models agent: every observation becomes a 64x64x3 uint8 frame.

- ``box2d:CarRacing-*``: the 96x96 frame with the dashboard (bottom 12 rows) cropped off, as the
  original did, then resized to 64x64.
- ``procgen:*``: already 64x64x3; passed through.
- ``atari:*``: the foundation's Atari env is 84x84 grayscale; the World Models agent needs
  colour, so it plays ``ALE/<Game>-v5`` itself (ALE's own frame skip 4, sticky actions 0.25,
  the full 210x160 RGB screen) and resizes each screen to 64x64. Options are passed to ALE.
- any other gymnasium id with RGB image observations (H, W, 3): resized to 64x64.
Resizing uses OpenCV's area interpolation (averaging, no aliasing).
"""

from __future__ import annotations

import functools
from typing import Any

import cv2
import gymnasium
import numpy as np
from gymnasium.wrappers import TransformObservation

import envs
from envs.ids import EnvSpecError

FRAME_SIZE = 64
CAR_RACING_DASHBOARD_ROWS = 12  # of 96


def crop_for(env_id: str) -> int:
    """Rows to keep from the top of the raw frame (0: all)."""
    _, name = envs.parse_env_id(env_id)
    return 96 - CAR_RACING_DASHBOARD_ROWS if name.startswith("CarRacing") else 0


def to_frame(obs: np.ndarray, keep_rows: int = 0) -> np.ndarray:
    """Raw RGB observation(s) (..., H, W, 3) uint8 -> (..., 64, 64, 3) uint8."""
    obs = np.asarray(obs)
    if keep_rows:
        obs = obs[..., :keep_rows, :, :]
    if obs.shape[-3:-1] == (FRAME_SIZE, FRAME_SIZE):
        return np.ascontiguousarray(obs, dtype=np.uint8)
    if obs.ndim == 3:
        return cv2.resize(obs, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)
    flat = obs.reshape(-1, *obs.shape[-3:])
    out = np.stack([to_frame(o) for o in flat])
    return out.reshape(*obs.shape[:-3], FRAME_SIZE, FRAME_SIZE, 3)


def make_frame_env(env_id: str, seed: int | None = None, **options: Any) -> gymnasium.Env:
    """One env of ``env_id`` whose observations are 64x64x3 uint8 frames (see module doc)."""
    family, name = envs.parse_env_id(env_id)
    if family == "atari":
        from stable_baselines3.common.monitor import Monitor

        from envs.gym_envs import SeedFirstReset, make_gym

        env = SeedFirstReset(Monitor(make_gym(f"ALE/{name}-v5", **options)), seed)
    else:
        env = envs.make_env(env_id, seed, **options)
    shape = env.observation_space.shape
    if shape is None or len(shape) != 3 or shape[-1] != 3:
        env.close()
        raise EnvSpecError(
            f"{env_id}: the World Models agent needs RGB image observations (H, W, 3), "
            f"got shape {shape}"
        )
    frame_space = gymnasium.spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    return TransformObservation(
        env, functools.partial(to_frame, keep_rows=crop_for(env_id)), frame_space
    )
