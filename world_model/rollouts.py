"""Rollouts: episodes played by a random (or given) policy, one compressed chunk file each.

``rollouts/ep_00012.npz`` holds ``frames`` uint8 (T + 1, 64, 64, 3) (frame t is what the
policy saw before action t; the last one is the frame after the last action), ``actions``
float32 (T, A) or int64 (T,), ``rewards`` float32 (T,) and ``dones`` bool (T,) (true on the
last step of a finished episode, false when cut by ``max_steps``). Episode i is seeded
``seed + i`` and written atomically, so an interrupted collection resumes by playing only the
missing episodes, and gives the same files.

Policies: ``random`` (a fresh ``action_space.sample()`` every step), ``brownian``
(Box actions only: a random walk inside the bounds; the default for Box actions other than
CarRacing's), ``drive`` (CarRacing's (steer, gas, brake) only, its default: each action held
several steps, mostly accelerating, rarely braking, steering that turns smoothly, as reference
implementations collect their frames, so that V sees the track from a moving car rather than
from one that brakes and spins at random), or a World Models run directory (its best
controller, for the iterative procedure of the original).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from agents.executor import Executor
from agents.fileio import atomic_path
from world_model.frames import make_frame_env
from world_model.rundir import load_policy

POLICIES = ("random", "brownian", "drive")


@dataclass
class RolloutTask:
    """One episode to play and store (picklable: it travels to a worker process)."""

    env_id: str
    index: int
    out_dir: str
    seed: int = 0
    max_steps: int = 1000
    policy: str = "random"
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.out_dir) / f"ep_{self.index:05d}.npz"


def _is_car(space: gymnasium.Space) -> bool:
    """A Box of CarRacing's layout: (steer in [-1, 1], gas in [0, 1], brake in [0, 1])."""
    return (
        isinstance(space, gymnasium.spaces.Box)
        and space.shape == (3,)
        and np.allclose(space.low, [-1, 0, 0])
        and np.allclose(space.high, [1, 1, 1])
    )


def default_policy(space: gymnasium.Space, env_id: str = "") -> str:
    """``drive`` for CarRacing, ``brownian`` for other Box actions, else ``random``."""
    if "CarRacing" in env_id and _is_car(space):
        return "drive"
    return "brownian" if isinstance(space, gymnasium.spaces.Box) else "random"


def check_policy(policy: str, space: gymnasium.Space) -> None:
    """ValueError (one line) if the named policy cannot act in ``space`` (run dirs pass)."""
    if policy == "brownian" and not isinstance(space, gymnasium.spaces.Box):
        raise ValueError("policy 'brownian' needs a Box action space; use 'random'")
    if policy == "drive" and not _is_car(space):
        raise ValueError(
            "policy 'drive' needs CarRacing's actions (steer, gas, brake); use brownian or random"
        )


class DriveActions:
    """``drive``: CarRacing actions (steer, gas, brake) from a seeded generator.

    Straight at full gas for the first ``WARMUP`` steps (the episode's zoom-in); then each
    action is held a random 4..12 steps: steering an AR(1) walk
    s <- clip(0.7 s + N(0, 0.35), -1, 1) (stationary std about 0.5, so turns are smooth);
    braking with probability ``P_BRAKE`` (brake U(0.2, 0.8), no gas); otherwise gas U(0.5, 1)
    with probability ``P_GAS``, else coasting. Mean gas over 1000 steps is about 0.6.
    """

    WARMUP, HOLD = 50, (4, 12)
    P_BRAKE, P_GAS = 0.05, 0.85

    def __init__(self, space: gymnasium.Space, seed: int) -> None:
        check_policy("drive", space)
        self.rng = np.random.default_rng(seed)
        self.t, self.left, self.steer = 0, 0, 0.0
        self.current = np.array([0.0, 1.0, 0.0], np.float32)

    def _next(self) -> np.ndarray:
        """A new (steer, gas, brake) float32 (3,)."""
        rng = self.rng
        self.steer = float(np.clip(0.7 * self.steer + rng.normal(0.0, 0.35), -1.0, 1.0))
        gas = brake = 0.0
        if rng.random() < self.P_BRAKE:
            brake = rng.uniform(0.2, 0.8)
        elif rng.random() < self.P_GAS:
            gas = rng.uniform(0.5, 1.0)
        return np.array([self.steer, gas, brake], np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.t >= self.WARMUP and self.left == 0:
            self.current = self._next()
            self.left = int(self.rng.integers(self.HOLD[0], self.HOLD[1] + 1))
        self.left = max(0, self.left - 1)
        self.t += 1
        return self.current.copy()


class RandomActions:
    """``random`` / ``brownian`` action sequences from a seeded generator."""

    def __init__(self, space: gymnasium.Space, kind: str, seed: int) -> None:
        check_policy(kind, space)
        self.space, self.kind = space, kind
        self.rng = np.random.default_rng(seed)
        self.space.seed(int(self.rng.integers(2**31)))
        self.current = None

    def __call__(self, frame: np.ndarray) -> Any:
        if self.kind == "brownian":
            low, high = self.space.low, self.space.high
            if self.current is None:
                self.current = self.rng.uniform(low, high).astype(np.float32)
            step = self.rng.normal(0.0, 0.2, size=low.shape) * (high - low)
            self.current = np.clip(self.current + step, low, high).astype(np.float32)
        else:
            self.current = self.space.sample()
        return self.current


def make_policy(task: RolloutTask, env: gymnasium.Env) -> Any:
    if task.policy == "drive":
        return DriveActions(env.action_space, task.seed + task.index)
    if task.policy in POLICIES:
        return RandomActions(env.action_space, task.policy, task.seed + task.index)
    return load_policy(task.policy)


def play_episode(task: RolloutTask) -> dict[str, Any]:
    """Play and store one episode (skipped if its file exists); returns its summary."""
    path = task.path
    if path.is_file():
        with np.load(path) as data:
            rewards = data["rewards"]
        return {"index": task.index, "steps": len(rewards), "return": float(rewards.sum())}
    env = make_frame_env(task.env_id, seed=task.seed + task.index, **task.env_kwargs)
    policy = make_policy(task, env)
    frame, _ = env.reset()
    frames, actions, rewards, dones = [], [], [], []
    for _ in range(task.max_steps):
        action = policy(frame)
        next_frame, reward, terminated, truncated, _ = env.step(action)
        frames.append(frame)
        actions.append(action)
        rewards.append(reward)
        dones.append(terminated or truncated)
        frame = next_frame
        if terminated or truncated:
            break
    frames.append(frame)
    env.close()
    discrete = isinstance(env.action_space, gymnasium.spaces.Discrete)
    arrays = {
        "frames": np.stack(frames).astype(np.uint8),
        "actions": np.asarray(actions, np.int64 if discrete else np.float32),
        "rewards": np.asarray(rewards, np.float32),
        "dones": np.asarray(dones, bool),
    }
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return {"index": task.index, "steps": len(rewards), "return": float(arrays["rewards"].sum())}


def collect(
    executor: Executor,
    env_id: str,
    out_dir: str | Path,
    episodes: int,
    max_steps: int = 1000,
    seed: int = 0,
    policy: str = "random",
    env_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Play episodes 0..episodes-1 through ``executor`` (existing files are kept)."""
    tasks = [
        RolloutTask(env_id, i, str(out_dir), seed, max_steps, policy, env_kwargs or {})
        for i in range(episodes)
    ]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return executor.map(play_episode, tasks)


def episode_files(directory: str | Path) -> list[Path]:
    return sorted(Path(directory).glob("ep_*.npz"))
