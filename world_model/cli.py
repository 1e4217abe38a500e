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
    "--gan-weight": ("gan_weight", float, "--vae gan: the generator's adversarial weight (10)"),
    "--gan-feature-weight": (
        "gan_feature_weight",
        float,
        "--vae gan: the weight of the error in the discriminator's features (1)",
    ),
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
NON_NEGATIVE = {"mdn_steps", "temperature", "gan_weight", "gan_feature_weight"}
# the other flags a run keeps: flag (dest name without "--") -> config field
SETTINGS = {
    "--env": "env_id",
    "--vae": "vae",
    "--controller-input": "controller_input",
    "--train-in": "train_in",
    "--rollout-policy": "rollout_policy",
    "--predict-reward": "predict_reward",
    "--predict-done": "predict_done",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("World Models (worldmodel)")
    for flag, (_, kind, help_text) in FLAGS.items():
        group.add_argument(flag, type=kind, help=help_text, metavar="N")
    group.add_argument(
        "--rollout-policy",
        help="drive (CarRacing's default), brownian (other Box actions), random, or a World "
        "Models run dir",
    )
    group.add_argument(
        "--vae",
        choices=["plain", "gan"],
        help="V: a VAE (plain, default) or a VAE-GAN whose decoder is also trained against a "
        "discriminator (gan)",
    )
    group.add_argument(
        "--controller-input",
        choices=["zh", "z"],
        help="what C reads: zh = [z, h] (default), z = z only (no M; 99 parameters on CarRacing)",
    )
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


# train.py options that only PPO/DQN read (dest names); given to worldmodel they are an error.
SB3_ONLY = ("arch", "timesteps", "n_envs", "preset")


def foreign_flags(args: argparse.Namespace, world_model: bool) -> list[str]:
    """The options given on the command line that the chosen algorithm would ignore."""
    if world_model:
        names = [n for n in SB3_ONLY if getattr(args, n) is not None]
        names += [k[3:] for k in vars(args) if k.startswith("hp_")]
    else:
        names = [flag[2:] for flag in FLAGS if getattr(args, flag[2:].replace("-", "_"))]
        others = ("rollout_policy", "vae", "controller_input", "train_in", "stage")
        names += [n for n in (*others, "predict_reward", "predict_done") if getattr(args, n)]
    return ["--" + n.replace("_", "-") for n in names]


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from world_model.rundir import RunError

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
    from world_model.run import WorldModelConfig
    from world_model.rundir import RunError, is_world_model_run

    if not args.env:
        raise RunError("--env is required (e.g. --env box2d:CarRacing-v3)")
    envs.parse_env_id(args.env)
    values = _overrides(args)
    policy = args.rollout_policy or "auto"
    if policy not in (*POLICIES, "auto") and not is_world_model_run(policy):
        raise RunError(
            f"--rollout-policy: expected {', '.join(POLICIES)} or a World Models run dir, "
            f"got {policy!r}"
        )
    gan_only = [f for f in ("--gan-weight", "--gan-feature-weight") if FLAGS[f][0] in values]
    if gan_only and args.vae != "gan":
        raise RunError(f"{', '.join(gan_only)} needs --vae gan")
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
        vae=args.vae or "plain",
        controller_input=args.controller_input or "zh",
        command=shlex.join(["python", "train.py", *sys.argv[1:]]),
        **values,
    )


def _config_and_run_dir(args: argparse.Namespace) -> tuple[Any, Path]:
    from agents.outputs import check_writable_dir, is_vacant
    from world_model.rundir import CONFIG_FILE, RunError

    config = build_config(args)
    run_dir = args.out or Path("runs") / (
        f"worldmodel-{config.env_id.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is an existing file, not a run directory")
    if (run_dir / CONFIG_FILE).exists():
        raise RunError(f"{run_dir} already holds a run; use --resume to continue it")
    if run_dir.is_dir() and not is_vacant(run_dir):
        raise RunError(f"{run_dir} exists and is not empty")
    check_writable_dir(run_dir)
    return config, run_dir


def _resumed_config(args: argparse.Namespace) -> Any:
    """The config of the run in ``--out``, its types and values checked."""
    from agents.outputs import check_writable_dir
    from agents.validation import check_field_types
    from world_model.run import WorldModelConfig
    from world_model.rundir import RunError, read_config

    if args.out is None:
        raise RunError("--resume needs --out RUN_DIR")
    data = read_config(args.out)
    if data.get("algo") != "worldmodel":
        raise RunError(f"{args.out} is not a World Models run")
    check_field_types(WorldModelConfig, data, f"{args.out / 'config.json'}: ")
    for name, _, _ in FLAGS.values():
        value = data.get(name)
        if value is not None and (value < 0 or (value == 0 and name not in NON_NEGATIVE)):
            raise RunError(f"{args.out / 'config.json'}: {name} must be > 0, got {value}")
    check_writable_dir(args.out)
    config = WorldModelConfig.from_dict(data)
    if config.vae not in ("plain", "gan"):
        raise RunError(f"{args.out / 'config.json'}: vae must be plain or gan, got {config.vae!r}")
    _refuse_changed_settings(args, config)
    return config


