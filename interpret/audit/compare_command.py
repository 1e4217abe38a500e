"""Compare two CoinRun policies on the same levels: completion and failures by cause.

Audits MODEL_A and MODEL_B on the same N levels with the same seed (an edited model against
its original, say) and prints the failure-by-cause table of both side by side with 95%
intervals, and for each row the difference B - A with a two-proportion z-test (pooled, two
sided). A user sees at once whether an edit blinded the agent to its target (that column
moves) and left the rest alone (the others do not).

example:
  python -m interpret compare runs/demo runs/demo-edited --env procgen:coinrun \\
      --env-kwargs distribution_mode=easy paint_vel_info=true --levels 500

With --out, writes the table to OUT/summary.json and OUT/index.html as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interpret.audit.playing import add_play_arguments, check_play_arguments, play, resolve_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model A: run directory, SB3 .zip or zoo:NAME")
    parser.add_argument("model_b", help="model B, played on the same levels")
    add_play_arguments(parser)
    parser.add_argument("--out", help="also write the table as a report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> Path | None:
    import agents
    from interpret.audit.comparison import comparison_page, comparison_rows, format_comparison
    from interpret.core.model_env import check_fits
    from interpret.core.report import write_report

    check_play_arguments(args)
    view_a = agents.load(args.model, trust_pickle=args.trust_pickle)
    view_b = agents.load(args.model_b, trust_pickle=args.trust_pickle)
    env_id, options = resolve_env(view_a, args)
    check_fits(view_b, env_id, options)  # B plays A's env: refuse a model of another game
    result_a = play(view_a, args, env_id, options, desc="auditing A")
    result_b = play(view_b, args, env_id, options, model=args.model_b, desc="auditing B")
    rows = comparison_rows(result_a, result_b)
    text = format_comparison(rows, args.model, args.model_b, result_a.n)
    print(text)
    if not args.out:
        return None
    index, summary = comparison_page(rows, text, result_a, result_b, args.model, args.model_b)
    return write_report(args.out, index, summary, replace=args.force)
