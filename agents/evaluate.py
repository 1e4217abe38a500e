"""Evaluate a policy: each of N Procgen levels played exactly once, or N episodes of any env."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import envs
from agents.policy_view import Actor

# Level options that select levels; evaluation sets the levels itself.
_LEVEL_OPTIONS = ("num_levels", "start_level", "levels", "use_sequential_levels")
UNLIMITED_TEST_START = 2**30  # with num_levels=0 any level may be trained on; test far away


@dataclass
class EpisodeResults:
    """Per-episode outcomes of an evaluation; arrays of shape (N,)."""

    returns: np.ndarray
    lengths: np.ndarray
    completed: np.ndarray | None = None  # Procgen: level completed
    level_seeds: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        """Mean return, its standard error, and (Procgen) the completion rate with a 95% CI."""
        n = len(self.returns)
        out: dict[str, Any] = {
            "episodes": n,
            "mean_return": float(np.mean(self.returns)),
            "return_stderr": float(np.std(self.returns, ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
            "mean_length": float(np.mean(self.lengths)),
        }
        if self.completed is not None:
            k = int(self.completed.sum())
            out["completed"] = k
            out["completion_rate"] = k / n
            out["completion_ci95"] = list(wilson_interval(k, n))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()
        }


def procgen_eval_levels(env_kwargs: dict[str, Any], n: int, seed: int) -> dict[str, list[int]]:
    """Level seeds to evaluate: unseen ones right after the training range, and (when the
    training levels are limited) up to ``n`` of the training levels."""
    num_levels = int(env_kwargs.get("num_levels", 0))
    start = int(env_kwargs.get("start_level", 0))
    if num_levels == 0:
        return {"test": list(range(UNLIMITED_TEST_START, UNLIMITED_TEST_START + n))}
    rng = np.random.default_rng(seed)
    train = start + rng.choice(num_levels, size=min(n, num_levels), replace=False)
    return {
        "train": sorted(int(s) for s in train),
        "test": list(range(start + num_levels, start + num_levels + n)),
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate_procgen_levels(
    agent: Actor,
    env_id: str,
    level_seeds: list[int] | np.ndarray,
    n_parallel: int = 32,
    deterministic: bool = False,
    seed: int = 0,
    progress: bool = True,
    **env_options: Any,
) -> EpisodeResults:
    """Play each level seed once (``n_parallel`` at a time) and record return and completion."""
    seeds = [int(s) for s in level_seeds]
    options = {k: v for k, v in env_options.items() if k not in _LEVEL_OPTIONS}
    n = len(seeds)
    slots = min(n_parallel, n)
    venv = envs.make_vec_env(env_id, slots, seed, levels=seeds[:slots], **options)
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    returns, lengths, completed = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, bool)
    slot_level = list(range(slots))  # index into seeds played by each slot, -1 when idle
    next_level = slots
    obs = venv.reset()
    done_count = 0
    bar = tqdm(
        total=n,
        desc="evaluating levels",
        unit="level",
        disable=None if progress else True,
        leave=False,
    )
    try:
        while done_count < n:
            actions = agent.act(obs, deterministic=deterministic, generator=generator)
            obs, _, dones, infos = venv.step(actions)
            for i in np.flatnonzero(dones):
                level = slot_level[i]
                if level < 0:
                    continue
                returns[level] = infos[i]["episode"]["r"]
                lengths[level] = infos[i]["episode"]["l"]
                completed[level] = bool(infos[i]["level_complete"])
                done_count += 1
                bar.update(1)
                if next_level < n:
                    obs[i] = venv.replace_level(i, seeds[next_level])
                    slot_level[i] = next_level
                    next_level += 1
                else:
                    slot_level[i] = -1
    finally:
        bar.close()
        venv.close()
    return EpisodeResults(returns, lengths, completed, np.asarray(seeds, dtype=np.int64))


def record_finished(
    dones: np.ndarray, infos: list[dict], returns: list[float], lengths: list[int], limit: int
) -> int:
    """Append the Monitor return and length of each episode that ended this step, until
    ``limit`` episodes are recorded; returns how many were added."""
    added = 0
    for i in np.flatnonzero(dones):
        if "episode" in infos[i] and len(returns) < limit:
            returns.append(float(infos[i]["episode"]["r"]))
            lengths.append(int(infos[i]["episode"]["l"]))
            added += 1
    return added


def evaluate_episodes(
    agent: Actor,
    env_id: str,
    n_episodes: int,
    n_envs: int = 8,
    deterministic: bool = False,
    seed: int = 0,
    progress: bool = True,
    **env_options: Any,
) -> EpisodeResults:
    """Run ``n_episodes`` episodes of any env id (unclipped rewards for Atari)."""
    if envs.parse_env_id(env_id)[0] == "atari":
        env_options = {**env_options, "clip_reward": False, "terminal_on_life_loss": False}
    venv = envs.make_vec_env(env_id, min(n_envs, n_episodes), seed, **env_options)
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    returns: list[float] = []
    lengths: list[int] = []
    obs = venv.reset()
    bar = tqdm(
        total=n_episodes,
        desc="evaluating",
        unit="episode",
        disable=None if progress else True,
        leave=False,
    )
    try:
        while len(returns) < n_episodes:
            obs, _, dones, infos = venv.step(agent.act(obs, deterministic, generator))
            bar.update(record_finished(dones, infos, returns, lengths, n_episodes))
    finally:
        bar.close()
        venv.close()
    return EpisodeResults(np.asarray(returns), np.asarray(lengths))
