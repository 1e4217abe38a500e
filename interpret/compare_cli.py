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
import html
import math
from pathlib import Path
from typing import Any

from interpret.audit_cli import add_model_arguments, check_model_arguments, play, resolve_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model A: run directory, SB3 .zip or zoo:NAME")
    parser.add_argument("model_b", help="model B, played on the same levels")
    add_model_arguments(parser)
    parser.add_argument("--out", help="also write the table as a report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def two_proportion_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when there is no variance)."""
    pooled = (k_a + k_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 1.0
    z = (k_b / n_b - k_a / n_a) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def comparison_rows(a: Any, b: Any) -> list[dict[str, Any]]:
    """Per row (completed, each paper column, all failures): both rates with CIs, B - A and
    the p-value of the difference."""
    from interpret.failure_causes import TABLE_COLUMNS

    rows = []
    pairs = [("completed", _completion_rate(a), _completion_rate(b))]
    table_a, table_b = a.failure_table(), b.failure_table()
    pairs += [(c, table_a[c], table_b[c]) for c in (*TABLE_COLUMNS, "all failures")]
    for name, ra, rb in pairs:
        rows.append(
            {
                "row": name,
                "a": ra,
                "b": rb,
                "difference": rb["rate"] - ra["rate"],
                "p_value": two_proportion_p(ra["count"], a.n, rb["count"], b.n),
            }
        )
    return rows


def _completion_rate(result: Any) -> dict[str, Any]:
    c = result.completion()
    return {"count": c["completed"], "rate": c["rate"], "ci95": c["ci95"]}


def format_comparison(rows: list[dict[str, Any]], name_a: str, name_b: str, n: int) -> str:
    from interpret.audit_report import percent, text_table

    lines = [["", f"A: {name_a}", f"B: {name_b}", "B - A", "p"]]
    for r in rows:
        label = r["row"] if r["row"] == "completed" else f"failed: {r['row']}"
        difference = f"{100 * r['difference']:+.2f}%"
        lines.append([label, percent(r["a"]), percent(r["b"]), difference, f"{r['p_value']:.3g}"])
    note = f"(% of {n} levels each, 95% Wilson intervals; p: two-proportion z-test)"
    return text_table(lines) + "\n" + note


def run(args: argparse.Namespace) -> Path | None:
    import agents
    from interpret.model_env import check_fits

    check_model_arguments(args)
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
    return _write(args, rows, text, result_a, result_b)


def _write(args: argparse.Namespace, rows: list, text: str, a: Any, b: Any) -> Path:
    from interpret.report import page, write_report

    summary = {
        "model_a": a.settings,
        "model_b": b.settings,
        "rows": rows,
        "rates_note": "rate = share of all levels; ci95 = 95% Wilson interval; p_value: "
        "pooled two-proportion z-test, two sided",
        "timings": {"a": a.timings, "b": b.timings},
    }
    body = (
        f"<h1>Compare: {html.escape(args.model)} vs {html.escape(args.model_b)}</h1>"
        f"<pre>{html.escape(text)}</pre>"
    )
    return write_report(args.out, page("compare", body), summary, replace=args.force)
