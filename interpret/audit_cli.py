"""Audit a CoinRun policy: completion rate, failures by cause, failed episodes, surprises.

Plays N levels once each (seeded: the same command gives the same levels and outcomes, with
any number of workers), labels every episode that ends without the coin by what ended it
(buzzsaw, enemy moving left or right, lava, timeout, or several), and writes a report with the
failure-by-cause table of Hilton et al. (2020), the first failed episodes as trajectories with
links into the attribution interface at their fatal steps, and the steps with the most extreme
GAE advantage.

example:
  python -m interpret audit runs/demo --env procgen:coinrun \\
      --env-kwargs distribution_mode=easy paint_vel_info=true \\
      --levels 500 --features reports/demo-attribution --out reports/demo-audit

Files in the report directory:
  index.html          the report (opens from disk, no network)
  summary.json        settings, completion, failure table with 95% CIs, every failure's cause,
                      extreme-advantage steps, timings
  arrays.npz          per level: level_seeds, completed, returns, lengths, category (index
                      into the table's columns, -1 completed), causes (levels x 5 bools), and
                      the states before each fatal step (fatal_state_bytes/offsets)
  failures/           the kept failed episodes' last steps (Trajectory .npz files)
  attribution/        the attribution interface of those episodes (unless --no-attribution)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agents.precision import PRECISIONS
from interpret.audit import LEVEL_EDITS
from interpret.errors import InterpretError

AUDITED_GAME = "procgen:coinrun"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `audit` and `compare`: which levels, how they are played."""
    parser.add_argument("--env", help="env id (default: the model's; must be procgen:coinrun)")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE")
    parser.add_argument("--levels", type=int, default=1000, help="levels to play (N)")
    parser.add_argument(
        "--start-level", type=int, help="first level seed (default: levels unseen in training)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the action sampling")
    parser.add_argument("--deterministic", action="store_true", help="greedy actions")
    parser.add_argument(
        "--level-edit",
        choices=tuple(LEVEL_EDITS),
        help="play counterfactual levels (the paper's controls)",
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel workers")
    parser.add_argument("--executor", choices=("local", "serial", "ray"), default="local")
    parser.add_argument(
        "--n-envs", type=int, default=64, help="envs per worker (one network batch)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="network precision (bf16: autocast; outcomes can differ from fp32's)",
    )
    parser.add_argument("--trust-pickle", action="store_true", help="load with SB3's unpickler")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 .zip or zoo:NAME")
    add_model_arguments(parser)
    parser.add_argument("--show", type=int, default=12, help="failed episodes kept and shown")
    parser.add_argument("--context", type=int, default=128, help="steps kept per failure")
    parser.add_argument("--extremes", type=int, default=8, help="extreme-advantage steps shown")
    parser.add_argument(
        "--features", help="attribution report whose NMF features to use (default: fit new)"
    )
    parser.add_argument("--layer", help="layer for the attribution (default: 2b / --features')")
    parser.add_argument("--nmf-features", type=int, default=8, help="k when fitting features")
    parser.add_argument("--no-attribution", action="store_true", help="skip the attribution")
    parser.add_argument("--out", default="reports/audit", help="report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def check_model_arguments(args: argparse.Namespace) -> None:
    for name in ("levels", "workers", "n_envs"):
        if getattr(args, name) < 1:
            raise InterpretError(f"--{name.replace('_', '-')} must be positive")
    if args.start_level is not None and args.start_level < 0:
        raise InterpretError("--start-level must be >= 0")


def resolve_env(view: Any, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(env id, options) from the flags or the model's training record; CoinRun only."""
    import envs
    from interpret.model_env import resolve_env

    env_id, options = resolve_env(view, args.env, args.env_kwargs)
    if env_id != AUDITED_GAME:
        raise InterpretError(f"the audit labels failures of {AUDITED_GAME} only, not {env_id}")
    envs.make_vec_env(env_id, 1, 0, **options).close()  # bad options fail here, in one line
    return env_id, options


def level_seeds(options: dict[str, Any], args: argparse.Namespace) -> list[int]:
    """N level seeds: from --start-level, else levels the model was not trained on."""
    from agents.evaluate import procgen_eval_levels

    if args.start_level is not None:
        return list(range(args.start_level, args.start_level + args.levels))
    return procgen_eval_levels(options, args.levels, args.seed)["test"]


def play(
    view: Any,
    args: argparse.Namespace,
    env_id: str,
    options: dict[str, Any],
    *,
    model: str | None = None,
    desc: str = "auditing",
    keep_failures: int = 0,
    context: int = 128,
    extremes: int = 0,
) -> Any:
    """The `AuditResult` of `view` (loaded from `model`, default ``args.model``) on the
    levels and settings of `args`, with a progress bar."""
    from agents.executor import make_executor
    from interpret.audit import run_audit

    seeds = level_seeds(options, args)
    model = str(model or args.model)
    bar = tqdm(total=len(seeds), desc=desc, unit="level", leave=False)
    try:
        with make_executor(args.executor, args.workers) as executor:
            result = run_audit(
                model, env_id, seeds, env_options=options, seed=args.seed, executor=executor,
                n_envs=args.n_envs, deterministic=args.deterministic,
                level_edit=args.level_edit, trust_pickle=args.trust_pickle,
                keep_failures=keep_failures, context=context, extremes=extremes,
                progress=bar.update, precision=args.precision,
            )  # fmt: skip
    finally:
        bar.close()
    result.settings.update(
        model=str(view.source) if view.source is not None else model,
        env_id=env_id,
        env_options=options,
        levels=len(seeds),
        first_level=seeds[0],
        seed=args.seed,
        deterministic=args.deterministic,
        level_edit=args.level_edit,
        workers=args.workers,
        executor=args.executor,
        n_envs=args.n_envs,
        precision=args.precision,
    )
    return result


def run(args: argparse.Namespace) -> Path:
    import agents
    from interpret.audit_report import (
        arrays_dict,
        failure_name,
        render_page,
        summary_dict,
        trajectory_bytes,
    )
    from interpret.features_report import read_features_report
    from interpret.report import write_report

    check_model_arguments(args)
    for name in ("show", "context", "nmf_features"):
        if getattr(args, name) < 1:
            raise InterpretError(f"--{name.replace('_', '-')} must be positive")
    if args.extremes < 0:
        raise InterpretError("--extremes must be >= 0")
    view = agents.load(args.model, trust_pickle=args.trust_pickle)
    env_id, options = resolve_env(view, args)
    report = read_features_report(args.features) if args.features else None
    features = report.features if report else None
    layer = None if args.no_attribution else _attribution_layer(view, args.layer, features)

    result = play(
        view, args, env_id, options, keep_failures=args.show, context=args.context,
        extremes=args.extremes,
    )  # fmt: skip
    files: dict[str, bytes] = {
        failure_name(int(t.level_seeds[0])): trajectory_bytes(t) for _, t in result.failures
    }
    attribution = layer is not None and bool(result.failures)
    if attribution:
        clock = time.perf_counter()
        files.update(_attribution_files(view, args, layer, result, env_id, options, report))
        result.timings["attribution_s"] = time.perf_counter() - clock
    summary = summary_dict(result, attribution)
    from interpret.attribute_cli import action_names

    index = render_page(result, summary, action_names(env_id, view), attribution)
    out = write_report(args.out, index, summary, arrays_dict(result), files, replace=args.force)
    print(format_table(result))
    return out


def _attribution_layer(view: Any, layer: str | None, features: Any) -> str | None:
    """The layer to attribute at (--layer, else the features', else 2b), or None for none."""
    layer = layer or (features.layer if features else ("2b" if "2b" in view.layers() else None))
    if layer is None:
        print("no --layer given and the model has no layer 2b: the report has no attribution")
        return None
    if layer not in view.layers():
        raise InterpretError(f"unknown layer {layer!r}; this model's: {', '.join(view.layers())}")
    if features is not None and features.layer != layer:
        raise InterpretError(f"--features are at layer {features.layer!r}, not {layer!r}")
    return layer


def _attribution_files(
    view: Any,
    args: argparse.Namespace,
    layer: str,
    result: Any,
    env_id: str,
    options: dict[str, Any],
    report: Any,
) -> dict[str, bytes]:
    """The attribution interface of the kept failures, as files under ``attribution/``, with
    the features (and target) of the attribution `report`, or features fitted on them."""
    from interpret.attribute_cli import action_names
    from interpret.attribution import HiddenLayerIntegratedGradients
    from interpret.attribution_report import build_report
    from interpret.nmf_features import fit_nmf

    features = report.features if report is not None else None
    target = report.target if report is not None else None
    n_steps = report.n_steps if report is not None else 10
    ig = HiddenLayerIntegratedGradients(
        view, layer, target=target, n_steps=n_steps, precision=args.precision
    )
    trajectories = [t for _, t in result.failures]
    attributions = [ig.attribute(t.observations) for t in trajectories]
    sample = np.concatenate([a.attributions for a in attributions])
    if features is None:
        features = fit_nmf(sample, layer, min(args.nmf_features, sample.shape[1]))
    elif features.directions.shape[1] != sample.shape[1]:
        raise InterpretError(
            f"--features have {features.directions.shape[1]} channels; layer {layer!r} of "
            f"this model has {sample.shape[1]}"
        )
    merged = _concat_attributions(attributions)
    settings = {
        "model": result.settings["model"],
        "env_id": env_id,
        "env_options": options,
        "layer": layer,
        "target": ig.target_name,
        "n_steps": ig.n_steps,
        "alphas": ig.alphas,
        "baseline": "zero",
        "precision": args.precision,
        "features": features.k,
        "nmf_on": features.source,
        "features_from": args.features or "fitted on these failures",
        "sample_observations": len(sample),
        "smooth_sigma": 1.0,
        "seed": args.seed,
        "trajectories_are": "the audit's failed episodes (last steps), fatal step last",
    }
    with tempfile.TemporaryDirectory(prefix="audit-attribution-") as tmp:
        out = Path(tmp) / "attribution"
        build_report(
            out, settings=settings, features=features,
            sample_observations=np.concatenate([t.observations for t in trajectories]),
            sample_attribution=merged, trajectories=trajectories, attributions=attributions,
            maps=[features.maps(a.attributions) for a in attributions],
            action_names=action_names(env_id, view),
        )  # fmt: skip
        return {
            f"attribution/{path.relative_to(out)}": path.read_bytes()
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }


def _concat_attributions(parts: list[Any]) -> Any:
    from dataclasses import fields

    first = parts[0]
    merged = {}
    for f in fields(first):
        values = [getattr(p, f.name) for p in parts]
        if isinstance(values[0], np.ndarray):
            merged[f.name] = np.concatenate(values)
        else:
            merged[f.name] = values[0]
    return type(first)(**merged)


def format_table(result: Any) -> str:
    """Completion and the failure-by-cause table of one audit as plain text."""
    from interpret.audit_report import percent, text_table

    lines = [["", "episodes", "% of levels (95% CI)"]]
    c = result.completion()
    lines.append(["completed", str(c["completed"]), percent({**c, "count": c["completed"]})])
    for column, rate in result.failure_table().items():
        lines.append([f"failed: {column}", str(rate["count"]), percent(rate)])
    return text_table(lines) + f"\n({result.n} levels, 95% Wilson intervals)"
