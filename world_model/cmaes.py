"""C's training: CMA-ES (the ``cma`` package) over the controller's flat parameter vector.

Each generation ``cma`` asks for ``population`` candidates; every (candidate, rollout) pair is
one task for the executor (worker processes, or Ray), which plays the real game (or the dream)
and returns the episode's return; a candidate's fitness is its mean return over
``rollouts_per_candidate`` episodes, all candidates of a generation playing the same seeds.

Files, written after every generation (atomically): ``controller_best.safetensors`` (the best
candidate so far), ``controller_mean.safetensors`` (CMA-ES's mean), ``controller_progress.csv``
and ``cmaes/state.json`` + ``cmaes/state.npz`` (generation, step size sigma, mean, best).
Resuming does not unpickle ``cma``'s object: it restarts CMA-ES from the saved mean and sigma
with a fresh (identity) covariance and evolution paths, and continues the generation count,
seeds and best-so-far. That loses the learned covariance, which ``cma`` re-adapts within a
few generations; the alternative, pickling the optimizer, would make resuming unpickle a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cma
import numpy as np
import torch

from agents.executor import Executor
from agents.fileio import atomic_path, read_json, write_json
from world_model.model import Policy, WorldModel, save_weights
from world_model.rundir import append_progress, initial_latents, make_eval_env, read_config

_MODELS: dict[str, tuple[float, WorldModel, np.ndarray]] = {}  # per worker process


@dataclass
class EpisodeTask:
    """One episode of a controller (picklable; runs in a worker)."""

    run_dir: str
    params: np.ndarray
    seed: int
    max_steps: int = 1000
    dream: bool = False
    temperature: float = 1.0


def _cached_model(run_dir: str) -> tuple[WorldModel, np.ndarray]:
    """The run's V and M, loaded once per worker (reloaded if mdn.safetensors changed)."""
    path = Path(run_dir)
    stamp = (path / "mdn.safetensors").stat().st_mtime
    cached = _MODELS.get(run_dir)
    if cached is None or cached[0] != stamp:
        torch.set_num_threads(1)
        model = WorldModel.load(path, read_config(path), controller=None)
        _MODELS[run_dir] = (stamp, model, initial_latents(path))
    _, model, z0 = _MODELS[run_dir]
    return model, z0


def play_controller(task: EpisodeTask) -> float:
    """Return of one episode of the controller ``task.params`` (real game or dream)."""
    model, z0 = _cached_model(task.run_dir)
    model.controller.set_flat(task.params)
    act: Callable[[np.ndarray], Any]
    if task.dream:
        from world_model.dream import DreamEnv

        env = DreamEnv(model, z0, task.temperature, task.max_steps)
        ctrl, z_size = model.controller, model.mdn.z_size

        @torch.no_grad()
        def act(obs: np.ndarray) -> Any:
            zh = torch.as_tensor(obs).unsqueeze(0)  # (1, z_size + hidden)
            return ctrl.env_action(ctrl.to_action(ctrl.decide(zh[:, :z_size], zh[:, z_size:]))[0])

    else:
        env = make_eval_env(task.run_dir, task.seed)
        act = Policy(model)
    obs, _ = env.reset(seed=task.seed)
    total = 0.0
    for _ in range(task.max_steps):
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += float(reward)
        if terminated or truncated:
            break
    env.close()
    return total


def evaluate_candidates(
    executor: Executor,
    candidates: list[np.ndarray],
    seeds: list[int],
    make_task: Callable[[np.ndarray, int], Any],
    fn: Callable[[Any], float] = play_controller,
) -> np.ndarray:
    """Mean fitness (len(candidates),) of each candidate over the same ``seeds``: one executor
    task ``fn(make_task(candidate, seed))`` per pair, so the work spreads over every worker."""
    tasks = [make_task(np.asarray(c), s) for c in candidates for s in seeds]
    returns = np.asarray(executor.map(fn, tasks), float)
    return returns.reshape(len(candidates), len(seeds)).mean(axis=1)


def train_controller(
    run_dir: Path,
    executor: Executor,
    model: WorldModel,
    generations: int,
    population: int = 8,
    rollouts_per_candidate: int = 2,
    max_steps: int = 1000,
    sigma0: float = 0.1,
    seed: int = 0,
    dream: bool = False,
    temperature: float = 1.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run CMA-ES up to ``generations`` (resuming from ``cmaes/state.*`` when present)."""
    ctrl = model.controller
    state_file = run_dir / "cmaes" / "state.json"
    if state_file.is_file():
        state = read_json(state_file)
        with np.load(run_dir / "cmaes" / "state.npz") as data:
            mean, best = data["mean"], data["best"]
        sigma = float(state["sigma"])
    else:
        state = {"generation": 0, "best_fitness": None, "evaluations": 0}
        mean, best, sigma = np.zeros(ctrl.n_params), np.zeros(ctrl.n_params), sigma0
    start = int(state["generation"])
    options = {"popsize": population, "seed": seed + start + 1, "verbose": -9}
    es = cma.CMAEvolutionStrategy(mean, sigma, options)
    for generation in range(start, generations):
        started = time.monotonic()
        gen_rng = np.random.default_rng((seed, generation))
        seeds = [int(s) for s in gen_rng.integers(0, 2**31 - 1, rollouts_per_candidate)]
        candidates = es.ask()
        fitness = evaluate_candidates(
            executor,
            candidates,
            seeds,
            lambda c, s: EpisodeTask(str(run_dir), c, s, max_steps, dream, temperature),
        )
        es.tell(candidates, list(-fitness))  # cma minimizes
        i = int(np.argmax(fitness))
        if state["best_fitness"] is None or fitness[i] > state["best_fitness"]:
            best, state["best_fitness"] = np.asarray(candidates[i]), float(fitness[i])
            state["best_generation"] = generation + 1
        state["generation"] = generation + 1
        state["sigma"] = float(es.sigma)
        state["evaluations"] += len(candidates) * len(seeds)
        ctrl.set_flat(best)
        save_weights(ctrl, run_dir / "controller_best.safetensors")
        ctrl.set_flat(es.mean)
        save_weights(ctrl, run_dir / "controller_mean.safetensors")
        with atomic_path(run_dir / "cmaes" / "state.npz", suffix=".npz") as tmp:
            np.savez(tmp, mean=np.asarray(es.mean), best=best)
        write_json(state_file, state)
        row = {
            "generation": generation + 1,
            "best": float(fitness.max()),
            "mean": float(fitness.mean()),
            "worst": float(fitness.min()),
            "best_ever": state["best_fitness"],
            "sigma": float(es.sigma),
            "seconds": round(time.monotonic() - started, 1),
        }
        append_progress(run_dir / "controller_progress.csv", row)
        log(
            f"C generation {generation + 1}/{generations}: best {row['best']:.1f}, "
            f"mean {row['mean']:.1f}, best ever {state['best_fitness']:.1f} "
            f"({row['seconds']:.0f} s)"
        )
    return state
