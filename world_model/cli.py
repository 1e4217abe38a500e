"""``python train.py worldmodel --env ID --out runs/NAME [...]``: the V-M-C pipeline.

    python train.py worldmodel --env box2d:CarRacing-v3 --rollouts 32 --vae-epochs 5 \\
        --mdn-epochs 10 --generations 10 --population 8 --out runs/car-wm
    python train.py worldmodel --resume --out runs/car-wm          # continue where it stopped
    python train.py worldmodel --resume --out runs/car-wm --generations 30   # train C longer
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

# flag -> (config field, type, help); validated as positive unless listed in NON_NEGATIVE
FLAGS: dict[str, tuple[str, type, str]] = {
    "--rollouts": ("rollouts", int, "episodes to collect (default 32)"),
    "--rollout-steps": ("rollout_steps", int, "max steps per collected episode (1000)"),
    "--vae-epochs": ("vae_epochs", int, "V epochs over the stored frames (5)"),
    "--vae-batch-size": ("vae_batch_size", int, "V batch size (64)"),
    "--mdn-epochs": ("mdn_epochs", int, "M epochs (10)"),
    "--mdn-steps": ("mdn_steps", int, "M batches per epoch (0: one pass over the data)"),
    "--mdn-seq-len": ("mdn_seq_len", int, "M training sequence length (64)"),
    "--generations": ("generations", int, "CMA-ES generations (10; raise it with --resume)"),
    "--population": ("population", int, "CMA-ES population (8; the original 64)"),
    "--rollouts-per-candidate": ("rollouts_per_candidate", int, "episodes per candidate (2; 16)"),
    "--controller-steps": ("controller_steps", int, "max steps of a training episode (1000)"),
    "--sigma0": ("sigma0", float, "CMA-ES initial step size (0.1)"),
    "--temperature": ("temperature", float, "dream temperature tau (1.0)"),
    "--eval-steps": ("eval_steps", int, "max steps of an evaluation episode (1000)"),
}
NON_NEGATIVE = {"mdn_steps", "temperature"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("World Models (worldmodel)")
    for flag, (_, kind, help_text) in FLAGS.items():
        group.add_argument(flag, type=kind, help=help_text, metavar="N")
    group.add_argument("--rollout-policy", help="random, brownian, or a World Models run dir")
    group.add_argument("--train-in", choices=["real", "dream"], help="where C is trained (real)")
    group.add_argument("--predict-reward", action="store_true", help="M also predicts reward")
    group.add_argument("--predict-done", action="store_true", help="M also predicts done")
    group.add_argument(
        "--stage",
        choices=["rollouts", "vae", "mdn", "controller", "eval"],
        help="stop after this stage (default: all)",
    )
    group.add_argument("--executor", default="local", choices=["serial", "local", "ray"])
    group.add_argument("--workers", type=int, default=2, help="parallel worker processes (2)")
    group.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for training V and M here (0: torch's default; 1 is far faster on "
        "a busy machine)",
    )
    group.add_argument("--ray-address", help="join this Ray cluster (default: a local instance)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from world_model.run import RunError

    values: dict[str, Any] = {}
    for flag, (name, _, _) in FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:
            continue
        if value < 0 or (value == 0 and name not in NON_NEGATIVE):
            raise RunError(f"{flag} must be {'>= 0' if name in NON_NEGATIVE else '> 0'}")
        values[name] = value
    if args.eval_episodes is not None:
        if args.eval_episodes < 0:
            raise RunError(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
        values["eval_episodes"] = args.eval_episodes
    return values


def build_config(args: argparse.Namespace) -> Any:
    import envs
    from world_model.rollouts import POLICIES
    from world_model.run import RunError, WorldModelConfig, is_world_model_run

    if not args.env:
        raise RunError("--env is required (e.g. --env box2d:CarRacing-v3)")
    envs.parse_env_id(args.env)
    values = _overrides(args)
    policy = args.rollout_policy or "auto"
    if policy not in (*POLICIES, "auto") and not is_world_model_run(policy):
        raise RunError(
            f"--rollout-policy: expected random, brownian or a World Models run dir, got {policy!r}"
        )
    if args.train_in == "dream" and not args.predict_reward:
        raise RunError("--train-in dream needs --predict-reward (the dream's reward comes from M)")
    return WorldModelConfig(
        env_id=args.env,
        env_kwargs=envs.parse_options(args.env_kwargs),
        seed=args.seed,
        rollout_policy=policy,
        predict_reward=args.predict_reward,
        predict_done=args.predict_done,
        train_in=args.train_in or "real",
        command=shlex.join(["python", "train.py", *sys.argv[1:]]),
        **values,
    )


def _config_and_run_dir(args: argparse.Namespace) -> tuple[Any, Path]:
    from world_model.run import CONFIG_FILE, RunError

    config = build_config(args)
    run_dir = args.out or Path("runs") / (
        f"worldmodel-{config.env_id.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / CONFIG_FILE).exists():
        raise RunError(f"{run_dir} exists and is not empty")
    return config, run_dir


def main(args: argparse.Namespace) -> int:
    """Run the pipeline for parsed ``train.py`` arguments; 2 on bad input."""
    import envs
    from agents.executor import ExecutorError, make_executor
    from agents.fileio import write_json
    from world_model.model import WeightsFileError
    from world_model.run import (
        CONFIG_FILE,
        RunError,
        WorldModelConfig,
        create_run,
        read_config,
        run_pipeline,
    )

    errors = (envs.EnvSpecError, RunError, ExecutorError, WeightsFileError)
    try:
        if args.workers is None or args.workers < 1:
            raise RunError(f"--workers must be positive, got {args.workers}")
        if args.threads < 0:
            raise RunError(f"--threads must be >= 0, got {args.threads}")
        kwargs = {"address": args.ray_address} if args.ray_address else {}
        executor = make_executor(args.executor, args.workers, **kwargs)  # pool starts on use
        config, run_dir = _config_and_run_dir(args) if not args.resume else (None, args.out)
        if args.resume:
            if args.out is None:
                raise RunError("--resume needs --out RUN_DIR")
            data = read_config(args.out)
            if data.get("algo") != "worldmodel":
                raise RunError(f"{args.out} is not a World Models run")
            config = WorldModelConfig.from_dict(data)
            changed = {
                k: v for k, v in _overrides(args).items() if k in ("generations", "eval_episodes")
            }
            if changed:
                config = WorldModelConfig.from_dict({**asdict(config), **changed})
                write_json(args.out / CONFIG_FILE, asdict(config))
            run_dir = args.out
        else:
            config = create_run(config, run_dir)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        with executor:
            summary = run_pipeline(config, run_dir, executor, args.stage or "eval")
    except errors as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    if "eval" in summary:
        for name in ("best", "mean"):
            e = summary["eval"][name]
            print(
                f"evaluation ({name} controller): mean return {e['mean_return']:.1f} +- "
                f"{e['std_return']:.1f} over {e['episodes']} episodes"
            )
    print(f"run directory: {run_dir}")
    return 0
