"""Two audits on the same levels, side by side: rates, differences and their p-values."""

from __future__ import annotations

import html
import math
from typing import Any


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
    the p-value of the difference. `a`, `b`: `AuditResult`s or audit ``summary.json`` dicts."""
    ra, rb = audit_rates(a), audit_rates(b)
    n_a, n_b = ra.pop("levels"), rb.pop("levels")
    return [
        {
            "row": name,
            "a": ra[name],
            "b": rb[name],
            "difference": rb[name]["rate"] - ra[name]["rate"],
            "p_value": two_proportion_p(ra[name]["count"], n_a, rb[name]["count"], n_b),
        }
        for name in ra
    ]


def audit_rates(audit: Any) -> dict[str, Any]:
    """{"levels": N, "completed": rate, each paper column: rate, "all failures": rate} of an
    `AuditResult` or of an audit's ``summary.json`` dict; a rate is {count, rate, ci95}."""
    from interpret.audit.causes import TABLE_COLUMNS

    if isinstance(audit, dict):
        completion, table = audit["completion"], audit["failure_table"]
    else:
        completion, table = audit.completion(), audit.failure_table()
    rates: dict[str, Any] = {
        "levels": completion["levels"],
        "completed": {
            "count": completion["completed"],
            "rate": completion["rate"],
            "ci95": completion["ci95"],
        },
    }
    rates.update({c: table[c] for c in (*TABLE_COLUMNS, "all failures")})
    return rates


def format_comparison(rows: list[dict[str, Any]], name_a: str, name_b: str, n: int) -> str:
    from interpret.audit.report import percent, text_table

    lines = [["", f"A: {name_a}", f"B: {name_b}", "B - A", "p"]]
    for r in rows:
        label = r["row"] if r["row"] == "completed" else f"failed: {r['row']}"
        difference = f"{100 * r['difference']:+.2f}%"
        lines.append([label, percent(r["a"]), percent(r["b"]), difference, f"{r['p_value']:.3g}"])
    note = f"(% of {n} levels each, 95% Wilson intervals; p: two-proportion z-test)"
    return text_table(lines) + "\n" + note


def comparison_page(
    rows: list[dict[str, Any]], text: str, a: Any, b: Any, name_a: str, name_b: str
) -> tuple[str, dict[str, Any]]:
    """(index.html, summary) of the comparison of audits `a` and `b` (of models named
    `name_a`, `name_b`); pure."""
    from interpret.core.report import page

    summary = {
        "model_a": a.settings,
        "model_b": b.settings,
        "rows": rows,
        "rates_note": "rate = share of all levels; ci95 = 95% Wilson interval; p_value: "
        "pooled two-proportion z-test, two sided",
        "timings": {"a": a.timings, "b": b.timings},
    }
    body = (
        f"<h1>Compare: {html.escape(name_a)} vs {html.escape(name_b)}</h1>"
        f"<pre>{html.escape(text)}</pre>"
    )
    return page("compare", body), summary
