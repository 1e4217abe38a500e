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
import time
from pathlib import Path

from interpret.audit.playing import (
    add_play_arguments,
    check_play_arguments,
    format_table,
    play,
    resolve_env,
)
from interpret.core.errors import check_counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 .zip or zoo:NAME")
    add_play_arguments(parser)
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


def run(args: argparse.Namespace) -> Path:
    import agents
    from envs.action_names import action_names, discrete_actions
    from interpret.attribution.features import read_features_report
    from interpret.audit.failure_attribution import attribution_layer, failure_attribution_files
    from interpret.audit.report import (
        arrays_dict,
        failure_name,
        render_page,
        summary_dict,
    )
    from interpret.core.report import npz_bytes, write_report

    check_play_arguments(args)
    check_counts(args, ("show", "context", "nmf_features"), ("extremes",))
    view = agents.load(args.model, trust_pickle=args.trust_pickle)
    env_id, options = resolve_env(view, args)
    report = read_features_report(args.features) if args.features else None
    features = report.features if report else None
    layer = None if args.no_attribution else attribution_layer(view, args.layer, features)

    result = play(
        view, args, env_id, options, keep_failures=args.show, context=args.context,
        extremes=args.extremes,
    )  # fmt: skip
    files: dict[str, bytes] = {
        failure_name(int(t.level_seeds[0])): npz_bytes(t.file_arrays()) for _, t in result.failures
    }
    attribution = layer is not None and bool(result.failures)
    if layer is not None and result.failures:
        clock = time.perf_counter()
        files.update(
            failure_attribution_files(
                view, layer, result, report, nmf_features=args.nmf_features,
                precision=args.precision, features_from=args.features,
            )
        )  # fmt: skip
        result.timings["attribution_s"] = time.perf_counter() - clock
    summary = summary_dict(result, attribution)
    names = action_names(env_id, discrete_actions(view.action_space))
    index = render_page(result, summary, names, attribution)
    out = write_report(args.out, index, summary, arrays_dict(result), files, replace=args.force)
    print(format_table(result))
    return out
