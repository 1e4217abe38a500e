"""The audit report: completion, failures by cause, failed episodes and surprising steps.

One self-contained ``index.html`` (no network) with the completion rate and the failure-by-cause
table (the paper's columns, with 95% Wilson intervals), every exact cause seen, the failed
episodes kept (fatal frame, cause, a link into the attribution interface at the fatal step),
and the steps with the most extreme GAE advantage. The attribution interface of the kept
failures lives in ``attribution/`` beside it; the failures' trajectories in ``failures/``.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from interpret.audit.causes import CAUSES, TABLE_COLUMNS, FailureCause
from interpret.audit.engine import AuditResult, ExtremeStep
from interpret.core.report import page, png_data_uri, read_static

CSS = read_static("audit.css")


def percent(rate: dict[str, Any]) -> str:
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.2f}% ({100 * lo:.2f}-{100 * hi:.2f})"


def text_table(lines: list[list[str]]) -> str:
    """Rows of cells as left-aligned columns of plain text (for the terminal)."""
    widths = [max(len(line[i]) for line in lines) + 2 for i in range(len(lines[0]))]
    return "\n".join(
        "".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def failure_name(level_seed: int) -> str:
    return f"failures/level-{level_seed}.npz"


def summary_dict(result: AuditResult, attribution: bool) -> dict[str, Any]:
    """What `summary.json` holds (everything but images)."""
    failed = [
        {
            "level_index": i,
            "level_seed": int(result.level_seeds[i]),
            "cause": cause.label,
            "category": cause.category,
            "hazard_entities": list(cause.entities),
            "length": int(result.lengths[i]),
        }
        for i, cause in enumerate(result.causes)
        if cause is not None
    ]
    shown = [
        {
            "trajectory": k,
            "level_index": index,
            "level_seed": int(traj.level_seeds[0]),
            "cause": _cause_label(result.causes[index]),
            "steps_kept": len(traj),
            "fatal_step": len(traj) - 1,
            "file": failure_name(int(traj.level_seeds[0])),
            "attribution_link": _link(k, len(traj) - 1) if attribution else None,
        }
        for k, (index, traj) in enumerate(result.failures)
    ]
    return {
        **result.settings,
        "completion": result.completion(),
        "failure_table": result.failure_table(),
        "failure_table_columns": list(TABLE_COLUMNS),
        "cause_breakdown": result.cause_breakdown(),
        "rates_note": "rate = share of all audited levels; ci95 = 95% Wilson interval",
        "failures": failed,
        "failures_shown": shown,
        "most_negative_advantage": [_extreme_record(e) for e in result.most_negative],
        "most_positive_advantage": [_extreme_record(e) for e in result.most_positive],
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
    }


def arrays_dict(result: AuditResult) -> dict[str, np.ndarray]:
    """Per level: seed, completed, return, length, cause category (index into the paper's
    columns, -1 completed), and the pre-fatal-step state bytes (concatenated, with offsets)."""
    categories = np.array(
        [-1 if c is None else TABLE_COLUMNS.index(c.category) for c in result.causes], np.int64
    )
    causes = np.array(
        [[c is not None and name in c.causes for name in CAUSES] for c in result.causes], bool
    ).reshape(result.n, len(CAUSES))
    states = [s or b"" for s in result.fatal_states]
    return {
        "level_seeds": result.level_seeds,
        "completed": result.completed,
        "returns": result.returns,
        "lengths": result.lengths,
        "category": categories,
        "causes": causes,
        "fatal_state_bytes": np.frombuffer(b"".join(states), np.uint8),
        "fatal_state_offsets": np.cumsum([0] + [len(s) for s in states]),
    }


def _cause_label(cause: FailureCause | None) -> str:
    return cause.label if cause is not None else "none"


def _link(trajectory: int, step: int) -> str:
    return f"attribution/index.html#trajectory={trajectory}&step={step}"


def _extreme_record(e: ExtremeStep) -> dict[str, Any]:
    return {
        "advantage": e.advantage,
        "value": e.value,
        "reward": e.reward,
        "action": e.action,
        "level_index": e.level_index,
        "level_seed": e.level_seed,
        "step": e.step,
        "episode_length": e.episode_length,
        "episode_completed": e.completed,
    }


def render_page(
    result: AuditResult, summary: dict[str, Any], action_names: list[str], attribution: bool
) -> str:
    """The audit's ``index.html``."""
    s = result.settings
    esc = html.escape
    completion = summary["completion"]
    lo, hi = completion["ci95"]
    parts = [
        f"<h1>Audit: {esc(str(s.get('model')))}</h1>",
        f"<p class=muted>{esc(result.env_id)} {esc(str(result.env_options))}; "
        f"{result.n} levels (seeds {int(result.level_seeds.min())}..."
        f"{int(result.level_seeds.max())}), each played once; seed {s.get('seed')}; "
        f"{'greedy' if s.get('deterministic') else 'sampled'} actions"
        f"{'; level edit: ' + esc(s['level_edit']) if s.get('level_edit') else ''}.</p>",
        f"<h2>Completion</h2><p><b>{completion['completed']}/{completion['levels']}</b> levels "
        f"completed: {100 * completion['rate']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%)</p>",
        "<h2>Failure rate by cause</h2>",
        "<p class=muted>Share of all audited levels that ended with each cause (95% Wilson "
        "interval); a failure counts in one column: the single hazard touched on the fatal "
        "step, else 'multiple or other' (lava, timeout, several hazards at once).</p>",
        _rate_table(summary["failure_table"]),
        "<h3>Every cause seen</h3>",
        _rate_table(summary["cause_breakdown"]),
        "<h2>Failed episodes</h2>",
        _failures_html(result, action_names, attribution),
        "<h2>Steps with the most extreme advantage (GAE)</h2>",
        "<p class=muted>Negative: things went worse than the value function expected (a "
        "surprise failure, or a hallucinated reward); positive: better than expected.</p>",
        "<h3>Most negative</h3>",
        _extremes_html(result.most_negative, action_names),
        "<h3>Most positive</h3>",
        _extremes_html(result.most_positive, action_names),
        "<h2>Timings</h2>",
        _timings_html(result.timings),
    ]
    return page(f"audit: {s.get('model')}", "\n".join(parts), css=CSS)


