"""Network dissection of a policy's units [000_1eda41341072b0b1.txt].

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
import html
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import agents
from interpret.dissection import (
    UnitStatistics,
    activation_maps,
    dead_units,
    observation_image,
    top_observations,
    unit_statistics,
)
from interpret.errors import InterpretError
from interpret.interventions import rank_units, zeroing_effects
from interpret.report import page, png_data_uri, write_report
from interpret.trajectory import Trajectory, record_trajectories


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 zip or zoo:NAME")
    parser.add_argument("--layer", nargs="+", required=True, help="layer(s) to dissect")
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
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _validate(args: argparse.Namespace) -> None:
    for name in ("n_envs", "n_steps", "top", "batch_size"):
        if getattr(args, name) <= 0:
            raise InterpretError(f"--{name.replace('_', '-')} must be positive")
    if args.spacing < 0 or args.effect_obs < 0:
        raise InterpretError("--spacing and --effect-obs must be >= 0")
    if not 0.0 < args.quantile < 0.5:
        raise InterpretError(
            f"--quantile must be in (0, 0.5), e.g. 0.01 or 0.05; got {args.quantile}"
        )


def load_observations(
    view, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(observations (N, ...), episode id (N,), step within the episode (N,), source info)."""
    from interpret.model_env import resolve_env

    if args.trajectory:
        trajectories = []
        for path in args.trajectory:
            trajectories.append(Trajectory.load(path))  # one-line InputFileError if not one
        source = {"trajectories": [str(p) for p in args.trajectory]}
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
    observations, episodes, steps, next_episode = [], [], [], 0
    for traj in trajectories:
        for start, stop in traj.episode_bounds():
            observations.append(traj.observations[start:stop])
            episodes.append(np.full(stop - start, next_episode))
            steps.append(np.arange(stop - start))
            next_episode += 1
    return np.concatenate(observations), np.concatenate(episodes), np.concatenate(steps), source


