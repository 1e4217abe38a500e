"""Network dissection of a policy's units (Liu, *Understanding Vision-based Dynamics Models*, 2021).

Plays the agent (or reads saved trajectories), then for each ``--layer``: every unit's
top-quantile threshold t_u, dead/alive status and activation maps ({p | a_u(x, p) > t_u},
upsampled to the frame) on its top observations, no two of one episode closer than
``--spacing`` steps; and the effect on the policy of zeroing the unit (a forward hook), with
units ranked by it. Dead-unit counts are reported for every layer. Fully connected layers are
dissected as 1x1 convolutions.

    python -m interpret dissect runs/demo --env procgen:coinrun --layer 2b --out reports/d2b
    python -m interpret dissect runs/demo --trajectory traj.npz --layer fc1 --quantile 0.05 \\
        --out reports/dfc1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import agents
from agents.precision import add_precision_argument
from interpret.core.errors import InterpretError, check_counts
from interpret.core.report import write_report
from interpret.core.trajectory import Trajectory, record_trajectories
from interpret.dissection.interventions import zeroing_effects
from interpret.dissection.report import layer_arrays, layer_summary, render_page
from interpret.dissection.units import (
    UnitStatistics,
    activation_maps,
    dead_units,
    observation_image,
    top_observations,
    unit_statistics,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 zip or zoo:NAME")
    parser.add_argument(
        "--layer", nargs="+", help="layer(s) to dissect (default: the model's default layer)"
    )
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--env", help="env id to play (default: the model's training env)")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE")
    parser.add_argument(
        "--trajectory", nargs="+", type=Path, help="saved Trajectory .npz file(s) instead of play"
    )
    parser.add_argument("--n-envs", type=int, default=8, help="envs to play in")
    parser.add_argument("--n-steps", type=int, default=128, help="steps per env")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quantile", type=float, default=0.01, help="top share above t_u: 0.01 or 0.05"
    )
    parser.add_argument("--top", type=int, default=3, help="activation maps per unit")
    parser.add_argument("--spacing", type=int, default=5, help="min steps between a unit's maps")
    parser.add_argument(
        "--effect-obs", type=int, default=256, help="observations to measure zeroing on (0: none)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--trust-pickle", action="store_true", help="load with SB3's unpickler")
    add_precision_argument(parser, "statistics can differ from fp32's")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _validate(args: argparse.Namespace) -> None:
    check_counts(args, ("n_envs", "n_steps", "top", "batch_size"), ("spacing", "effect_obs"))
    if not 0.0 < args.quantile < 0.5:
        raise InterpretError(
            f"--quantile must be in (0, 0.5), e.g. 0.01 or 0.05; got {args.quantile}"
        )


def load_observations(
    view, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(observations (N, ...), episode id (N,), step within the episode (N,), source info)."""
    from interpret.core.model_env import resolve_env

    if args.trajectory:
        # one-line InputFileError for a file that is not one
        trajectories = [Trajectory.load(path) for path in args.trajectory]
        source: dict[str, Any] = {"trajectories": [str(p) for p in args.trajectory]}
    else:
        env_id, options = resolve_env(view, args.env, args.env_kwargs)
        trajectories = record_trajectories(
            view, env_id, n_envs=args.n_envs, n_steps=args.n_steps, seed=args.seed, **options
        )
        source = {
            "env_id": env_id,
            "env_options": options,
            "n_envs": args.n_envs,
            "n_steps": args.n_steps,
            "seed": args.seed,
        }
    bounds = [(start, stop) for traj in trajectories for start, stop in traj.episode_bounds()]
    episodes = np.concatenate([np.full(b - a, e) for e, (a, b) in enumerate(bounds)])
    steps = np.concatenate([np.arange(b - a) for a, b in bounds])
    observations = np.concatenate([traj.observations for traj in trajectories])
    return observations, episodes, steps, source


def run(args: argparse.Namespace) -> Path:
    _validate(args)
    view = agents.load(args.model, trust_pickle=args.trust_pickle, precision=args.precision)
    # an unknown layer: one line, before any work (separate trunks: 2b alone is ambiguous)
    args.layer = [view.layer_for(layer) for layer in args.layer or [view.default_layer()]]
    started = time.perf_counter()
    obs, episodes, steps, source = load_observations(view, args)
    try:
        view.preprocess(obs[:1])
    except ValueError as err:
        raise InterpretError(str(err)) from err
    dead_table = dead_units(view, obs, args.batch_size)
    effect_idx = np.linspace(0, len(obs) - 1, min(args.effect_obs, len(obs))).astype(int)
    layers: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for layer in args.layer:
        stats = unit_statistics(view, layer, obs, args.quantile, args.batch_size)
        top = [
            top_observations(
                stats.per_observation_max[:, u],
                float(stats.threshold[u]),
                episodes,
                steps,
                args.top,
                args.spacing,
            )
            for u in range(stats.units)
        ]
        maps = _maps(view, layer, obs, stats, top, args.batch_size)
        effects = {}
        if len(effect_idx):
            bar = tqdm(
                total=stats.units, desc=f"zeroing {layer}", disable=args.no_progress, leave=False
            )
            effects = zeroing_effects(
                view,
                layer,
                range(stats.units),
                obs[effect_idx],
                args.batch_size,
                progress=lambda d, b=bar: b.update(d - b.n),
            )
            bar.close()
        layers.append(layer_summary(stats, top, effects))
        arrays |= layer_arrays(stats, top, maps, effects)
        layers[-1]["_maps"] = maps
    summary = {
        "model": str(view.source) if view.source is not None else args.model,
        "algo": view.algo,
        "precision": args.precision,
        "observations": len(obs),
        "episodes": int(episodes.max()) + 1,
        "source": source,
        "quantile": args.quantile,
        "top": args.top,
        "spacing": args.spacing,
        "effect_observations": len(effect_idx),
        "dead_units": dead_table,
        "layers": [{k: v for k, v in s.items() if not k.startswith("_")} for s in layers],
        "seconds": round(time.perf_counter() - started, 1),
    }
    arrays["observation_episode"], arrays["observation_step"] = episodes, steps
    return write_report(
        args.out, render_page(summary, layers, obs), summary, arrays, replace=args.force
    )


def _maps(view, layer, obs, stats: UnitStatistics, top, batch_size) -> list[list[np.ndarray]]:
    """Per unit, its top observations' activation maps (H, W) bool ([] if not an image)."""
    image = observation_image(obs[0])
    if image is None:
        return [[] for _ in top]
    size = (image.shape[0], image.shape[1])
    pairs = [(u, i) for u, chosen in enumerate(top) for i in chosen]
    maps: list[list[np.ndarray]] = [[] for _ in top]
    for start in range(0, len(pairs), batch_size):
        part = pairs[start : start + batch_size]
        units, index = [u for u, _ in part], [i for _, i in part]
        result = activation_maps(view, layer, obs[index], units, stats.threshold, size)
        for (u, _), m in zip(part, result, strict=True):
            maps[u].append(m)
    return maps
