"""Compare the V of World Models runs on the same held-out frames: pixel error and sharpness.

    python scripts/compare_vision.py runs/car-vae runs/car-vaegan --episodes 4 --steps 500 \\
        --out docs/results/data/vae-vs-vaegan.json

The frames are new episodes of the first run's env and rollout policy, on seeds far from any
run's training or evaluation seeds (``world_model.vision_quality``); every run must be on the
same env. Prints one row per run and writes them, with the settings, to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/compare_vision.py",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("runs", nargs="+", type=Path, help="World Models run directories")
    parser.add_argument("--episodes", type=int, default=4, help="held-out episodes (4)")
    parser.add_argument("--steps", type=int, default=500, help="max steps per episode (500)")
    parser.add_argument("--seed", type=int, default=0, help="held-out seed offset (0)")
    parser.add_argument("--workers", type=int, default=2, help="rollout worker processes (2)")
    parser.add_argument("--out", type=Path, help="write the rows here (JSON)")
    return parser


def _checked_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each run's config; `RunError` (one line) for bad input, before any rollout."""
    from agents.outputs import check_writable_dir
    from world_model.rundir import RunError, read_config

    if args.episodes < 1 or args.steps < 1:
        raise RunError("--episodes and --steps must be positive")
    if args.workers < 1:
        raise RunError(f"--workers must be positive, got {args.workers}")
    configs = []
    for run in args.runs:
        config = read_config(run)
        if config.get("algo") != "worldmodel":
            raise RunError(f"{run} is not a World Models run")
        if not (run / "vae.safetensors").is_file():
            raise RunError(f"{run} has no trained V (vae.safetensors)")
        configs.append(config)
    envs = {(c["env_id"], str(sorted(c.get("env_kwargs", {}).items()))) for c in configs}
    if len(envs) > 1:
        raise RunError(f"the runs are on different envs: {sorted(e[0] for e in envs)}")
    if args.out is not None:
        check_writable_dir(args.out.parent)
    return configs


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from agents.executor import make_executor
    from agents.fileio import write_json
    from agents.outputs import OutputError
    from world_model.model import WeightsFileError
    from world_model.rundir import RunError
    from world_model.vision_quality import held_out_frames, run_vision_quality

    try:
        configs = _checked_runs(args)
    except (RunError, OutputError) as err:
        print(f"compare_vision.py: error: {err}", file=sys.stderr)
        return 2
    first = configs[0]
    with make_executor("local" if args.workers > 1 else "serial", args.workers) as executor:
        frames = held_out_frames(
            executor,
            first["env_id"],
            first["rollout_policy"],
            args.episodes,
            args.steps,
            args.seed,
            first.get("env_kwargs", {}),
        )
    rows = []
    print(f"{len(frames)} held-out frames of {first['env_id']} ({first['rollout_policy']} policy)")
    print(f"{'run':40} {'vae':6} {'pixel MSE':>10} {'sharpness':>10} {'vs real':>8}")
    for run, config in zip(args.runs, configs, strict=True):
        try:
            quality = run_vision_quality(run, frames)
        except WeightsFileError as err:
            print(f"compare_vision.py: error: {err}", file=sys.stderr)
            return 2
        kind = config.get("vae", "plain")
        rows.append({"run": str(run), "vae": kind, **quality.as_dict()})
        print(
            f"{run!s:40} {kind:6} {quality.pixel_mse:10.5f} "
            f"{quality.sharpness_reconstructed:10.5f} {quality.sharpness_ratio:8.3f}"
        )
    if args.out is not None:
        settings = {k: getattr(args, k) for k in ("episodes", "steps", "seed")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, {"env_id": first["env_id"], **settings, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
