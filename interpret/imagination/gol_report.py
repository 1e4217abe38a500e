"""The HTML page of ``python -m interpret imagine --gol``: pure, summary and runs -> HTML."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from interpret.core.report import page, png_data_uri
from interpret.imagination.gol_experiment import OVER_RUNS


def _board_image(board: np.ndarray, scale: int = 8) -> str:
    """(H, W) in [0, 1] -> data URI; alive is dark."""
    pixels = (255 - np.clip(board, 0, 1) * 255).astype(np.uint8)
    return png_data_uri(np.kron(pixels, np.ones((scale, scale), dtype=np.uint8)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def gol_page(
    summary: dict[str, Any], runs: list[dict[str, Any]], examples: dict[str, np.ndarray]
) -> str:
    """The report page: settings, per-run and over-run tables, the first run's diagnostics,
    probes, training curves and examples."""
    config = summary["config"]
    paper = summary["paper"]
    paper_text = (
        f"paper ({paper['runs']} runs): <b>{paper['metric']:.2f}</b>"
        if paper
        else "no row of the paper's tables has these settings"
    )
    parts = [
        "<h1>Game of Life imagination benchmark</h1>",
        f"<p>{config['steps']} GoL timesteps, {config['rnn_steps']} model timesteps, "
        f"autoencoder loss: {config['autoencoder']}, RNN (shared weights): {config['rnn']}, "
        f"adversarial decoder steps: {config['adversarial_steps']}, RNN cell: "
        f"{'one 3x3 conv' if config['single_conv'] else '3x3 conv, ReLU, 1x1 conv'}, then "
        f"{'nothing' if config['linear_cell_output'] else config['cell_output']}; "
        f"{config['codec_kernel']}x{config['codec_kernel']} encoder and decoder, "
        f"{config['channels']} "
        f"channels, {config['board']}x{config['board']} torus, {config['train_steps']} "
        f"training steps of {config['batch']} boards ({config['loss']} prediction loss, Adam "
        f"lr {config['lr']:g} with {config['schedule']} schedule, gradient clip "
        f"{config['clip']:g}; weights kept: "
        f"{'lowest validation loss' if config['keep_best'] else 'last'}).</p>",
        f"<p>Mean metric over {summary['runs']} run(s), {summary['sequences_per_run']} "
        f"sequences each: <b>{_fmt(summary['mean_metric'])}</b> (the max of with/without "
        f"adversarial training per run, as in the paper); runs with final-state pixel accuracy "
        f">= 99%: {summary['runs_meeting_accuracy_criterion']}, their mean "
        f"{_fmt(summary['mean_metric_meeting_criterion'])}. {paper_text}. A model that "
        f"imagines empty boards scores {_fmt(summary['all_dead_metric'])}.</p>",
        "<h2>Runs</h2><table><tr><th>seed</th><th>metric</th><th>without adversarial</th>"
        "<th>with adversarial</th><th>final pixel acc.</th><th>final exact</th>"
        "<th>first step with 98% per decoded state</th><th>weights from step</th>"
        "<th>train s</th></tr>",
    ]
    for r in runs:
        firsts = ", ".join(f"{k[3:]}: {v}" for k, v in r["first_step_98"].items())
        parts.append(
            f"<tr><td>{r['seed']}</td><td>{_fmt(r['metric'])}</td>"
            f"<td>{_fmt(r['metric_without_adversarial'])}</td>"
            f"<td>{_fmt(r['metric_with_adversarial'])}</td>"
            f"<td>{_fmt(r['final_pixel_accuracy'])}</td><td>{_fmt(r['final_exact'])}</td>"
            f"<td>{html.escape(firsts)}</td><td>{r['weights_from_step']}</td>"
            f"<td>{r['train_seconds']}</td></tr>"
        )
    parts.append("</table>")
    parts.append(_over_runs_table(summary["over_runs"]))
    parts.append(_diagnostics_html(runs[0]["diagnostics"]))
    parts.append(_probe_table(runs[0]["linear_probe_accuracy"]))
    parts.append(_curves(runs[0]["history"]))
    parts.append(
        "<h2>Examples (first run)</h2><p class='muted'>Top row: the GoL states s_1..s_m. "
        "Bottom row: the decoder applied to every hidden state (encoder output, RNN steps); "
        "the metric scores the middle ones, thresholded at 0.5.</p><table>"
    )
    states, decoded = examples["example_states"], examples["example_decoded"]
    for k in range(len(states)):
        top = "".join(f"<img class='pixel' src='{_board_image(s)}'> " for s in states[k])
        bottom = "".join(f"<img class='pixel' src='{_board_image(d)}'> " for d in decoded[k])
        parts.append(
            f"<tr><td>{top}<br>{bottom}</td>"
            f"<td>metric {examples['example_metric'][k]:.2f}</td></tr>"
        )
    parts.append("</table>")
    return page("Game of Life imagination", "\n".join(parts))


def _over_runs_table(groups: dict[str, dict[str, Any]]) -> str:
    """Mean +- std (n) of each aggregate over all runs and over the kept ones."""

    def cell(stats: dict[str, Any]) -> str:
        if not stats["n"]:
            return "<td>-</td>"
        return f"<td>{stats['mean']:.3f} &plusmn; {stats['std']:.3f} ({stats['n']})</td>"

    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>{cell(groups['all'][name])}{cell(groups['kept'][name])}"
        "</tr>"
        for name in OVER_RUNS
    )
    return (
        "<h2>Over runs</h2><p class='muted'>Mean &plusmn; std (runs) over all runs and over "
        "the runs with final-state pixel accuracy >= 99% (the paper averages only those). "
        "The refit and probe rows use the decoder before any adversarial phase.</p>"
        f"<table><tr><th></th><th>all ({groups['all']['runs']})</th>"
        f"<th>kept ({groups['kept']['runs']})</th></tr>{rows}</table>"
    )


def _step_table(columns: dict[str, list[float | None]]) -> str:
    """A table with one row per step i (h_i against s_i) and one column per entry."""
    n = len(next(iter(columns.values())))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in columns)
    rows = "".join(
        f"<tr><th>h_{i} / s_{i + 1}</th>"
        + "".join(f"<td>{_fmt(v[i])}</td>" for v in columns.values())
        + "</tr>"
        for i in range(n)
    )
    return f"<table><tr><th>step</th>{head}</tr>{rows}</table>"


def _diagnostics_html(diagnostics: dict[str, Any]) -> str:
    """The first run's decoder logits, decoder refits and shared probe, per step."""
    logits, refit, probe = (
        diagnostics["decoder_logits"],
        diagnostics["decoder_refit"],
        diagnostics["shared_probe"],
    )
    return (
        "<h2>Diagnostics (first run)</h2><p class='muted'>Step i pairs hidden state h_i with "
        "GoL state s_(i+1) (s_1: the input). All use the decoder as the main training left it. "
        "Decoder logits on live and dead cells; accuracy of the decoder's own threshold (0) "
        "and ROC AUC (1: some threshold separates them).</p>"
        + _step_table(logits)
        + "<p class='muted'>The decoder's bias, and bias and scale, refitted per step on "
        "training boards (sigmoid(z + b), sigmoid(a z + b)) and scored on fresh ones. Metric "
        f"raw {_fmt(refit['metric_raw'])}, bias refit {_fmt(refit['metric_bias'])}, bias and "
        f"scale refit {_fmt(refit['metric_bias_scale'])}: high after a refit means the code "
        "drifts in offset or scale; low after it means the state is not where the decoder "
        "looks.</p>"
        + _step_table({k: v for k, v in refit.items() if not k.startswith("metric")})
        + "<p class='muted'>One 1x1 logistic probe fitted across all steps against a probe per "
        f"step (held-out pixel accuracy); metric with the shared probe as the decoder: "
        f"{_fmt(probe['metric'])}.</p>"
        + _step_table({k: v for k, v in probe.items() if k != "metric"})
    )


