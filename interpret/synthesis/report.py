"""The ``synthesize`` report: a self-contained gallery page, ``summary.json`` and arrays."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from interpret.core.report import page, png_data_uri, read_static, write_report
from interpret.synthesis.frames import FrameSet, FrameSpace

CSS = read_static("synthesis.css")
LABELS = {
    "agent": "agent (real frames)",
    "vae": "plain VAE",
    "recon": "reconstruction only",
    "full": "full (ours)",
}
CURVE_COLORS = {"full": "#c33", "recon": "#36c", "vae": "#888"}


def _img(image: np.ndarray, title: str = "") -> str:
    return f"<img class='pixel' src='{png_data_uri(image)}' title='{html.escape(title)}'>"


def _outputs_html(shown: dict[str, np.ndarray], i: int) -> str:
    """One card's ``latent.readout`` row ``i``: value, Q-values (the best in bold), action
    probabilities as bars, or continuous action scores."""
    rows = []
    if "value" in shown:
        rows.append(f"value <b>{shown['value'][i]:.3f}</b>")
    if "q" in shown:
        q = shown["q"][i]
        best = int(np.argmax(q))
        cells = " ".join(
            f"<span title='action {a}'>{'<b>' if a == best else ''}{v:.2f}"
            f"{'</b>' if a == best else ''}</span>"
            for a, v in enumerate(q)
        )
        rows.append(f"Q: {cells}")
    if "probabilities" in shown:
        bars = "".join(
            f"<div>{a:2d} <span class='bar' style='width:{100 * p:.0f}px'></span> {p:.2f}</div>"
            for a, p in enumerate(shown["probabilities"][i])
        )
        rows.append(f"action probabilities:{bars}")
    if "scores" in shown:
        rows.append(f"action scores: {np.round(shown['scores'][i], 3).tolist()}")
    return "<br>".join(rows)


def _curves(histories: dict[str, list[dict[str, float]]]) -> str:
    """One small SVG line chart per loss term, a line per generator variant."""
    charts = []
    for term in ("reconstruction", "perception", "kl", "total"):
        series = {v: [h[term] for h in hist] for v, hist in histories.items() if hist}
        values = [x for s in series.values() for x in s]
        if not values:
            continue
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        width, height = 260, 120
        lines = []
        for variant, s in series.items():
            if len(s) == 1:
                s = s * 2
            points = " ".join(
                f"{10 + (width - 20) * i / (len(s) - 1):.1f},"
                f"{height - 15 - (height - 30) * (x - low) / span:.1f}"
                for i, x in enumerate(s)
            )
            color = CURVE_COLORS.get(variant, "#000")
            lines.append(f"<polyline fill='none' stroke='{color}' points='{points}'/>")
        charts.append(
            f"<figure style='display:inline-block;margin:4px'><svg width='{width}' "
            f"height='{height}' style='border:1px solid #ddd'>{''.join(lines)}"
            f"<text x='4' y='12' font-size='10'>{high:.4g}</text>"
            f"<text x='4' y='{height - 3}' font-size='10'>{low:.4g}</text></svg>"
            f"<figcaption>{term} (per epoch)</figcaption></figure>"
        )
    legend = " ".join(
        f"<span style='color:{CURVE_COLORS.get(v, '#000')}'>&#9632; {LABELS.get(v, v)}</span>"
        for v in histories
    )
    return f"<p>{legend}</p>" + "".join(charts)


def _goggles_table(goggles: dict[str, dict[str, Any]] | None) -> str:
    if not goggles:
        return "<p class='muted'>not measured (--goggles-episodes 0)</p>"
    first = next(iter(goggles.values()))
    has_rate = "completion_rate" in first
    head = "<tr><th>agent sees</th><th>mean return</th><th>&plusmn; s.e.</th><th>episodes</th>"
    head += "<th>levels completed</th></tr>" if has_rate else "</tr>"
    rows = []
    for name in ("agent", "vae", "recon", "full"):
        if name not in goggles:
            continue
        r = goggles[name]
        cells = (
            f"<td>{LABELS[name]}</td><td class='num'>{r['mean_return']:.2f}</td>"
            f"<td class='num'>{r['return_stderr']:.2f}</td><td class='num'>{r['episodes']}</td>"
        )
        if has_rate:
            lo, hi = r["completion_ci95"]
            cells += f"<td class='num'>{r['completion_rate']:.0%} [{lo:.0%}, {hi:.0%}]</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _reconstruction_rows(reconstructions: dict[str, np.ndarray]) -> str:
    rows = []
    for name, images in reconstructions.items():
        label = "recorded frames" if name == "frames" else LABELS.get(name, name)
        cells = "".join(_img(image, label) for image in images)
        rows.append(f"<div><span class='muted'>{html.escape(label)}</span><br>{cells}</div>")
    return "".join(rows)


def write_synthesis_report(
    out_dir: Path,
    summary: dict[str, Any],
    result: dict[str, Any],
    data: FrameSet,
    space: FrameSpace,
    histories: dict[str, list[dict[str, float]]],
    goggles: dict[str, dict[str, Any]] | None,
    reconstructions: dict[str, np.ndarray],
    replace: bool = True,
) -> Path:
    """Write the report; `reconstructions`: {"frames": (n, H, W, 3) recorded frames, each
    generator variant: its (n, H, W, 3) reconstructions of them}, uint8."""
    synth = result["synth"]
    shown = space.display(synth.images)
    nearest = data.images[result["nearest"]]
    nearest_shown = space.display(space.from_uint8(nearest))
    pixel_shown = space.display(result["pixel_images"])
    cards = []
    for i in range(len(shown)):
        cards.append(
            "<div class='card'>"
            f"{_img(shown[i], 'synthesized')} {_img(nearest_shown[i], 'nearest recorded frame')}"
            f"<div>#{i}: energy <b>{synth.energy[i]:.3f}</b> (target {synth.target[i]:.3f},"
            f" start {synth.start_energy[i]:.3f}); nearest recorded frame "
            f"#{int(result['nearest'][i])}, {result['novelty_share'][i]:.0%} of pixels differ"
            f" by &gt; 25%</div>{_outputs_html(result['synth_shown'], i)}</div>"
        )
    pixel_cards = [
        f"<div class='card'>{_img(pixel_shown[i])}<div>target energy "
        f"<b>{result['pixel_energy'][i]:.3f}</b></div>"
        f"{_outputs_html(result['pixel_shown'], i)}</div>"
        for i in range(len(pixel_shown))
    ]
    salient = np.linspace(0, len(data) - 1, 6).astype(int)
    saliency_imgs = []
    for i in salient:
        frame = space.display(space.from_uint8(data.images[i : i + 1]))[0]
        heat = (data.saliency[i] * 255).astype(np.uint8)
        saliency_imgs.append(f"{_img(frame)}{_img(np.stack([heat] * 3, -1))}")
    novelty = summary["novelty"]
    hist_rows = "".join(
        f"<tr><td>&gt; {edge:.0%}</td><td class='num'>{share:.0%}</td></tr>"
        for edge, share in zip(novelty["edges"], novelty["share_of_samples_above"], strict=False)
    )
    timings = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{v:.1f}</td></tr>"
        for k, v in summary["timings"].items()
    )
    title = f"Synthesized states: {summary['target']} on {summary['env_id']}"
    body = f"""
