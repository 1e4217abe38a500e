"""How `audit` and `compare` play levels: their shared options, the levels, one audit.

`add_play_arguments` defines the options both verbs take; `play` runs one audit of a loaded
view on the levels those options name (seeded, any number of workers), with a progress bar.
"""

from __future__ import annotations

import argparse
from typing import Any

from tqdm import tqdm

from agents.precision import add_precision_argument
from interpret.audit.engine import LEVEL_EDITS
from interpret.core.errors import InterpretError, check_counts

AUDITED_GAME = "procgen:coinrun"


def add_play_arguments(parser: argparse.ArgumentParser) -> None:
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
    add_precision_argument(parser, "outcomes can differ from fp32's")
    parser.add_argument("--trust-pickle", action="store_true", help="load with SB3's unpickler")


def check_play_arguments(args: argparse.Namespace) -> None:
    check_counts(args, ("levels", "workers", "n_envs"), ("start_level",))


def resolve_env(view: Any, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(env id, options) from the flags or the model's training record; CoinRun only."""
    from interpret.core.model_env import resolve_env

    env_id, options = resolve_env(view, args.env, args.env_kwargs)  # bad options fail here
    if env_id != AUDITED_GAME:
        raise InterpretError(f"the audit labels failures of {AUDITED_GAME} only, not {env_id}")
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
    from interpret.audit.engine import run_audit

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


def format_table(result: Any) -> str:
    """Completion and the failure-by-cause table of one audit as plain text."""
    from interpret.audit.report import percent, text_table

    lines = [["", "episodes", "% of levels (95% CI)"]]
    c = result.completion()
    lines.append(["completed", str(c["completed"]), percent({**c, "count": c["completed"]})])
    for column, rate in result.failure_table().items():
        lines.append([f"failed: {column}", str(rate["count"]), percent(rate)])
    return text_table(lines) + f"\n({result.n} levels, 95% Wilson intervals)"