def _probe_table(table: list[list[float]]) -> str:
    """Held-out pixel accuracy of 1x1 logistic probes: rows hidden states, columns GoL states."""
    head = "".join(f"<th>s_{j + 1}</th>" for j in range(len(table[0])))
    rows = "".join(
        f"<tr><th>h_{i}</th>" + "".join(f"<td>{a:.3f}</td>" for a in row) + "</tr>"
        for i, row in enumerate(table)
    )
    return (
        "<h2>Linear probes (first run)</h2><p class='muted'>Pixel accuracy of a logistic "
        "regression fitted to read GoL state s_j from hidden state h_i (h_0: the encoder's "
        "output), tested on held-out boards. A state readable here but not by the model's own "
        "decoder is represented in another direction than the one the decoder reads.</p>"
        f"<table><tr><th></th>{head}</tr>{rows}</table>"
    )


def _curves(history: list[dict[str, Any]]) -> str:
    """SVG chart: pixel accuracy of each decoded hidden state against its GoL state."""
    if not history:
        return ""
    keys = [k for k in history[0] if k.startswith("acc")]
    width, height, last = 600, 220, history[-1]["step"]
    colors = ["#888", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    lines = []
    for i, key in enumerate(keys):
        points = " ".join(
            f"{40 + (width - 60) * h['step'] / last:.1f},"
            f"{height - 20 - (height - 40) * max(h[key] - 0.5, 0) / 0.5:.1f}"
            for h in history
        )
        color = colors[i % len(colors)]
        lines.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{points}'/>")
        lines.append(f"<text x='{width - 15}' y='{20 + 14 * i}' fill='{color}'>{key[3:]}</text>")
    return (
        "<h2>Training (first run)</h2><p class='muted'>Pixel accuracy (0.5 to 1) of decoded "
        f"hidden state i against GoL state i, over {last} training steps.</p>"
        f"<svg width='{width}' height='{height}' style='border:1px solid #ccc'>"
        + "".join(lines)
        + "</svg>"
    )