def _rate_table(rows: dict[str, dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td class=num>{r['count']}</td>"
        f"<td class=num>{percent(r)}</td></tr>"
        for name, r in rows.items()
    )
    head = "<tr><th>cause</th><th>episodes</th><th>% of levels (95% CI)</th></tr>"
    return f"<table>{head}{body}</table>"


def _frame(observation: np.ndarray | None) -> str:
    if observation is None:
        return ""
    return f"<img class=pixel src='{png_data_uri(observation)}'>"


def _action(action_names: list[str], action: int) -> str:
    return action_names[action] if 0 <= action < len(action_names) else str(action)


def _failures_html(result: AuditResult, action_names: list[str], attribution: bool) -> str:
    n_failed = sum(c is not None for c in result.causes)
    if not result.failures:
        return "<p>No failed episode.</p>"
    rows = []
    for k, (index, traj) in enumerate(result.failures):
        cause = result.causes[index]
        seed = int(traj.level_seeds[0])
        if cause is None:
            raise ValueError(f"failed level {index} (seed {seed}) has no cause recorded")
        fatal = len(traj) - 1
        link = (
            f"<a href='{_link(k, fatal)}'>attribution at the fatal step</a><br>"
            if attribution
            else ""
        )
        rows.append(
            f"<tr><td>{_frame(traj.observations[-1])}</td><td>level {seed}<br>"
            f"{int(result.lengths[index])} steps<br>cause: <b>{html.escape(cause.label)}</b><br>"
            f"last action: {html.escape(_action(action_names, int(traj.actions[-1])))}<br>"
            f"value before: {traj.values[-1]:.3f}</td><td>{link}"
            f"<a href='{failure_name(seed)}'>trajectory (.npz, last {len(traj)} steps)</a>"
            "</td></tr>"
        )
    note = (
        f"<p class=muted>The first {len(result.failures)} of the {n_failed} failures by level"
        " order (the frame is the last one the agent acted on).</p>"
    )
    return note + "<table>" + "".join(rows) + "</table>"


def _extremes_html(steps: list[ExtremeStep], action_names: list[str]) -> str:
    if not steps:
        return "<p>None (the agent has no value function).</p>"
    figures = "".join(
        f"<figure>{_frame(e.observation)}<figcaption>advantage {e.advantage:.3f}<br>"
        f"value {e.value:.3f}, reward {e.reward:g}<br>level {e.level_seed}, step {e.step}/"
        f"{e.episode_length} ({'completed' if e.completed else 'failed'})<br>"
        f"action {html.escape(_action(action_names, e.action))}</figcaption></figure>"
        for e in steps
    )
    return f"<div class=frames>{figures}</div>"


def _timings_html(timings: dict[str, float]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td class=num>{v:,.3f}</td></tr>" for k, v in timings.items()
    )
    return f"<table>{rows}</table>"
