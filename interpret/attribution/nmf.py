"""NMF on a hidden layer's attributions (or activations): k directions in channel space.

Hilton et al. (2020), "Dimensionality reduction for attribution": the positive and negative
parts of the attributions of a sample of observations are stacked along the batch dimension,
spatial positions are flattened into it, and scikit-learn's ``NMF`` factorizes the resulting
(rows, channels) matrix. Each of the k directions is a non-negative mix of channels; applied to
one observation's attribution it gives a positive ("good news") and a negative ("bad news")
map per feature, plus a residual for what the k directions do not span.

A dense layer's (N, D) values count as D channels at a single position (H = W = 1), so an MLP's
observation or hidden layer factorizes the same way.

Maps are in the attribution's units: ``positive[n, k, y, x]`` is how much of the channel sum of
the attribution at (y, x) feature k accounts for, so that per position
``sum_k (positive - negative) + residual == attribution.sum(channels)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import NMF, non_negative_factorization
from sklearn.exceptions import ConvergenceWarning

from interpret.core.errors import InterpretError

MAX_ROWS = 400_000  # rows of the matrix `fit_nmf` factorizes, at most
MAX_ITER = 400  # iterations of scikit-learn's NMF solver (fit and coefficients)


@dataclass
class FeatureMaps:
    """Per-observation feature maps for N observations of a (C, H, W) layer.

    Attributes:
        positive: (N, k, H, W) float32, each feature's positive attribution ("good news").
        negative: (N, k, H, W) float32, each feature's negative attribution ("bad news"), >= 0.
        residual: (N, H, W) float32, channel sum of the attribution minus what the k features
            reconstruct (signed).
    """

    positive: np.ndarray
    negative: np.ndarray
    residual: np.ndarray

    def totals(self) -> np.ndarray:
        """(N, k + 1, 2): per observation, each feature's (and the residual's) summed
        positive and negative attribution."""
        pos = self.positive.sum(axis=(2, 3))
        neg = self.negative.sum(axis=(2, 3))
        res = self.residual.reshape(len(self.residual), -1)
        res_pos = np.clip(res, 0, None).sum(axis=1, keepdims=True)
        res_neg = np.clip(-res, 0, None).sum(axis=1, keepdims=True)
        return np.stack([np.hstack([pos, res_pos]), np.hstack([neg, res_neg])], axis=2)


@dataclass
class NMFFeatures:
    """k NMF directions of a layer, ordered by how much of the sample they explain.

    Attributes:
        layer: the layer's name.
        directions: (k, C) float32, non-negative, unit L2 norm; ``directions[i]`` is feature i
            (for model editing: project it out of the next layer's kernel).
        source: ``"attribution"`` or ``"activation"``: what the factorization was fitted on.
        labels: one optional human label per feature ("" until someone names it).
        reconstruction_error: relative Frobenius error of the fit on the sample,
            ||X - W H|| / ||X||.
    """

    layer: str
    directions: np.ndarray
    source: str
    reconstruction_error: float
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = [""] * len(self.directions)

    @property
    def k(self) -> int:
        return len(self.directions)

    def coefficients(self, values: np.ndarray) -> np.ndarray:
        """Non-negative (N, k, H, W) coefficients of non-negative (N, C, H, W) (or (N, C):
        H = W = 1) ``values`` on the directions (NMF with the directions held fixed)."""
        values = as_channels(values)
        n, c, h, w = values.shape
        rows = values.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float32)
        coeffs = np.zeros((len(rows), self.k), dtype=np.float32)
        nonzero = rows.max(axis=1) > 0
        if nonzero.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fitted, _, _ = non_negative_factorization(
                    rows[nonzero],
                    H=self.directions.astype(np.float32),
                    n_components=self.k,
                    init="custom",
                    update_H=False,
                    max_iter=MAX_ITER,
                )
            coeffs[nonzero] = fitted
        return coeffs.reshape(n, h, w, self.k).transpose(0, 3, 1, 2)

    def maps(self, attributions: np.ndarray) -> FeatureMaps:
        """Positive/negative per-feature maps and the residual for (N, C, H, W) attributions
        ((N, C): maps with H = W = 1)."""
        attributions = as_channels(attributions)
        channel_sums = self.directions.sum(axis=1)[None, :, None, None]  # (1, k, 1, 1)
        positive = self.coefficients(np.clip(attributions, 0, None)) * channel_sums
        negative = self.coefficients(np.clip(-attributions, 0, None)) * channel_sums
        residual = attributions.sum(axis=1) - (positive - negative).sum(axis=1)
        return FeatureMaps(
            positive.astype(np.float32), negative.astype(np.float32), residual.astype(np.float32)
        )


def fit_nmf(
    values: np.ndarray,
    layer: str,
    k: int = 8,
    *,
    source: str = "attribution",
) -> NMFFeatures:
    """Fit k NMF directions on (N, C, H, W) (or (N, C)) attributions or activations of a sample.

    Attributions are split into positive and negative parts, stacked along the batch
    dimension; positions are flattened into it: a (2 N H W, C) matrix (N H W for activations).
    All-zero rows are dropped (their optimal coefficients are zero, so this changes nothing),
    and at most `MAX_ROWS` of the rest, drawn at random (seed 0), are used for the fit.
    """
    values = as_channels(values)
    if source not in ("attribution", "activation"):
        raise InterpretError(f"source must be 'attribution' or 'activation', got {source!r}")
    if not 1 <= k <= values.shape[1]:
        raise InterpretError(f"k must be in [1, {values.shape[1]}] (the channels), got {k}")
    if source == "attribution":
        stacked = np.concatenate([np.clip(values, 0, None), np.clip(-values, 0, None)])
    else:
        if values.min() < 0:
            raise InterpretError("activation NMF needs non-negative activations (after a ReLU)")
        stacked = values
    rows = stacked.transpose(0, 2, 3, 1).reshape(-1, values.shape[1]).astype(np.float32)
    rows = rows[rows.max(axis=1) > 0]
    if len(rows) < k:
        raise InterpretError(f"only {len(rows)} non-zero rows to factorize into {k} features")
    if len(rows) > MAX_ROWS:
        rows = rows[np.random.default_rng(0).choice(len(rows), MAX_ROWS, replace=False)]
    model = NMF(n_components=k, init="nndsvda", max_iter=MAX_ITER, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weights = model.fit_transform(rows)
    components = model.components_.astype(np.float64)
    norms = np.linalg.norm(components, axis=1)
    norms[norms == 0] = 1.0
    directions = components / norms[:, None]
    weights = weights * norms[None, :]
    # Order by the share of the sample each feature explains (channel-summed reconstruction).
    explained = weights.sum(axis=0) * directions.sum(axis=1)
    order = np.argsort(-explained)
    residual = np.linalg.norm(rows - weights @ directions)
    error = float(residual / max(float(np.linalg.norm(rows)), 1e-30))
    return NMFFeatures(
        layer=layer,
        directions=directions[order].astype(np.float32),
        source=source,
        reconstruction_error=error,
    )


def as_channels(values: np.ndarray) -> np.ndarray:
    """(N, C, H, W) values as they are; a dense layer's (N, D) as D channels at one position,
    (N, D, 1, 1)."""
    values = np.asarray(values)
    if values.ndim == 2:
        return values[:, :, None, None]
    if values.ndim != 4:
        raise InterpretError(
            f"NMF needs a layer's (N, C, H, W) or (N, D) values, got shape {values.shape}"
        )
    return values
