"""The attribution interface of an audit's failed episodes, as report files.

Integrated gradients at one layer over each kept failure's last steps, with the NMF features
of an attribution report (or features fitted on these failures); the files go under
``attribution/`` in the audit's report, rendered in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.policy_view import PolicyView
from interpret.core.errors import InterpretError


def attribution_layer(view: PolicyView, layer: str | None, features: Any) -> str:
    """The layer to attribute at: --layer, else the features', else the view's default."""
    layer = view.layer_for(layer or (features.layer if features else view.default_layer()))
    if features is not None and features.layer != layer:
        raise InterpretError(f"--features are at layer {features.layer!r}, not {layer!r}")
    return layer


def failure_attribution_files(
    view: Any,
    layer: str,
    result: Any,
    report: Any,
    *,
    nmf_features: int,
    precision: str,
    features_from: str | None,
) -> dict[str, bytes]:
    """The attribution interface of the kept failures, as files under ``attribution/``, with
    the features (and target) of the attribution `report`, or features fitted on them."""
    from envs.action_names import action_names
    from interpret.attribution.integrated_gradients import (
        HiddenLayerIntegratedGradients,
        LayerAttribution,
    )
    from interpret.attribution.nmf import fit_nmf
    from interpret.attribution.report import render_report

    features = report.features if report is not None else None
    target = report.target if report is not None else None
    n_steps = report.n_steps if report is not None else 10
    ig = HiddenLayerIntegratedGradients(
        view, layer, target=target, n_steps=n_steps, precision=precision
    )
    trajectories = [t for _, t in result.failures]
    attributions = [ig.attribute(t.observations) for t in trajectories]
    merged = LayerAttribution.concatenate(attributions)
    sample = merged.attributions
    if features is None:
        features = fit_nmf(sample, layer, min(nmf_features, sample.shape[1]))
    elif features.directions.shape[1] != sample.shape[1]:
        raise InterpretError(
            f"--features have {features.directions.shape[1]} channels; layer {layer!r} of "
            f"this model has {sample.shape[1]}"
        )
    settings = {
        "model": result.settings["model"],
        "env_id": result.settings["env_id"],
        "env_options": result.settings["env_options"],
        "layer": layer,
        "target": ig.target_name,
        "n_steps": ig.n_steps,
        "alphas": ig.alphas,
        "baseline": "zero",
        "precision": precision,
        "features": features.k,
        "nmf_on": features.source,
        "features_from": features_from or "fitted on these failures",
        "sample_observations": len(sample),
        "smooth_sigma": 1.0,
        "seed": result.settings["seed"],
        "trajectories_are": "the audit's failed episodes (last steps), fatal step last",
    }
    files = render_report(
        settings=settings, features=features,
        sample_observations=np.concatenate([t.observations for t in trajectories]),
        sample_attribution=merged, trajectories=trajectories, attributions=attributions,
        maps=[features.maps(a.attributions) for a in attributions],
        action_names=action_names(settings["env_id"], int(view.action_space.n)),
    )  # fmt: skip
    return {f"attribution/{name}": data for name, data in files.items()}
