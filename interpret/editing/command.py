"""Blind a policy to a feature: project NMF directions out of the next layer's kernel.

Hilton et al. (2020), Appendix A: with v a feature's direction in a layer's channel space, the
next layer's kernel W becomes W P, P = I - v v^T / |v|^2 on its input-channel axis (several
features: the projector off their span). The result is a normal run directory: ``model.zip``
loads in plain SB3, ``config.json`` is the source run's with an ``"edit"`` record added (the
same record is in the zip's metadata), and every other verb takes it as a model.

examples:
  python -m interpret edit runs/demo --features reports/demo-attribution --feature 3 \\
      --out runs/demo-edited
  python -m interpret edit runs/demo --features reports/demo-attribution --feature buzzsaw \\
      --out runs/demo-no-saw            # by label (named in the report's summary.json)
  python -m interpret edit runs/demo --features reports/demo-attribution --feature hazards \\
      --out runs/demo-no-hazard         # CoinRun: the feature most negative on hazards
  python -m interpret edit runs/demo --direction-file v.npy --layer fc1 --out runs/demo-fc1
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.precision import add_precision_argument
from interpret.core.errors import InterpretError, check_counts

HAZARDS = "hazards"  # the --feature keyword for the hazard feature (CoinRun)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 .zip or zoo:NAME")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", metavar="REPORT", help="an `attribute` report directory")
    source.add_argument(
        "--direction-file", metavar="FILE.npy", help="(C,) or (k, C) directions at --layer"
    )
    parser.add_argument(
        "--feature", nargs="+", metavar="K",
        help=f"feature index or label (several: their span); '{HAZARDS}' picks the feature "
        "with the strongest negative attribution on CoinRun hazards (for a policy target: "
        "the strongest attribution of either sign)",
    )  # fmt: skip
    parser.add_argument("--layer", help="the directions' layer (default: the report's)")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--trust-pickle", action="store_true", help="load with SB3's unpickler")
    add_precision_argument(parser, "for the measurements; the edit itself is float32")
    hazards = parser.add_argument_group(f"--feature {HAZARDS}")
    hazards.add_argument("--env", help="env id (default: the report's, else the model's)")
    hazards.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE")
    hazards.add_argument(
        "--hazard-kinds", nargs="+", default=["buzzsaw", "enemy", "lava"],
        choices=["buzzsaw", "enemy", "lava"], help="hazards whose pixels count",
    )  # fmt: skip
    hazards.add_argument(
        "--hazard-observations", type=int, default=128, help="frames with a hazard in view (128)"
    )
    hazards.add_argument("--seed", type=int, default=0, help="seed of the levels played (0)")


def run(args: argparse.Namespace) -> Path:
    import agents
    from agents.outputs import lock_dir

    out = Path(args.out)  # checked by the CLI before any work: a directory, --force to replace
    view = agents.load(args.model, trust_pickle=args.trust_pickle, precision=args.precision)
    if view.source is not None and view.source.is_dir():
        raise InterpretError(
            f"edit writes model zips; {view.source} is a run directory (World Models): edit it "
            "with interpret.editing.project_out and save it with view.save"
        )
    if view.source is not None and out.resolve() in view.source.resolve().parents:
        raise InterpretError(f"--out {out} holds the source model; pick another directory")
    with lock_dir(out):  # a second writer of --out (edit, train.py) is refused meanwhile
        return _edit(view, out, args)


def _edit(view: Any, out: Path, args: argparse.Namespace) -> Path:
    from interpret.editing.projection import project_out

    if args.features:
        layer, directions, record = _from_report(view, args)
    else:
        layer, directions, record = _from_file(view, args)
    edit = project_out(view, layer, directions)
    record = {
        **edit.to_json(),
        "source_model": str(view.source) if view.source is not None else str(args.model),
        **record,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if "edit" in view.metadata:  # an edit of an edited model keeps the history
        record["previous_edit"] = view.metadata["edit"]
    dropped = _write_run(view, out, record)
    for note in dropped:
        print(f"not copied: {note}")
    what = record.get("feature_labels") or [f"{len(np.atleast_2d(directions))} direction(s)"]
    print(
        f"edited {', '.join(edit.parameters)}: projected out {', '.join(map(str, what))} "
        f"(rank {edit.rank}) at layer {layer}"
    )
    return out


def _from_report(view: Any, args: argparse.Namespace) -> tuple[str, np.ndarray, dict[str, Any]]:
    from interpret.attribution.features import read_features_report
    from interpret.attribution.integrated_gradients import target_output

    if not args.feature:
        raise InterpretError("--features needs --feature K [K ...] (an index or a label)")
    report = read_features_report(args.features)
    layer = report.features.layer
    if layer not in view.layers():
        raise InterpretError(
            f"the model has no layer {layer!r} (the report's); its layers: "
            f"{', '.join(view.layers())}"
        )
    if args.layer and view.layer_for(args.layer, target_output(view, report.target)) != layer:
        raise InterpretError(f"the report's features are at layer {layer!r}, not {args.layer!r}")
    _check_policy_reads(view, layer, report.target)
    shape = view.layer_shape(layer)
    channels = report.features.directions.shape[1]
    if shape[0] != channels or (report.layer_shape and report.layer_shape != shape):
        reported = report.layer_shape or (channels,)
        raise InterpretError(
            f"the model's layer {layer!r} has shape {shape}, the report's {reported}: the report "
            "was made for another architecture"
        )
    record: dict[str, Any] = {"features_report": str(report.path)}
    keys = list(args.feature)
    measured: dict[str, int] = {}  # features found by measuring (HAZARDS), not by name
    if HAZARDS in keys:
        measured[HAZARDS], record["hazard_attribution"] = _hazard_feature(view, report, args)
    indices = [measured[key] if key in measured else report.index(key) for key in keys]
    indices = list(dict.fromkeys(indices))
    record["feature_indices"] = indices
    record["feature_labels"] = [report.name(i) for i in indices]
    return layer, report.features.directions[indices], record


def _check_policy_reads(view: Any, layer: str, target: str | None) -> None:
    """Refuse an edit the policy cannot feel: at a layer of the value's own trunk (separate
    policy and value trunks), a projection changes the value and no action."""
    import torch

    if view.split_is_complete(layer):
        return
    lower, upper = view.split(layer)
    blank = np.zeros((1, *view.observation_space.shape), dtype=np.uint8)
    with torch.no_grad():
        outputs = upper(lower(view.preprocess(blank)))
    try:
        view.action_scores(outputs)
    except KeyError:
        attributed = f" (attributed to {target!r})" if target else ""
        raise InterpretError(
            f"layer {layer!r}{attributed} feeds only {', '.join(sorted(outputs))}, not the "
            "policy: an edit there changes no action; attribute the policy's own trunk "
            "(attribute --target policy) and edit that"
        ) from None


def _hazard_feature(view: Any, report: Any, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    from interpret.attribution.hazards import counts_bad_news, measure_hazard_attribution
    from interpret.core.model_env import resolve_env

    env_id, options = resolve_env(
        view, args.env, args.env_kwargs, preferred=(report.env_id, report.env_options)
    )
    check_counts(args, ("hazard_observations",))
    measured = measure_hazard_attribution(
        view, report.features, env_id, options, args.hazard_observations, args.seed,
        kinds=args.hazard_kinds, target=report.target, n_steps=report.n_steps,
    )  # fmt: skip
    index = measured.feature
    counted = "bad news" if counts_bad_news(report.target) else "attribution, either sign"
    print(
        f"hazard attribution at {report.features.layer} on {len(measured.observations)} frames "
        f"with {'/'.join(args.hazard_kinds)} in view ({measured.steps_recorded} steps played):"
    )
    for i, (score, share) in enumerate(zip(measured.scores, measured.shares, strict=True)):
        mark = "  <- most negative" if i == index else ""
        print(f"  {report.name(i):>16}: {score:+.6f} ({share:.1%} of its {counted}){mark}")
    return index, {
        "scores": [float(s) for s in measured.scores],
        "shares": [float(s) for s in measured.shares],
        "chosen": index,
        "meaning": f"scores: minus each feature's {counted} inside hazard pixels, mean per "
        "frame (target units), the most negative is the hazard feature; shares: the part of "
        f"each feature's {counted} on those frames inside hazard pixels",
        "env_id": env_id,
        "env_options": options,
        "kinds": list(args.hazard_kinds),
        "observations": len(measured.observations),
        "steps_played": measured.steps_recorded,
        "target": report.target,
        "n_steps": report.n_steps,
        "seed": args.seed,
    }


def _from_file(view: Any, args: argparse.Namespace) -> tuple[str, np.ndarray, dict[str, Any]]:
    if args.feature:
        raise InterpretError("--feature selects from a --features report, not a --direction-file")
    if not args.layer:
        raise InterpretError(f"--direction-file needs --layer (one of: {', '.join(view.layers())})")
    from interpret.attribution.integrated_gradients import target_output

    args.layer = view.layer_for(args.layer, target_output(view, "policy"))
    _check_policy_reads(view, args.layer, None)
    path = Path(args.direction_file)
    try:
        directions = np.load(path, allow_pickle=False)
    except FileNotFoundError as err:
        raise InterpretError(f"direction file not found: {path}") from err
    except (OSError, ValueError) as err:
        raise InterpretError(f"cannot read {path} as a .npy array: {err}") from err
    if (
        not isinstance(directions, np.ndarray)
        or directions.ndim not in (1, 2)
        or not np.issubdtype(directions.dtype, np.number)
    ):
        raise InterpretError(f"{path}: directions must be a numeric (C,) or (k, C) array")
    shape = view.layer_shape(args.layer)
    if directions.shape[-1] != shape[0]:
        raise InterpretError(
            f"{path} has {directions.shape[-1]} entries per direction; layer {args.layer!r} has "
            f"{shape[0]} channels"
        )
    return args.layer, directions.astype(np.float64), {"direction_file": str(path)}


def _write_run(view: Any, out: Path, record: dict[str, Any]) -> list[str]:
    """model.zip + config.json (+ the source's normalization statistics) into `out` (locked by
    the caller), atomically. Nothing is copied verbatim: the zip keeps only the members read
    safely (`agents.sb3_zip.write_sb3_zip`), the statistics are re-saved as plain arrays.
    Returns notes on what was left out (also in config.json and the zip's record as
    ``"not_copied"``)."""
    from agents.fileio import InputFileError, read_json_file, read_npz, staging_dir, write_json
    from agents.loading import MODEL_FILE
    from agents.outputs import swap_in
    from agents.sb3_zip import read_sb3_zip
    from agents.training import CONFIG_FILE, NORMALIZATION_FILE

    run_dir = view.source is not None and view.source.name == MODEL_FILE
    source_dir = view.source.parent if run_dir else None
    staging = staging_dir(out)
    try:
        view.save(staging / MODEL_FILE, metadata={"edit": record})
        notes = list(read_sb3_zip(staging / MODEL_FILE).extra.get("not_copied", []))
        config: dict[str, Any] = {}
        if source_dir is not None and (source_dir / CONFIG_FILE).is_file():
            config = read_json_file(source_dir / CONFIG_FILE, "run config")
            if not isinstance(config, dict):
                raise InputFileError(f"{source_dir / CONFIG_FILE} is not a JSON object")
        else:
            config = {k: view.metadata[k] for k in ("algo", "env_id", "env_kwargs", "arch")
                      if k in view.metadata}  # fmt: skip
        norm = source_dir / NORMALIZATION_FILE if source_dir is not None else None
        if norm is not None and norm.is_file():
            pickled: list[str] = []
            arrays = read_npz(norm, "normalization file", pickled=pickled)
            numeric = {k: v for k, v in arrays.items() if v.dtype.kind in "biuf"}
            notes += [f"{NORMALIZATION_FILE}: {k} (pickled)" for k in pickled]
            notes += [
                f"{NORMALIZATION_FILE}: {k} (not numeric)" for k in set(arrays) - set(numeric)
            ]
            with open(staging / NORMALIZATION_FILE, "wb") as f:
                np.savez(f, **numeric)
        write_json(staging / CONFIG_FILE, {**config, "edit": record, "not_copied": notes})
        swap_in(staging, out, replace=True, locked=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return notes
