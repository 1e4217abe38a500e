"""Attribution (Hilton et al., "Understanding RL Vision", 2020): integrated gradients from a
hidden layer to the value (or any output), NMF features, dataset examples, the report.

    ig = HiddenLayerIntegratedGradients(view, "2b")       # view: agents.load(...)
    result = ig.attribute(observations)                   # (N, H, W, C) uint8 -> arrays
    features = fit_nmf(result.attributions, "2b", k=8)

``integrated_gradients`` the method; ``nmf`` features and their maps; ``dataset_examples``;
``features`` reading a report's features back; ``hazards`` attribution on hazard pixels;
``report`` the trajectory interface (pure: arrays -> files); ``command`` the verb.
"""

from interpret.attribution.features import read_features_report
from interpret.attribution.hazards import measure_hazard_attribution
from interpret.attribution.integrated_gradients import (
    HiddenLayerIntegratedGradients,
    LayerAttribution,
)
from interpret.attribution.nmf import NMFFeatures, fit_nmf

__all__ = [
    "HiddenLayerIntegratedGradients",
    "LayerAttribution",
    "NMFFeatures",
    "fit_nmf",
    "measure_hazard_attribution",
    "read_features_report",
]
