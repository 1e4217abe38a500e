"""The dissection report: per layer, units ranked by effect, their top observations and
activation maps, dead units (pure: statistics -> page, summary and arrays)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from interpret.core.report import page, png_data_uri, read_static
from interpret.dissection.interventions import rank_units
from interpret.dissection.units import UnitStatistics, observation_image


def layer_summary(stats: UnitStatistics, top, effects) -> dict[str, Any]:
    key, order = rank_units(effects) if effects else (None, np.arange(stats.units))
    units = [
        {
            "unit": u,
            "dead": bool(stats.dead[u]),
            "threshold": float(stats.threshold[u]),
            "max": float(stats.maximum[u]),
            "mean": float(stats.mean[u]),
            "active_fraction": float(stats.active_fraction[u]),
            "top_observations": top[u],
            "zeroing": {k: float(v[u]) for k, v in effects.items()},
        }
        for u in range(stats.units)
    ]
    return {
        "layer": stats.layer,
        "shape": list(stats.shape),
        "fully_connected_as_1x1": stats.shape[1:] == (1, 1),
        "dead": int(stats.dead.sum()),
        "units": stats.units,
        "ranking_key": key,
        "ranking": [int(u) for u in order],
        "per_unit": units,
    }


def layer_arrays(stats: UnitStatistics, top, maps, effects) -> dict[str, np.ndarray]:
    prefix = stats.layer.replace("/", "_")
    top_array = np.full((stats.units, max((len(t) for t in top), default=0)), -1, dtype=np.int64)
    for u, chosen in enumerate(top):
        top_array[u, : len(chosen)] = chosen
    arrays = {
        f"{prefix}.threshold": stats.threshold,
        f"{prefix}.max": stats.maximum,
        f"{prefix}.mean": stats.mean,
        f"{prefix}.active_fraction": stats.active_fraction,
        f"{prefix}.dead": stats.dead,
        f"{prefix}.per_observation_max": stats.per_observation_max,
        f"{prefix}.top_observations": top_array,
    }
    if any(maps):
        size = next(m[0].shape for m in maps if m)
        stacked = np.zeros((*top_array.shape, *size), dtype=bool)
        for u, unit_maps in enumerate(maps):
            for j, m in enumerate(unit_maps):
                stacked[u, j] = m
        arrays[f"{prefix}.maps"] = stacked
    for key, values in effects.items():
        arrays[f"{prefix}.zeroing.{key}"] = values
    return arrays


def _overlay(obs: np.ndarray, mask: np.ndarray, scale: int = 2) -> str:
    """The frame, dimmed outside the activation map, as a data URI."""
    frame = observation_image(obs)
    assert frame is not None  # the command draws maps only when observations are images
    image = frame.astype(np.float32)
    shown = np.where(mask[:, :, None], image, image * 0.25 + 40).astype(np.uint8)
    return png_data_uri(np.kron(shown, np.ones((scale, scale, 1), dtype=np.uint8)))


CSS = read_static("dissection.css")


def render_page(summary: dict[str, Any], layers: list[dict[str, Any]], obs: np.ndarray) -> str:
    q = summary["quantile"]
    dead_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{d['dead']}/{d['units']}</td></tr>"
        for name, d in summary["dead_units"].items()
    )
    parts = [
        "<h1>Network dissection</h1>",
        f"<p>Model <code>{html.escape(summary['model'])}</code> ({summary['algo']}), "
        f"{summary['observations']} observations in {summary['episodes']} episode(s). "
        f"Threshold t_u: top {q:.0%} of each unit's activations; maps show "
        f"{{p | a_u(x, p) &gt; t_u}} upsampled to the frame on the unit's top observations "
        f"(at least {summary['spacing']} steps apart within an episode). Zeroing effects are "
        f"means over {summary['effect_observations']} observations.</p>",
        "<h2>Units that never activate (max &le; 0), per layer</h2>",
        f"<table><tr><th>layer</th><th>dead / units</th></tr>{dead_rows}</table>",
    ]
    for layer in layers:
        key = layer["ranking_key"]
        effect_names = list(layer["per_unit"][0]["zeroing"]) if layer["per_unit"] else []
        header = "".join(f"<th>{html.escape(k)}</th>" for k in effect_names)
        parts.append(
            f"<h2>Layer {html.escape(layer['layer'])} {tuple(layer['shape'])}"
            f"{' (fully connected, as 1x1)' if layer['fully_connected_as_1x1'] else ''}</h2>"
            f"<p>{layer['dead']} of {layer['units']} units dead. "
            + (
                f"Units in order of the effect of zeroing them ({html.escape(key)}).</p>"
                if key
                else "Zeroing effects not measured.</p>"
            )
            + "<table><tr><th>rank</th><th>unit</th><th>status</th><th>t_u</th><th>max</th>"
            f"<th>active</th>{header}<th>top activation maps</th></tr>"
        )
        for rank, u in enumerate(layer["ranking"]):
            unit = layer["per_unit"][u]
            images = "".join(
                f"<img class='pixel' title='observation {i}' src='{_overlay(obs[i], m)}'>"
                for i, m in zip(unit["top_observations"], layer["_maps"][u], strict=False)
            )
            effects = "".join(f"<td>{unit['zeroing'][k]:.4g}</td>" for k in effect_names)
            status = "dead" if unit["dead"] else "alive"
            parts.append(
                f"<tr class='{status}'><td>{rank + 1}</td><td>{u}</td><td>{status}</td>"
                f"<td>{unit['threshold']:.3g}</td><td>{unit['max']:.3g}</td>"
                f"<td>{unit['active_fraction']:.1%}</td>{effects}"
                f"<td class='maps'>{images}</td></tr>"
            )
        parts.append("</table>")
    return page("Network dissection", "\n".join(parts), css=CSS)
