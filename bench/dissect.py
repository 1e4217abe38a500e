"""Dissection and Game of Life metric throughput, each measured side by side with a baseline.

- Unit statistics over 4,096 real CoinRun frames (random actions) for each ``--layers`` layer of
  an interpretable-CNN PPO policy (``--model``, or a fresh one: speed does not depend on the
  weights). Ours: ``interpret.dissection.units.unit_statistics``, which streams batches and
  keeps each unit's running top k+1 values for the exact threshold. Baseline: the direct way,
  holding every activation of the layer and taking ``np.quantile(..., method="lower")`` per
  unit (the same number; checked). Reported in units/s, and the memory each holds for the threshold.
- Activation maps: for every unit, its top 3 observations (5 steps apart) and their upsampled
  maps, in units/s.
- Zeroing effects on 256 observations, in units/s: ours reruns only the layers above the
  unit (``Inspectable.split``); baseline: the full forward pass with the zeroing hook (the path
  any view without ``split`` takes; the first ``--hook-units`` units).
- The Game of Life metric on 4,096 sequences (3 GoL and 3 model steps, 12x12): ours, vectorized
  (``imagination_metric``) vs a literal per-sequence loop over the paper's definition (same
  values; checked), in sequences/s.

    python bench/dissect.py                 # ~2-4 min on 2 idle cores
    python bench/dissect.py --layers fc1 --observations 1024

The last line of stdout is a JSON summary; every ratio in it is measured in this run.
"""

from __future__ import annotations

from envs import _quiet  # noqa: F401  (first: silences old gym's banner)

# isort: split
import argparse
import json
import os
import time

import numpy as np
import torch

import agents
from envs import make_vec_env
from interpret.dissection.interventions import zeroing_effects
from interpret.dissection.units import (
    activation_maps,
    batches,
    forward_layers,
    top_observations,
    unit_statistics,
)
from interpret.imagination.game_of_life import LifeBoards, imagination_metric


