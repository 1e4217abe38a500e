"""Evaluate a policy: each of N Procgen levels played exactly once, or N episodes of any env."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import envs
from agents.policy_view import Actor
from agents.rollout import Act, Observe, level_env, play

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
    n = len(seeds)
    returns, lengths, completed = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, bool)
    venv = level_env(env_id, seeds, n_parallel, seed, **env_options)
    act, reset = _actor(agent, deterministic, seed), agent.reset
    with closing(venv), _bar(n, "evaluating levels", "level", progress) as bar:
        for step in play(venv, act, levels=seeds, reset=reset):
            for end in step.ended:
                returns[end.k] = end.info["episode"]["r"]
                lengths[end.k] = end.info["episode"]["l"]
                completed[end.k] = bool(end.info["level_complete"])
            bar.update(len(step.ended))
    return EpisodeResults(returns, lengths, completed, np.asarray(seeds, dtype=np.int64))


def evaluate_episodes(
    agent: Actor,
    env_id: str,
    n_episodes: int,
    n_envs: int = 8,
    deterministic: bool = False,
    seed: int = 0,
    progress: bool = True,
    seen: Callable[[Any], Observe] | None = None,
    **env_options: Any,
) -> EpisodeResults:
    """Run ``n_episodes`` episodes of any env id (unclipped rewards for Atari).

    :param seen: given the env, what the agent sees instead of its observations (``play``'s
        ``observe``)"""
    if envs.parse_env_id(env_id)[0] == "atari":
        env_options = {**env_options, "clip_reward": False, "terminal_on_life_loss": False}
    venv = envs.make_vec_env(env_id, min(n_envs, n_episodes), seed, **env_options)
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64)
    act, reset = _actor(agent, deterministic, seed), agent.reset
    with closing(venv), _bar(n_episodes, "evaluating", "episode", progress) as bar:
        observe = seen(venv) if seen is not None else None
        for step in play(venv, act, episodes=n_episodes, reset=reset, observe=observe):
            for end in step.ended:
                returns[end.k], lengths[end.k] = end.info["episode"]["r"], end.info["episode"]["l"]
            bar.update(len(step.ended))
    return EpisodeResults(returns, lengths)


def _actor(agent: Actor, deterministic: bool, seed: int) -> Act:
    """``agent.act`` on every row, random draws from one torch generator seeded ``seed``."""
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    return lambda obs, _: agent.act(obs, deterministic, generator)


def _bar(total: int, desc: str, unit: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=None if progress else True, leave=False)