<h1>{html.escape(title)}</h1>
<p class='muted'>model {html.escape(summary["model"])} ({summary["algo"]});
{summary["frames"]} recorded frames; generator space {space.channels}x{space.height}x{space.width}
{"(RGB of a grayscale frame stack; newest frame shown)" if space.gray_stack else ""}.
Mean target energy on the recorded frames {summary["recorded_frames_target_energy"]["mean"]:.3f}
(lowest {summary["recorded_frames_target_energy"]["min"]:.3f}).</p>
<h2>Synthesized states (lowest energy first): left synthesized, right nearest recorded frame</h2>
<div class='grid'>{"".join(cards)}</div>
<h2>Baseline: activation maximization in pixel space (TV + jitter), same target</h2>
<div class='grid'>{"".join(pixel_cards)}</div>
<h2>Reconstructions of recorded frames (top: the frames; then each generator)</h2>
{_reconstruction_rows(reconstructions)}
<h2>Agent with generator goggles</h2>
{_goggles_table(goggles)}
<h2>Novelty: share of samples with more than x% of pixels different from the nearest frame</h2>
<table><tr><th>pixels different</th><th>samples</th></tr>{hist_rows}</table>
<p>mean share of differing pixels: {novelty["mean_share_different"]:.1%}</p>
<h2>Generator losses</h2>
{_curves(histories)}
<h2>Saliency weights (recorded frame, blurred guided-backprop magnitude)</h2>
<div>{"".join(saliency_imgs)}</div>
<h2>Cost (seconds, this run)</h2>
<table>{timings}</table>
"""
    arrays = {
        "synthesized": shown,
        "synthesized_images": synth.images.astype(np.float32),
        "latents": synth.latents,
        "energy": synth.energy,
        "energy_history": synth.history,
        "nearest_index": result["nearest"],
        "nearest_frames": nearest,
        "novelty_share": result["novelty_share"],
        "pixel_baseline": pixel_shown,
        "pixel_baseline_energy": result["pixel_energy"],
        **{f"reconstructions_{k}": v for k, v in reconstructions.items()},
        **{f"synth_{k}": v for k, v in result["synth_outputs"].items()},
        **{f"pixel_{k}": v for k, v in result["pixel_outputs"].items()},
    }
    return write_report(out_dir, page(title, body, css=CSS), summary, arrays, replace=replace)