def coinrun_frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 64, 64, 3) frames from 64 envs under random actions, with episode ids and steps."""
    n_envs = min(64, n)
    vec = make_vec_env("procgen:coinrun", n_envs, seed, distribution_mode="easy")
    rng = np.random.default_rng(seed)
    frames, episodes, steps = [], [], []
    episode = np.arange(n_envs)
    step = np.zeros(n_envs, dtype=np.int64)
    obs = vec.reset()
    while sum(len(f) for f in frames) < n:
        frames.append(obs)
        episodes.append(episode.copy())
        steps.append(step.copy())
        obs, _, dones, _ = vec.step(rng.integers(0, vec.action_space.n, n_envs))
        step += 1
        for i in np.flatnonzero(dones):
            episode[i] = episode.max() + 1
            step[i] = 0
    vec.close()
    return (np.concatenate(frames)[:n], np.concatenate(episodes)[:n], np.concatenate(steps)[:n])


def policy_view(model: str | None):
    if model:
        return agents.load(model)
    from agents.algorithms import PPO
    from agents.policies import HWCActorCriticPolicy

    env = make_vec_env("procgen:coinrun", 1, 0, distribution_mode="easy")
    ppo = PPO(HWCActorCriticPolicy, env, policy_kwargs={"arch": "interpretable"}, seed=0)
    return agents.Inspectable.from_model(ppo)


@torch.no_grad()
def baseline_thresholds(view, layer: str, obs: np.ndarray, quantile: float, batch: int):
    """Every activation held at once, then each unit's (k+1)-th largest value by a partition:
    (thresholds, bytes held)."""
    parts = [forward_layers(view, [layer], obs[s])[layer].numpy() for s in batches(len(obs), batch)]
    acts = np.concatenate(parts)  # (N, U, h, w)
    per_unit = acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1)
    rank = per_unit.shape[1] - 1 - int(np.floor(quantile * per_unit.shape[1]))
    return np.partition(per_unit, rank, axis=1)[:, rank], acts.nbytes


def _kept(stats, n: int) -> int:
    """How many values per unit ``unit_statistics`` keeps: floor(q * N*h*w) + 1."""
    return int(np.floor(stats.quantile * n * stats.shape[1] * stats.shape[2])) + 1


def literal_metric(decoded: np.ndarray, states: np.ndarray) -> np.ndarray:
    """The paper's equation 1, one sequence and one pair at a time, as written."""
    scores = np.zeros(len(decoded))
    for s in range(len(decoded)):
        h = decoded[s] > 0.5
        n, m = len(h), len(states[s])
        matched = set()
        total = 0.0
        for i in range(n):
            for j in range(1, m - 1):
                if np.mean(h[i] == (states[s][j] != 0)) >= 0.95:
                    total += 0.5 if j in matched else 1.0
                    matched.add(j)
        scores[s] = total / min(n, m - 2)
    return scores


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="PPO model (default: a fresh interpretable-CNN policy)")
    parser.add_argument("--layers", nargs="+", default=["3a", "fc1"])
    parser.add_argument("--observations", type=int, default=4096)
    parser.add_argument("--quantile", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hook-units", type=int, default=8, help="units zeroed through hooks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    view = policy_view(args.model)
    obs, episodes, steps = coinrun_frames(args.observations)
    effect_obs = obs[np.linspace(0, len(obs) - 1, 256).astype(int)]
    summary: dict = {"observations": len(obs), "quantile": args.quantile, "threads": args.threads}
    for layer in args.layers:
        stats, t_ours = timed(
            lambda layer=layer: unit_statistics(view, layer, obs, args.quantile, args.batch_size)
        )
        (base, held), t_base = timed(
            lambda layer=layer: baseline_thresholds(
                view, layer, obs, args.quantile, args.batch_size
            )
        )
        assert np.array_equal(stats.threshold, base.astype(np.float32)), "thresholds differ"
        top = [
            top_observations(
                stats.per_observation_max[:, u], float(stats.threshold[u]), episodes, steps, 3, 5
            )
            for u in range(stats.units)
        ]
        pairs = [(u, i) for u, chosen in enumerate(top) for i in chosen]

        def maps(pairs=pairs, layer=layer, stats=stats):
            for part in batches(len(pairs), args.batch_size):
                chunk = pairs[part]
                activation_maps(
                    view,
                    layer,
                    obs[[i for _, i in chunk]],
                    [u for u, _ in chunk],
                    stats.threshold,
                    (64, 64),
                )

        _, t_maps = timed(maps)
        _, t_zero = timed(
            lambda layer=layer, stats=stats: zeroing_effects(
                view, layer, range(stats.units), effect_obs, args.batch_size
            )
        )
        hook_units = min(stats.units, args.hook_units)
        _, t_hook = timed(
            lambda layer=layer, hook_units=hook_units: zeroing_effects(
                view, layer, range(hook_units), effect_obs, args.batch_size, use_split=False
            )
        )
        row = {
            "units": stats.units,
            "stats_units_per_s": stats.units / t_ours,
            "baseline_stats_units_per_s": stats.units / t_base,
            "stats_speed_ratio": t_base / t_ours,
            "baseline_activation_bytes": held,
            "ours_running_top_bytes": 4 * stats.units * _kept(stats, len(obs)),
            "maps_units_per_s": stats.units / t_maps,
            "maps": len(pairs),
            "zeroing_units_per_s_256_obs": stats.units / t_zero,
            "hook_zeroing_units_per_s_256_obs": hook_units / t_hook,
            "zeroing_split_vs_hook_ratio": (t_hook / hook_units) / (t_zero / stats.units),
        }
        print(f"layer {layer}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
        summary[layer] = row
    boards = LifeBoards(12, 3).sample(4096, torch.Generator().manual_seed(0))
    noise = torch.rand(4096, 2, 12, 12, generator=torch.Generator().manual_seed(1))
    decoded = torch.where(noise < 0.03, 1 - boards[:, 1:3], boards[:, 1:3])  # mostly matching
    ours, t_vec = timed(lambda: imagination_metric(decoded, boards))
    literal, t_loop = timed(lambda: literal_metric(decoded.numpy(), boards.numpy()))
    assert np.allclose(ours.numpy(), literal), "metric implementations differ"
    summary["gol_metric"] = {
        "sequences": 4096,
        "mean": float(ours.mean()),
        "sequences_per_s": 4096 / t_vec,
        "literal_loop_sequences_per_s": 4096 / t_loop,
        "speed_ratio": t_loop / t_vec,
    }
    print("gol metric: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["gol_metric"].items()))
    summary["load_average_1min"] = os.getloadavg()[0]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