RESUMABLE = ("generations", "eval_episodes")  # what a resumed World Models run may change


def _refuse_changed_settings(args: argparse.Namespace, config: Any) -> None:
    """`RunError` naming every flag given with ``--resume`` whose value differs from the run's
    (a flag repeating the run's own value is accepted)."""
    from world_model.rundir import RunError

    given: dict[str, Any] = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in FLAGS}
    saved = {flag: getattr(config, FLAGS[flag][0]) for flag in FLAGS}
    for flag, name in SETTINGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        given[flag] = None if value is False else value  # an unset store_true flag is not given
        saved[flag] = getattr(config, name)
    resumable = {f"--{n.replace('_', '-')}" for n in RESUMABLE}
    changed = [
        flag
        for flag, value in given.items()
        if value is not None and flag not in resumable and value != saved[flag]
    ]
    if changed:
        raise RunError(
            f"--resume keeps the run's settings; drop {', '.join(changed)} "
            f"(the run has {', '.join(f'{f} {saved[f]}' for f in changed)}; "
            f"{', '.join(sorted(resumable))} may change)"
        )


def _interrupted(run_dir: Path, resume: bool) -> str:
    from agents.outputs import LOCK_FILE
    from world_model.rundir import CONFIG_FILE

    written = [p for p in run_dir.iterdir() if p.name not in (LOCK_FILE, CONFIG_FILE)]
    if not resume and not written:
        (run_dir / CONFIG_FILE).unlink(missing_ok=True)
        return "nothing written"
    return f"kept {run_dir}; continue it with train.py worldmodel --resume --out {run_dir}"


def main(args: argparse.Namespace) -> int:
    """Run the pipeline for parsed ``train.py`` arguments; 2 on bad input."""
    import envs
    from agents.executor import ExecutorError, make_executor
    from agents.fileio import write_json
    from agents.outputs import OutputError, lock_dir
    from agents.validation import SettingsError
    from world_model.model import WeightsFileError
    from world_model.run import WorldModelConfig, create_run, run_pipeline
    from world_model.rundir import CONFIG_FILE, RunError

    errors = (envs.EnvSpecError, RunError, ExecutorError, WeightsFileError, OutputError)
    errors += (SettingsError,)
    kept = "nothing written"
    try:
        foreign = foreign_flags(args, world_model=True)
        if foreign:
            raise RunError(f"{', '.join(foreign)}: not a worldmodel option (PPO/DQN only)")
        if args.workers is None or args.workers < 1:
            raise RunError(f"--workers must be positive, got {args.workers}")
        if args.threads < 0:
            raise RunError(f"--threads must be >= 0, got {args.threads}")
        kwargs = {"address": args.ray_address} if args.ray_address else {}
        executor = make_executor(args.executor, args.workers, **kwargs)  # pool starts on use
        if args.resume:
            config, run_dir = _resumed_config(args), args.out
            changed = {k: v for k, v in _overrides(args).items() if k in RESUMABLE}
        else:
            config, run_dir = _config_and_run_dir(args)  # its build_config checks the overrides
        with lock_dir(run_dir, create=not args.resume):  # a second writer is refused
            try:
                if not args.resume:
                    config = create_run(config, run_dir)
                elif changed:
                    config = WorldModelConfig.from_dict({**asdict(config), **changed})
                    write_json(args.out / CONFIG_FILE, asdict(config))
                if args.threads:
                    import torch

                    torch.set_num_threads(args.threads)
                with executor:
                    summary = run_pipeline(config, run_dir, executor, args.stage or "eval")
            except KeyboardInterrupt:
                kept = _interrupted(run_dir, args.resume)
                raise
    except errors as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"train.py: interrupted; {kept}", file=sys.stderr)
        return 130
    if "eval" in summary:
        for name in ("best", "mean"):
            e = summary["eval"][name]
            print(
                f"evaluation ({name} controller): mean return {e['mean_return']:.1f} +- "
                f"{e['std_return']:.1f} over {e['episodes']} episodes"
            )
    print(f"run directory: {run_dir}")
    return 0
