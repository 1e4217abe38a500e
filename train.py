#!/usr/bin/env python
"""Train a PPO, DQN or World Models agent on a Procgen, Atari, Box2D or gymnasium environment.

    python train.py ppo --env procgen:coinrun --arch interpretable --timesteps 200000
        --env-kwargs distribution_mode=easy paint_vel_info=true --out runs/coinrun
    python train.py dqn --env atari:Pong --timesteps 1000000 --out runs/pong
    python train.py ppo --resume --out runs/coinrun        # continue a killed run
    python train.py worldmodel --env box2d:CarRacing-v3 --out runs/car-wm   # V, M, then C

Settings come from a preset (the Procgen paper's PPO for procgen:*, RL Zoo's for atari:*,
SB3's defaults otherwise); every one can be overridden (``--n-steps 128``, ``--hp key=value``).
At the end the agent is evaluated (Procgen: each of N unseen levels once, plus N training
levels when their number is limited) and the results are written to ``eval.json``.

Every setting and, with ``--resume``, the run's files are checked before any work; bad input
gets one line on stderr and exit status 2, and writes nothing. The run directory is locked
while this process writes it (a second writer is refused). Ctrl-C prints one line saying what
was kept, exit status 130.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

try:  # Ctrl-C while the libraries load (seconds): one line, as everywhere else
    import torch

    import envs
    from agents.architectures import ARCHS
    from agents.precision import PRECISIONS
    from agents.presets import PRESETS, default_arch, default_preset
    from envs import _quiet  # noqa: F401  (before anything imports old gym)
    from world_model import cli as world_model_cli
except KeyboardInterrupt:
    print("train.py: interrupted; nothing written", file=sys.stderr)
    sys.exit(130)

USER_ERRORS: tuple[type[Exception], ...] = (envs.EnvSpecError,)
# the presets' settings, plus PPO's micro-batches (agents.algorithms.PPO; default: none)
_HYPERPARAMS = sorted(
    ({k for preset in PRESETS.values() for k in preset} - {"n_envs"}) | {"micro_batch_size"}
)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_value(text: str) -> Any:
    """Command-line value -> int, float, bool, None or str."""
    return envs.parse_options([f"v={text}"])["v"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="train.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("algo", choices=["ppo", "dqn", "worldmodel"], help="algorithm")
    parser.add_argument("--env", help="procgen:<game>, atari:<Game>, box2d:<id> or a gymnasium id")
    parser.add_argument("--arch", choices=ARCHS, help="network for image observations")
    parser.add_argument("--timesteps", type=int, help="total environment steps")
    parser.add_argument("--n-envs", type=int, help="parallel environments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="run directory (default runs/<algo>-<env>-<time>)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default) or bf16 autocast in the image network (fast only on CPUs with "
        "AVX512-BF16/AMX and on GPUs); may change on --resume",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="hyperparameter preset")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--checkpoint-minutes", type=float, help="minutes between checkpoints (default 5)"
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        help="levels/episodes to evaluate (0: none; default 100, worldmodel 20)",
    )
    parser.add_argument("--eval-parallel", type=int, default=32, help="envs used to evaluate")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--piece-minutes",
        type=float,
        help="end this piece after about M minutes at an exact checkpoint (resume it later "
        "with --resume), then evaluate it into evals/step_N.json",
    )
    parser.add_argument(
        "--piece-eval",
        type=int,
        help="levels/episodes of the evaluation after a piece (default 200 Procgen, else 20)",
    )
    group = parser.add_argument_group("hyperparameters (override the preset)")
    for name in _HYPERPARAMS:
        flag = "--" + name.replace("_", "-")
        aliases = [flag, "--lr"] if name == "learning_rate" else [flag]
        # absent unless given, so that "none" (e.g. --clip-range-vf none) reaches the config
        group.add_argument(
            *aliases, dest=f"hp_{name}", type=parse_value, metavar="V", default=argparse.SUPPRESS
        )
    group.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE", help="any SB3 keyword")
    world_model_cli.add_arguments(parser)
    return parser


def hyperparam_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameters given on the command line: ``--n-steps 128``, ``--hp key=value``."""
    given = {k[3:]: v for k, v in vars(args).items() if k.startswith("hp_")}
    return {**given, **envs.parse_options(args.hp)}


