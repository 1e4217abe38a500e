"""The attribution report: one self-contained page for exploring recorded trajectories.

For each step: the observation at the model's resolution, and beside it the positive ("good
news") and negative ("bad news") attribution, one color per NMF feature, smoothed over nearby
positions so that the area a feature covers shows its strength (Hilton et al. 2020, "Attribution
discussion"). A legend isolates one feature on hover; each feature has its dataset examples
(top patches and the spatially-aware mosaic). A timeline shows value, advantage, rewards and
the chosen action with a scrubber, play/pause and arrow keys; bookmarks jump to the steps with
the most negative and most positive advantage (at most one per episode); a chart shows each
feature's total attribution over time.

Vector observations (an MLP's) show as bar charts, and a dense layer as one position (its
features' maps are single values per step). Frames and feature maps travel as PNG sprite
sheets (data URIs) decoded by the page's script.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from interpret.attribution.dataset_examples import patch, spatial_examples, top_examples
from interpret.attribution.integrated_gradients import LayerAttribution
from interpret.attribution.nmf import FeatureMaps, NMFFeatures, as_channels
from interpret.attribution.object_labels import RULE, ObjectLabels
from interpret.core.report import page, png_data_uri, read_static, report_files, script_json
from interpret.core.trajectory import Trajectory

PALETTE = [
    (228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0),
    (230, 200, 20), (166, 86, 40), (247, 129, 191), (23, 190, 207), (127, 60, 141),
    (188, 189, 34), (31, 119, 180), (214, 39, 40), (44, 160, 44), (140, 86, 75), (0, 0, 128),
]  # fmt: skip
RESIDUAL_COLOR = (110, 110, 110)
CHUNK = 128  # frames per sprite sheet (keeps sheets under browsers' canvas size limits)
BOOKMARKS_PER_KIND = 5


def display_frames(observations: np.ndarray) -> np.ndarray:
    """(T, H, W, C) uint8 observations -> (T, H, W, 3) RGB: stacked grayscale shows its last
    frame; (T, D) vectors -> (T, S, S, 3) bar charts (``bar_charts``)."""
    if observations.ndim == 2:
        return bar_charts(observations)
    if observations.shape[-1] == 3:
        return observations
    return np.repeat(observations[..., -1:], 3, axis=-1)


def bar_charts(vectors: np.ndarray) -> np.ndarray:
    """(T, D) vectors -> (T, S, S, 3) uint8 square images, S = D * w: component d is a bar in
    columns [d w, (d + 1) w), up from the middle row when positive (blue), down when negative
    (red), its height relative to the largest |value| among all T vectors."""
    t, d = vectors.shape
    w = max(1, 64 // d)
    size, half = d * w, d * w // 2
    scale = max(float(np.abs(vectors).max()), 1e-12)
    heights = np.round(np.abs(vectors) / scale * half).astype(int)  # (T, D)
    rows = np.arange(size)[None, :, None]  # (1, S, 1)
    up = (rows < half) & (rows >= half - heights[:, None, :]) & (vectors[:, None, :] > 0)
    down = (rows >= half) & (rows < half + heights[:, None, :]) & (vectors[:, None, :] < 0)
    images = np.full((t, size, d, 3), 255, dtype=np.uint8)
    images[up] = (55, 126, 184)
    images[down] = (228, 26, 28)
    images[:, half] = (120, 120, 120)  # the zero line
    return np.repeat(images, w, axis=2)


def feature_colors(k: int) -> list[tuple[int, int, int]]:
    return [PALETTE[i % len(PALETTE)] for i in range(k)] + [RESIDUAL_COLOR]


def smoothed_atlas(maps: FeatureMaps, sigma: float) -> np.ndarray:
    """(T, 2, k + 1, H, W) float32 maps: [positive, negative] x [features..., residual],
    Gaussian-smoothed over positions with ``sigma`` (layer positions)."""
    pos = np.concatenate([maps.positive, np.clip(maps.residual, 0, None)[:, None]], axis=1)
    neg = np.concatenate([maps.negative, np.clip(-maps.residual, 0, None)[:, None]], axis=1)
    atlas = np.stack([pos, neg], axis=1)
    if sigma > 0:
        atlas = gaussian_filter(atlas, sigma=(0, 0, 0, sigma, sigma), mode="constant")
    return atlas.astype(np.float32)


def overlay_scale(atlases: list[np.ndarray]) -> float:
    """One scale for all frames: the 99th percentile over frames of the strongest summed
    smoothed attribution at a position (positive or negative)."""
    peaks = np.concatenate([a.sum(axis=2).max(axis=(2, 3)).ravel() for a in atlases])
    peaks = peaks[peaks > 0]
    return float(np.percentile(peaks, 99)) if len(peaks) else 1.0


def bookmarks(trajectories: list[Trajectory], n: int = BOOKMARKS_PER_KIND) -> list[dict]:
    """Steps with the most negative ("failure") and most positive ("success") advantage, ``n``
    of each at most, and at most one per episode: each episode offers its step of largest
    absolute advantage."""
    candidates: list[dict[str, Any]] = []
    for ti, traj in enumerate(trajectories):
        for ei, (start, stop) in enumerate(traj.episode_bounds()):
            adv = np.nan_to_num(traj.advantages[start:stop])
            step = start + int(np.argmax(np.abs(adv)))
            value = float(traj.advantages[step])
            if np.isfinite(value) and value != 0:
                kind = "failure" if value < 0 else "success"
                candidates.append({"trajectory": ti, "episode": ei, "step": step,
                                   "advantage": value, "kind": kind})  # fmt: skip
    failures = sorted((c for c in candidates if c["advantage"] < 0), key=lambda c: c["advantage"])
    successes = sorted((c for c in candidates if c["advantage"] > 0), key=lambda c: -c["advantage"])
    return failures[:n] + successes[:n]


def _sheets(frames: np.ndarray) -> list[str]:
    """(T, h, w[, c]) uint8 frames -> PNG data URIs of vertical sheets of ``CHUNK`` frames."""
    return [
        png_data_uri(np.concatenate(list(frames[i : i + CHUNK]), axis=0))
        for i in range(0, len(frames), CHUNK)
    ]


def _atlas_frames(atlas: np.ndarray, scale: float) -> np.ndarray:
    """(T, 2, k + 1, H, W) -> (T, 2 H, (k + 1) W) uint8 tiles."""
    t, two, kk, h, w = atlas.shape
    quantized = np.clip(np.round(atlas / scale * 255), 0, 255).astype(np.uint8)
    return quantized.transpose(0, 1, 3, 2, 4).reshape(t, two * h, kk * w)


def _feature_examples(
    features: NMFFeatures, observations: np.ndarray, activations: np.ndarray
) -> list[dict]:
    """Per feature: top patches (data URIs) and the spatially-aware mosaic."""
    frames = display_frames(observations)
    activations = as_channels(activations)
    # each feature's response: the activations projected on its direction, (N, k, H, W)
    response = np.einsum("nchw,kc->nkhw", activations, features.directions, optimize=True)
    stride = max(1, frames.shape[1] // activations.shape[2])
    size = min(frames.shape[1], max(16, 12 * stride))
    cell = max(1, activations.shape[2] // 8)
    out = []
    for i in range(features.k):
        top = top_examples(response[:, i], n=8, per_position=1)
        out.append(
            {
                "patches": [
                    png_data_uri(patch(frames[e.index], e.y, e.x, stride, size)) for e in top
                ],
                "mosaic": png_data_uri(spatial_examples(response[:, i], frames, cell=cell)),
            }
        )
    return out


def render_report(
    *,
    settings: dict[str, Any],
    features: NMFFeatures,
    sample_observations: np.ndarray,
    sample_attribution: LayerAttribution,
    trajectories: list[Trajectory],
    attributions: list[LayerAttribution],
    maps: list[FeatureMaps],
    action_names: list[str],
    save_attributions: bool = False,
    object_labels: ObjectLabels | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, bytes]:
    """The report's files, {name: bytes} (``index.html``, ``summary.json``, ``arrays.npz``);
    pure: writes nothing."""
    colors = feature_colors(features.k)
    atlases = [smoothed_atlas(m, settings.get("smooth_sigma", 1.0)) for m in maps]
    scale = overlay_scale(atlases)
    marks = bookmarks(trajectories)
    examples = _feature_examples(features, sample_observations, sample_attribution.activations)
    errors = np.concatenate(
        [sample_attribution.completeness_error, *[a.completeness_error for a in attributions]]
    )
    relative = max(
        [sample_attribution.max_relative_error, *[a.max_relative_error for a in attributions]]
    )
    layer_shape = list(sample_attribution.attributions.shape[1:])
    _, layer_h, layer_w = as_channels(sample_attribution.attributions[:1]).shape[1:]
    shown = [display_frames(traj.observations) for traj in trajectories]
    data = {
        "k": features.k,
        "labels": [label or f"feature {i}" for i, label in enumerate(features.labels)],
        "colors": colors,
        "layerH": layer_h,
        "layerW": layer_w,
        "obsH": int(shown[0].shape[1]),
        "obsW": int(shown[0].shape[2]),
        "chunk": CHUNK,
        "actionNames": action_names,
        "bookmarks": marks,
        "trajectories": [
            {
                "T": len(traj),
                "values": np.round(traj.values, 4),
                "advantages": np.round(np.nan_to_num(traj.advantages), 4),
                "rewards": np.round(traj.rewards, 3),
                "actions": traj.actions,
                "dones": traj.dones.astype(int),
                "levelSeeds": traj.level_seeds,
                "totals": np.round(m.totals(), 4),
                "completeness": np.round(a.completeness_error, 6),
                "obsSheets": _sheets(frames),
                "atlasSheets": _sheets(_atlas_frames(atlas, scale)),
            }
            for traj, a, m, atlas, frames in zip(
                trajectories, attributions, maps, atlases, shown, strict=True
            )
        ],
    }
    summary = {
        **settings,
        "layer_shape": layer_shape,
        "directions": features.directions.tolist(),
        "labels": features.labels,
        "colors": colors,
        "nmf_reconstruction_error": features.reconstruction_error,
        "completeness": {
            "max_abs_error": float(np.abs(errors).max()),
            "mean_abs_error": float(np.abs(errors).mean()),
            "max_relative_error": relative,
            "meaning": "sum(attributions) - (F(a) - F(0)) per observation",
        },
        "overlay_scale": scale,
        "bookmarks": marks,
        "trajectories": [
            {
                "steps": len(t),
                "episodes": len(t.episode_bounds()),
                "levels_completed": int(t.level_complete.sum()),
                "mean_value": float(np.nanmean(t.values)),
            }
            for t in trajectories
        ],
        "object_labels": object_labels.to_json() if object_labels is not None else None,
        "timings_s": {k: round(v, 3) for k, v in (timings or {}).items()},
        "directions_note": "directions[i] (channel space of `layer`, unit L2 norm) is feature i; "
        "labels[i] is its label (the dominant game object, see object_labels, or one a user "
        "wrote); arrays.npz holds the same directions",
    }
    arrays: dict[str, np.ndarray] = {"directions": features.directions}
    for i, (traj, a, m) in enumerate(zip(trajectories, attributions, maps, strict=True)):
        arrays.update(
            {
                f"t{i}_observations": traj.observations,
                f"t{i}_values": traj.values,
                f"t{i}_advantages": traj.advantages,
                f"t{i}_rewards": traj.rewards,
                f"t{i}_actions": traj.actions,
                f"t{i}_dones": traj.dones,
                f"t{i}_level_seeds": traj.level_seeds,
                f"t{i}_positive": m.positive.astype(np.float16),
                f"t{i}_negative": m.negative.astype(np.float16),
                f"t{i}_residual": m.residual.astype(np.float16),
                f"t{i}_completeness_error": a.completeness_error,
            }
        )
        if save_attributions:
            arrays[f"t{i}_attributions"] = a.attributions
    body = _body(settings, features, examples, colors)
    if object_labels is not None:
        body += _objects_table(object_labels, colors)
    return report_files(_page(settings, body, data), summary, arrays)


def _swatch(color: tuple[int, int, int]) -> str:
    return f"<span class='swatch' style='background:rgb{tuple(color)}'></span>"


def _body(
    settings: dict[str, Any], features: NMFFeatures, examples: list[dict], colors: list
) -> str:
    legend = "".join(
        f"<div class='legend-item' data-feature='{i}'>{_swatch(colors[i])}"
        f"{html.escape(features.labels[i] or f'feature {i}')}</div>"
        for i in range(features.k)
    ) + (
        f"<div class='legend-item' data-feature='{features.k}'>{_swatch(colors[-1])}residual</div>"
    )
    patches = [
        "".join(f"<img class=pixel src='{u}' width=60>" for u in ex["patches"]) for ex in examples
    ]
    rows = "".join(
        f"<tr><td>{_swatch(colors[i])} {html.escape(features.labels[i] or f'feature {i}')}</td>"
        f"<td>{patches[i]}</td>"
        f"<td><img class='pixel mosaic' src='{ex['mosaic']}' width=128></td></tr>"
        for i, ex in enumerate(examples)
    )
    title = f"Attribution to layer {settings['layer']}: {settings['target']}"
    return f"""