def run(args: argparse.Namespace) -> Path:
    _validate(args)
    view = agents.load(args.model, trust_pickle=args.trust_pickle)
    for layer in args.layer:
        view.layer_module(layer)  # unknown layer: one line, before any work
    started = time.perf_counter()
    obs, episodes, steps, source = load_observations(view, args)
    try:
        view.preprocess(obs[:1])
    except ValueError as err:
        raise InterpretError(str(err)) from err
    dead_table = dead_units(view, obs, args.batch_size)
    effect_idx = np.linspace(0, len(obs) - 1, min(args.effect_obs, len(obs))).astype(int)
    layers, arrays = [], {}
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
        layers.append(_layer_summary(stats, top, effects))
        arrays |= _layer_arrays(stats, top, maps, effects)
        layers[-1]["_maps"] = maps
    summary = {
        "model": str(view.source) if view.source is not None else args.model,
        "algo": view.algo,
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
    return write_report(args.out, _html(summary, layers, obs), summary, arrays, replace=args.force)


def _maps(view, layer, obs, stats: UnitStatistics, top, batch_size) -> list[list[np.ndarray]]:
    """Per unit, its top observations' activation maps (H, W) bool ([] if not an image)."""
    image = observation_image(obs[0])
    if image is None:
        return [[] for _ in top]
    size = image.shape[:2]
    pairs = [(u, i) for u, chosen in enumerate(top) for i in chosen]
    maps: list[list[np.ndarray]] = [[] for _ in top]
    for start in range(0, len(pairs), batch_size):
        part = pairs[start : start + batch_size]
        units, index = [u for u, _ in part], [i for _, i in part]
        result = activation_maps(view, layer, obs[index], units, stats.threshold, size)
        for (u, _), m in zip(part, result, strict=True):
            maps[u].append(m)
    return maps


def _layer_summary(stats: UnitStatistics, top, effects) -> dict[str, Any]:
    key, order = rank_units(effects) if effects else (None, np.arange(stats.units))
    units = []
    for u in range(stats.units):
        units.append(
            {
                "unit": u,
                "dead": bool(stats.dead[u]),
                "threshold": float(stats.threshold[u]),
                "max": float(stats.maximum[u]),
                "mean": float(stats.mean[u]),
                "active_fraction": float(stats.active_fraction[u]),
                "top_observations": top[u],
                "zeroing": {k: float(v[u]) for k, v in effects.items()},
            }
        )
    return {
        "layer": stats.layer,
        "shape": list(stats.shape),
        "fully_connected_as_1x1": stats.shape[1:] == (1, 1),
        "dead": int(stats.dead.sum()),
        "units": stats.units,
        "ranking_key": key,
        "ranking": [int(u) for u in order],
        "per_unit": units,
    }


def _layer_arrays(stats: UnitStatistics, top, maps, effects) -> dict[str, np.ndarray]:
    prefix = stats.layer.replace("/", "_")
    top_array = np.full((stats.units, max((len(t) for t in top), default=0)), -1, dtype=np.int64)
    for u, chosen in enumerate(top):
        top_array[u, : len(chosen)] = chosen
    arrays = {
        f"{prefix}.threshold": stats.threshold,
        f"{prefix}.max": stats.maximum,
        f"{prefix}.mean": stats.mean,
        f"{prefix}.active_fraction": stats.active_fraction,
        f"{prefix}.dead": stats.dead,
        f"{prefix}.per_observation_max": stats.per_observation_max,
        f"{prefix}.top_observations": top_array,
    }
    if any(maps):
        size = next(m[0].shape for m in maps if m)
        stacked = np.zeros((*top_array.shape, *size), dtype=bool)
        for u, unit_maps in enumerate(maps):
            for j, m in enumerate(unit_maps):
                stacked[u, j] = m
        arrays[f"{prefix}.maps"] = stacked
    for key, values in effects.items():
        arrays[f"{prefix}.zeroing.{key}"] = values
    return arrays


def _overlay(obs: np.ndarray, mask: np.ndarray, scale: int = 2) -> str:
    """The frame, dimmed outside the activation map, as a data URI."""
    image = observation_image(obs).astype(np.float32)
    shown = np.where(mask[:, :, None], image, image * 0.25 + 40).astype(np.uint8)
    return png_data_uri(np.kron(shown, np.ones((scale, scale, 1), dtype=np.uint8)))


CSS = """
td.maps img { margin-right: 4px; } tr.dead { color: #999; }
"""


def _html(summary: dict[str, Any], layers: list[dict[str, Any]], obs: np.ndarray) -> str:
    q = summary["quantile"]
    dead_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{d['dead']}/{d['units']}</td></tr>"
        for name, d in summary["dead_units"].items()
    )
    parts = [
        "<h1>Network dissection</h1>",
        f"<p>Model <code>{html.escape(summary['model'])}</code> ({summary['algo']}), "
        f"{summary['observations']} observations in {summary['episodes']} episode(s). "
        f"Threshold t_u: top {q:.0%} of each unit's activations; maps show "
        f"{{p | a_u(x, p) &gt; t_u}} upsampled to the frame on the unit's top observations "
        f"(at least {summary['spacing']} steps apart within an episode). Zeroing effects are "
        f"means over {summary['effect_observations']} observations.</p>",
        "<h2>Units that never activate (max &le; 0), per layer</h2>",
        f"<table><tr><th>layer</th><th>dead / units</th></tr>{dead_rows}</table>",
    ]
    for layer in layers:
        key = layer["ranking_key"]
        effect_names = list(layer["per_unit"][0]["zeroing"]) if layer["per_unit"] else []
        header = "".join(f"<th>{html.escape(k)}</th>" for k in effect_names)
        parts.append(
            f"<h2>Layer {html.escape(layer['layer'])} {tuple(layer['shape'])}"
            f"{' (fully connected, as 1x1)' if layer['fully_connected_as_1x1'] else ''}</h2>"
            f"<p>{layer['dead']} of {layer['units']} units dead. "
            + (
                f"Units in order of the effect of zeroing them ({html.escape(key)}).</p>"
                if key
                else "Zeroing effects not measured.</p>"
            )
            + "<table><tr><th>rank</th><th>unit</th><th>status</th><th>t_u</th><th>max</th>"
            f"<th>active</th>{header}<th>top activation maps</th></tr>"
        )
        for rank, u in enumerate(layer["ranking"]):
            unit = layer["per_unit"][u]
            images = "".join(
                f"<img class='pixel' title='observation {i}' src='{_overlay(obs[i], m)}'>"
                for i, m in zip(unit["top_observations"], layer["_maps"][u], strict=False)
            )
            effects = "".join(f"<td>{unit['zeroing'][k]:.4g}</td>" for k in effect_names)
            status = "dead" if unit["dead"] else "alive"
            parts.append(
                f"<tr class='{status}'><td>{rank + 1}</td><td>{u}</td><td>{status}</td>"
                f"<td>{unit['threshold']:.3g}</td><td>{unit['max']:.3g}</td>"
                f"<td>{unit['active_fraction']:.1%}</td>{effects}"
                f"<td class='maps'>{images}</td></tr>"
            )
        parts.append("</table>")
    return page("Network dissection", "\n".join(parts), css=CSS)