def config_from_args(args: argparse.Namespace) -> Any:
    from agents.training import TrainConfig

    if not args.env:
        raise envs.EnvSpecError("--env is required (e.g. --env procgen:coinrun)")
    family, _ = envs.parse_env_id(args.env)
    if args.timesteps is None or args.timesteps <= 0:
        raise envs.EnvSpecError(f"--timesteps must be a positive integer, got {args.timesteps}")
    preset = args.preset or default_preset(args.algo, family)
    if not preset.endswith(args.algo):
        raise envs.EnvSpecError(f"preset {preset!r} is not for {args.algo}")
    overrides = hyperparam_flags(args)
    if args.eval_episodes < 0:
        raise envs.EnvSpecError(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    check_device(args.device)
    if args.n_envs is not None:
        if args.n_envs <= 0:
            raise envs.EnvSpecError(f"--n-envs must be positive, got {args.n_envs}")
        overrides["n_envs"] = args.n_envs
    return TrainConfig(
        algo=args.algo,
        env_id=args.env,
        arch=args.arch or default_arch(family),
        timesteps=args.timesteps,
        seed=args.seed,
        preset=preset,
        env_kwargs=envs.parse_options(args.env_kwargs),
        hyperparams={**PRESETS[preset], **overrides},
        device=args.device or "auto",
        precision=args.precision or "fp32",
        checkpoint_minutes=5.0 if args.checkpoint_minutes is None else args.checkpoint_minutes,
        eval_episodes=args.eval_episodes,
        command=shlex.join(["python", "train.py", *sys.argv[1:]]),  # the first piece's
    )


def check_device(device: str | None) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise envs.EnvSpecError("--device cuda: no CUDA device is available here (use auto or cpu)")


# What may change when a run resumes; everything else is the run's saved config.
RESUMABLE_FLAGS = ("timesteps", "precision", "checkpoint_minutes", "device", "eval_episodes")
# Optimisation settings a resumed piece may change: none of them shapes the rollout buffer, the
# reward normalization or the saved state. The change is recorded with the piece.
RESUMABLE_HYPERPARAMS = {
    "ppo": (
        "batch_size",
        "n_epochs",
        "learning_rate",
        "ent_coef",
        "vf_coef",
        "clip_range",
        "clip_range_vf",
        "max_grad_norm",
        "gae_lambda",
        "micro_batch_size",
    ),
    "dqn": (
        "batch_size",
        "learning_rate",
        "gradient_steps",
        "target_update_interval",
        "exploration_final_eps",
    ),
}


def resumed_config(args: argparse.Namespace) -> Any:
    """The saved config of ``--out`` (types, values and checkpoint checked), with the flags a
    resume may change applied."""
    from agents.training import CONFIG_FILE, RunError
    from agents.validation import check_config, check_resumable, config_from_json

    if args.out is None:
        raise RunError("--resume needs --out RUN_DIR")
    changeable = RESUMABLE_HYPERPARAMS.get(args.algo, ())
    overrides = hyperparam_flags(args)
    fixed = [n for n in ("env", "arch", "n_envs", "preset") if getattr(args, n) is not None]
    fixed += [name for name in overrides if name not in changeable]
    fixed += ["env_kwargs"] if args.env_kwargs else []
    if fixed:
        drop, allowed = (
            ", ".join("--" + name.replace("_", "-") for name in names)
            for names in (fixed, (*RESUMABLE_FLAGS, *changeable))
        )
        raise RunError(f"--resume keeps the run's settings; drop {drop} ({allowed} may change)")
    path = args.out / CONFIG_FILE
    if not path.exists():
        raise RunError(f"nothing to resume: {path} does not exist")
    config = config_from_json(path)
    if config.algo != args.algo:
        raise RunError(
            f"{args.out} is a {config.algo} run; resume it with train.py {config.algo} --resume"
        )
    if args.timesteps is not None and args.timesteps <= 0:
        raise RunError(f"--timesteps must be a positive integer, got {args.timesteps}")
    check_device(args.device)
    for name in RESUMABLE_FLAGS:
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    config.hyperparams.update(overrides)
    check_config(config)
    check_resumable(args.out)
    return config


def evaluate_run(
    model: Any,
    config: Any,
    out: Path,
    parallel: int,
    progress: bool,
    episodes: int | None = None,
) -> dict:
    """Evaluate the model on ``episodes`` (default: the config's) levels or episodes, write
    the summary to ``out`` (JSON) and return it."""
    from agents.evaluate import evaluate_episodes, evaluate_procgen_levels, procgen_eval_levels
    from agents.fileio import write_json
    from agents.inspectable import Inspectable

    agent = Inspectable.from_model(model)
    n = config.eval_episodes if episodes is None else episodes
    summary: dict[str, Any] = {"env_id": config.env_id, "num_timesteps": int(model.num_timesteps)}
    started = time.monotonic()
    if envs.parse_env_id(config.env_id)[0] == "procgen":
        for split, seeds in procgen_eval_levels(config.env_kwargs, n, config.seed).items():
            results = evaluate_procgen_levels(
                agent,
                config.env_id,
                seeds,
                parallel,
                seed=config.seed,
                progress=progress,
                **config.env_kwargs,
            )
            summary[split] = {**results.summary(), "levels": f"{min(seeds)}..{max(seeds)}"}
    else:
        results = evaluate_episodes(
            agent, config.env_id, n, seed=config.seed, progress=progress, **config.env_kwargs
        )
        summary["test"] = results.summary()
    summary["eval_seconds"] = round(time.monotonic() - started, 1)
    write_json(out, summary)
    return summary


def report(summary: dict[str, Any]) -> None:
    for split, name in (("train", "training levels"), ("test", "unseen levels")):
        if split not in summary:
            continue
        s = summary[split]
        if "completion_rate" in s:
            lo, hi = s["completion_ci95"]
            print(
                f"{name} ({s['levels']}): completed {s['completed']}/{s['episodes']} = "
                f"{100 * s['completion_rate']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%), "
                f"mean return {s['mean_return']:.2f}"
            )
        else:
            print(f"evaluation: mean return {s['mean_return']:.2f} over {s['episodes']} episodes")


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """The run directory, before any work: a new run needs a new (or empty) directory whose
    location can be written; a resumed one its own, writable."""
    from agents.outputs import check_not_locked, check_writable_dir, is_vacant
    from agents.training import CONFIG_FILE, RunError

    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is an existing file, not a run directory")
    if not resume and (run_dir / CONFIG_FILE).exists():
        raise RunError(f"{run_dir} already holds a run; pass --resume to continue it or pick --out")
    if not resume and run_dir.is_dir() and not is_vacant(run_dir):
        raise RunError(f"--out {run_dir} exists and is not empty; pick a new directory")
    if run_dir.is_dir():
        check_not_locked(run_dir)
    check_writable_dir(run_dir)


def interrupted(run_dir: Path, resume: bool, trained: bool) -> str:
    """What an interrupted run keeps (one line); a new run with no checkpoint yet keeps nothing."""
    import shutil

    from agents.fileio import read_json
    from agents.outputs import LOCK_FILE

    if trained:
        return f"the trained model is in {run_dir} (not evaluated)"
    try:
        steps = int(read_json(run_dir / "checkpoints" / "latest.json")["num_timesteps"])
    except (OSError, ValueError, KeyError, TypeError):
        steps = None
    if steps is None and not resume:  # nothing worth resuming: leave nothing behind
        for path in run_dir.iterdir() if run_dir.is_dir() else []:
            if path.name != LOCK_FILE:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        return "nothing written"
    at = f"at step {steps}" if steps is not None else "without a checkpoint"
    return f"kept {run_dir} {at}; continue it with --resume --out {run_dir}"


def end_piece(model: Any, config: Any, run_dir: Path, args: argparse.Namespace) -> None:
    """After a piece that stopped at its checkpoint: evaluate it into evals/step_N.json."""
    steps = model.num_timesteps
    print(f"piece ended at step {steps} (checkpoint in {run_dir / 'checkpoints'})")
    procgen = envs.parse_env_id(config.env_id)[0] == "procgen"
    n = args.piece_eval if args.piece_eval is not None else (200 if procgen else 20)
    if n > 0:
        out = run_dir / "evals" / f"step_{steps:012d}.json"
        progress = not args.no_progress
        report(evaluate_run(model, config, out, args.eval_parallel, progress, episodes=n))
    print(f"continue with: python train.py {config.algo} --resume --out {run_dir}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.algo == "worldmodel":
        return world_model_cli.main(args)
    foreign = world_model_cli.foreign_flags(args, world_model=False)
    if foreign:
        print(f"train.py: error: {', '.join(foreign)}: worldmodel options only", file=sys.stderr)
        return 2
    from agents.fileio import InputFileError
    from agents.outputs import OutputError, lock_dir
    from agents.runtime import one_line_warnings
    from agents.sb3_zip import ModelFileError
    from agents.training import RunError, train
    from agents.validation import SettingsError, check_config

    errors = (*USER_ERRORS, RunError, ModelFileError, SettingsError, InputFileError, OutputError)
    one_line_warnings("train.py")
    command = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
    kept, trained = "nothing written", False
    progress = not args.no_progress
    try:
        if args.eval_parallel < 1:
            raise RunError(f"--eval-parallel must be positive, got {args.eval_parallel}")
        if args.piece_minutes is not None and not args.piece_minutes > 0:
            raise RunError(f"--piece-minutes must be positive, got {args.piece_minutes}")
        if args.piece_eval is not None and args.piece_eval < 0:
            raise RunError(f"--piece-eval must be >= 0, got {args.piece_eval}")
        if args.resume:
            config = resumed_config(args)
        else:
            if args.eval_episodes is None:
                args.eval_episodes = 100
            config = config_from_args(args)
            check_config(config)
        run_dir = args.out or Path("runs") / (
            f"{config.algo}-{config.env_id.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        check_run_dir(run_dir, args.resume)
        with lock_dir(run_dir, create=not args.resume):  # a second writer is refused
            try:
                model = train(
                    config,
                    run_dir,
                    resume=args.resume,
                    progress=progress,
                    command=command,
                    piece_minutes=args.piece_minutes,
                )
                trained = True
                if model.num_timesteps < config.timesteps:  # a piece ended at its checkpoint
                    end_piece(model, config, run_dir, args)
                    return 0
                print(f"trained {model.num_timesteps} steps")
                if config.eval_episodes > 0:
                    out = run_dir / "eval.json"
                    report(evaluate_run(model, config, out, args.eval_parallel, progress))
            except KeyboardInterrupt:
                kept = interrupted(run_dir, args.resume, trained)
                raise
    except errors as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a file system gone read-only, ...
        where = f": {err.filename}" if err.filename else ""
        print(f"train.py: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"train.py: interrupted; {kept}", file=sys.stderr)
        return 130
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