<h1>{html.escape(title)}</h1>
<p class=muted>{html.escape(settings["model"])} on {html.escape(settings["env_id"])};
integrated gradients from a zero baseline at alpha = 1/{settings["n_steps"]} ... 1;
{settings["features"]} NMF features of {html.escape(settings["nmf_on"])}s of
{settings["sample_observations"]} sampled observations; smoothing sigma {settings["smooth_sigma"]}.
</p>
<div class=controls>
  <label>trajectory <select id=traj></select></label>
  <button id=prev title='previous step (left arrow)'>&#9664;</button>
  <button id=play title='play / pause (space)'>play</button>
  <button id=next title='next step (right arrow)'>&#9654;</button>
  <input id=scrub type=range min=0 max=0 value=0>
  <span id=info></span>
</div>
<div class=panels>
  <figure><canvas id=obs width=256 height=256></canvas><figcaption>observation</figcaption></figure>
  <figure><canvas id=pos width=256 height=256></canvas>
    <figcaption>positive attribution (good news)</figcaption></figure>
  <figure><canvas id=neg width=256 height=256></canvas>
    <figcaption>negative attribution (bad news)</figcaption></figure>
  <div id=legend><b>features</b> <span class=muted>(hover to isolate)</span>{legend}</div>
</div>
<h2>Timeline</h2>
<canvas id=timeline width=1100 height=170></canvas>
<div class=muted><span style='color:#1f77b4'>&#9632; value</span>
<span style='color:#ff7f0e'>&#9632; advantage (GAE)</span>
<span style='color:#2ca02c'>&#9650; reward</span>
<span style='color:#999'>| episode end</span>; click to jump.</div>
<h2>Bookmarks: unexpected failures and successes</h2>
<div id=bookmarks></div>
<h2>Total attribution per feature over time</h2>
<canvas id=totals width=1100 height=200></canvas>
<div class=muted>positive above the axis, negative below; one line per feature.</div>
<h2>Dataset examples</h2>
<p class=muted>Where each feature's direction is strongest in the layer's activations over the
sample (one example per position and per observation), and the spatially-aware version: for each
region the observation that excites the feature most there; transparency means a weak response.
The checkerboard is beyond the screen's edge.</p>
<table class=examples><tr><th>feature</th><th>top examples</th><th>spatially aware</th></tr>
{rows}</table>
"""


def _labels_class(label: str, name: str) -> bool:
    return bool(label) and (label == name or label.startswith(f"{name} "))


def _share_cell(share: float, contrast: float, bold: bool) -> str:
    text = f"{share:.0%} ({contrast:.3g}x)" if share >= 0.005 else "-"
    return f"<b>{text}</b>" if bold else text


def _objects_table(labels: ObjectLabels, colors: list) -> str:
    """Each feature's share on each game object with its contrast (hover: positive and
    negative shares), and the labels."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in labels.classes)
    area = "".join(f"<td>{a:.1%}</td>" for a in labels.area)
    rows = []
    for f in range(len(labels.labels)):
        cells = "".join(
            f"<td title='{labels.positive_shares[f, c]:.1%} of the positive attribution, "
            f"{labels.negative_shares[f, c]:.1%} of the negative'>"
            + _share_cell(
                labels.shares[f, c],
                labels.contrast[f, c],
                _labels_class(labels.labels[f], labels.classes[c]),
            )
            + "</td>"
            for c in range(len(labels.classes))
        )
        name = html.escape(labels.labels[f] or "no class dominates")
        fit = f"<td>{labels.fit_r2[f]:.2f}</td>"
        rows.append(f"<tr><td>{_swatch(colors[f])} {f}: {name}</td>{cells}{fit}</tr>")
    return f"""
<h2>Features labelled by the game's objects</h2>
<p class=muted>Object masks from the game's own renderer (each sampled state drawn with one class
taken out), at the layer's resolution. Each cell: the part of the feature's attribution the
class explains (a non-negative least-squares fit of the feature's map on the classes' pixels)
and its contrast, how much denser the attribution is on the class than on the other pixels (1x:
no preference); hover for the positive and negative parts. R<sup>2</sup>: how much of the map's
variance the classes explain. Rule: {html.escape(RULE)}.</p>
<table class=examples><tr><th>feature</th>{head}<th>R<sup>2</sup></th></tr>
<tr><td class=muted>area of the frames</td>{area}<td></td></tr>{"".join(rows)}</table>
"""


CSS = read_static("attribution.css")

SCRIPT = read_static("attribution.js")


def _page(settings: dict[str, Any], body: str, data: dict[str, Any]) -> str:
    script = f"const DATA = {script_json(data)};\n{SCRIPT}"
    return page(f"attribution: {settings['layer']} ({settings['model']})", body, css=CSS,
                script=script)  # fmt: skip
