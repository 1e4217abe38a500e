"""Frames the generator learns from, and how its images become the agent's observations.

The generator works on images (N, C, H, W) in [0, 1] ("generator space"):
- agents that see RGB (Procgen, HWC uint8 (64, 64, 3)): the image is the observation;
- Atari agents see a stack of k grayscale 84x84 frames. The generator works in color on the
  stack of the k RGB frames (3k channels): ``ColorFrameStack`` records each RGB screen the
  moment SB3's ``WarpFrame`` turns it gray (so after frame skip and max-pooling) and resizes it
  to 84x84 with the same ``INTER_AREA`` filter; ``FrameSpace.to_obs`` converts back with the
  same weighted sum as OpenCV's ``RGB2GRAY`` (0.299, 0.587, 0.114), differentiably. So
  ``to_obs`` of a recorded color stack equals the agent's grayscale stack up to rounding.
- World Models agents (``WorldModelView``, which keeps a recurrent state): the 64x64 RGB frames
  V sees (its ``observation_space``); raw env frames of another size (CarRacing's 96x96) are
  converted once by the view's own ``preprocess`` (crop and resize, as in its training).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.fileio import atomic_path
from agents.policy_view import PolicyView
from agents.rollout import explore, play
from interpret.core.errors import InterpretError

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY, as SB3's WarpFrame uses


@dataclass(frozen=True)
class FrameSpace:
    """Generator images (N, channels, height, width) in [0, 1] <-> agent observations.

    ``gray_stack``: the agent sees ``channels // 3`` grayscale frames stacked on its last axis,
    the generator their RGB versions (frame-major: RGB of the oldest frame first).
    """

    height: int
    width: int
    channels: int
    gray_stack: bool = False

    @property
    def frames(self) -> int:
        return self.channels // 3 if self.gray_stack else 1

    def to_obs(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> observations (N, H, W, obs channels) in [0, 255], float,
        differentiable; what ``PolicyView.preprocess`` takes."""
        if self.gray_stack:
            n = images.shape[0]
            rgb = images.reshape(n, self.frames, 3, self.height, self.width)
            weights = images.new_tensor(GRAY_WEIGHTS).view(1, 1, 3, 1, 1)
            images = (rgb * weights).sum(dim=2)
        return images.permute(0, 2, 3, 1) * 255.0

    def from_uint8(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Recorded frames (N, H, W, C) uint8 -> generator images (N, C, H, W) in [0, 1]."""
        x = torch.as_tensor(np.asarray(frames))
        return x.permute(0, 3, 1, 2).float() / 255.0

    def display(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Generator images (N, C, H, W) in [0, 1] -> uint8 RGB (N, H, W, 3) of the newest frame."""
        x = torch.as_tensor(images).detach().float()
        x = x[:, -3:] if self.gray_stack else x
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def env_images(view: PolicyView, space: FrameSpace, obs: np.ndarray) -> torch.Tensor:
    """Raw env observations (N, H, W, C) uint8 -> generator images (N, C, h, w) in [0, 1]:
    the observation itself, or (World Models, other frame sizes) the view's 64x64 frames."""
    if obs.shape[1:3] == (space.height, space.width):
        return space.from_uint8(obs).to(view.device)
    if view.recurrent:
        with torch.no_grad():
            return view.preprocess(obs)
    raise InterpretError(
        f"observations {obs.shape[1:]} do not match the frame space {space.height}x{space.width}"
    )


def frame_space(view: PolicyView, env_id: str) -> FrameSpace:
    """The generator space for ``view`` playing ``env_id`` (image observations only)."""
    import envs

    family, _ = envs.parse_env_id(env_id)
    shape = tuple(view.observation_space.shape or ())
    if len(shape) != 3:
        raise InterpretError(
            f"synthesize needs image observations; the policy's observation space is {shape}"
        )
    # The env gives HWC; plain SB3 policies store the transposed CHW space.
    hwc = shape if shape[-1] <= 12 else (shape[1], shape[2], shape[0])
    height, width, channels = hwc
    if family == "atari":
        return FrameSpace(height, width, 3 * channels, gray_stack=True)
    if channels not in (1, 3):
        raise InterpretError(f"synthesize needs RGB or grayscale frames, not {channels} channels")
    return FrameSpace(height, width, channels)


class ColorFrameStack:
    """The RGB twin of an Atari ``VecFrameStack`` observation: (n, 84, 84, 3k) uint8.

    Attaches to each sub-env's SB3 ``WarpFrame`` (DummyVecEnv) and keeps the last k color
    frames per env, zero-padded after a reset as ``VecFrameStack`` pads.
    """

    def __init__(self, venv: Any, frames: int) -> None:
        from stable_baselines3.common.atari_wrappers import WarpFrame

        self.frames = frames
        self._latest: list[np.ndarray | None] = []
        inner = venv
        while not hasattr(inner, "envs"):
            inner = inner.venv
        for i, env in enumerate(inner.envs):
            while not isinstance(env, WarpFrame):
                env = env.env
            self._latest.append(None)
            # Wraps this instance's WarpFrame.observation to record the color frame too.
            env.observation = self._recorder(i, env, env.observation)  # type: ignore[method-assign]
        self.stack = np.zeros((0, 0, 0, 0), dtype=np.uint8)  # set by reset

    def _recorder(self, index: int, warp: Any, gray: Callable) -> Callable:
        import cv2

        def observation(frame: np.ndarray) -> np.ndarray:
            size = (warp.width, warp.height)
            self._latest[index] = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            return gray(frame)

        return observation

    def reset(self) -> np.ndarray:
        """After ``venv.reset()``: the color stacks (n, H, W, 3k)."""
        frames = self._frames()
        n, (h, w) = len(frames), frames[0].shape[:2]
        self.stack = np.zeros((n, h, w, 3 * self.frames), dtype=np.uint8)
        self._push(np.ones(n, dtype=bool))
        return self.stack.copy()

    def step(self, dones: np.ndarray) -> np.ndarray:
        """After ``venv.step()``: the color stacks, restarted for envs that were reset."""
        self._push(np.asarray(dones, dtype=bool))
        return self.stack.copy()

    def _push(self, reset: np.ndarray) -> None:
        self.stack[reset] = 0
        self.stack = np.roll(self.stack, -3, axis=-1)
        self.stack[..., -3:] = np.stack(self._frames())

    def _frames(self) -> list[np.ndarray]:
        """Each sub-env's latest color frame; every one has a frame once the venv was reset."""
        frames = [frame for frame in self._latest if frame is not None]
        if len(frames) != len(self._latest):
            raise RuntimeError("ColorFrameStack: a sub-env has no frame yet; reset the venv first")
        return frames


@dataclass
class FrameSet:
    """Recorded frames in generator space, with what the agent made of them.

    Attributes:
        images: (N, H, W, C) uint8 generator-space frames.
        saliency: (N, H, W) float32 in [0, 1]: blurred, normalized guided-backprop magnitude,
            computed once per frame (``saliency.saliency_maps``); a constant in the loss.
        outputs: the agent's outputs on each frame, e.g. {"q": (N, A)} or {"value", "logits"}.
        metadata: env id, options, model hash, epsilon, seed.
    """

    images: np.ndarray
    saliency: np.ndarray
    outputs: dict[str, np.ndarray]
    metadata: dict[str, Any]

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: str | Path) -> Path:
        arrays = {"images": self.images, "saliency": self.saliency}
        arrays.update({f"out_{k}": v for k, v in self.outputs.items()})
        arrays["metadata"] = np.array(json.dumps(self.metadata))
        with atomic_path(Path(path), suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> FrameSet:
        with np.load(path, allow_pickle=False) as data:
            outputs = {k[4:]: data[k] for k in data.files if k.startswith("out_")}
            return cls(data["images"], data["saliency"], outputs, json.loads(str(data["metadata"])))


def record_frames(
    view: PolicyView,
    env_id: str,
    space: FrameSpace,
    *,
    n_frames: int,
    epsilon: float,
    seed: int = 0,
    n_envs: int = 8,
    **env_options: Any,
) -> np.ndarray:
    """Play ``view`` epsilon-greedily around its own policy; (n_frames, H, W, C) uint8 frames.

    RGB envs go through ``interpret.core.trajectory.record_trajectories`` (a recurrent view's
    frames then turned into its own 64x64 frames); Atari records the color twin of each
    observed stack (``ColorFrameStack``).
    """
    n_envs = max(1, min(n_envs, n_frames))
    n_steps = -(-n_frames // n_envs)
    if space.gray_stack and not view.recurrent:
        frames = _record_atari_color(
            view, env_id, space, n_envs, n_steps, epsilon, seed, env_options
        )
        return frames[:n_frames]
    from interpret.core.trajectory import record_trajectories

    trajectories = record_trajectories(
        view, env_id, n_envs=n_envs, n_steps=n_steps, seed=seed, epsilon=epsilon, **env_options
    )
    frames = np.stack([t.observations for t in trajectories], axis=1)  # (T, n, H, W, C)
    frames = frames.reshape(-1, *frames.shape[2:])[:n_frames]
    if view.recurrent:  # World Models: in generator space, V's frames
        view.reset()
        batches = np.array_split(frames, max(1, len(frames) // 256))
        frames = np.concatenate([space.display(env_images(view, space, b)) for b in batches])
    return frames


def _record_atari_color(
    view: PolicyView,
    env_id: str,
    space: FrameSpace,
    n_envs: int,
    n_steps: int,
    epsilon: float,
    seed: int,
    env_options: dict,
) -> np.ndarray:
    import envs

    rng = np.random.default_rng(seed)
    venv = envs.make_vec_env(env_id, n_envs, seed, **env_options)
    recorded: list[np.ndarray] = []  # the color stack before each step (and after the last)
    try:
        colors = ColorFrameStack(venv, space.frames)

        def observe(obs: np.ndarray, dones: np.ndarray | None) -> np.ndarray:
            recorded.append(colors.reset() if dones is None else colors.step(dones))
            return obs

        def act(obs: np.ndarray, _: np.ndarray) -> np.ndarray:
            return explore(view.act(obs, deterministic=False), venv.action_space, rng, epsilon)

        for _ in play(venv, act, steps=n_steps, observe=observe):
            pass
    finally:
        venv.close()
    return np.concatenate(recorded[:n_steps])
