"""Name NMF features by the game objects their attribution falls on.

Hilton et al. (2020) labelled the interface's features by looking at them. Here the game labels
them: each frame of the attribution sample gets a partition of its pixels into object classes
(`object_masks`, from CoinRun's own renderer), averaged down to the layer's resolution
(``a[c]``: class c's fraction of each cell), and each feature's positive and negative
attribution maps (`NMFFeatures.maps`) are explained by them.

At the layer's resolution a cell mixes classes (a buzzsaw fills a quarter of the cells it
touches, the rest is background), so a feature's attribution is not split cell by cell but fit:
its map, over every cell of every frame, by a non-negative combination ``sum_c beta[c] a[c]``
(least squares). ``share[f, c]``, the part of f's attribution that class c explains, is
``beta[c] sum(a[c])`` over the explained total: 1 for a feature exactly on c's pixels.
Its **contrast** says how much denser the attribution is on c than on every other pixel:
``(share / area) / ((1 - share) / (1 - area))`` (``area[c]``: the part of all pixels c
covers); 1 for a feature with no preference (the same everywhere), 0 for one that avoids c,
and it works for small objects (a coin feature: 4% of its attribution on 0.04% of the pixels,
contrast 100) and large ones alike (95% on walls that cover 40%: contrast 28). ``lift`` is
``share / area``, the density against an average pixel. A class **dominates** a feature when
it holds at least `MIN_SHARE` of it, at a contrast of at least `MIN_CONTRAST` and at least
`LEAD` times the contrast of every other class that holds `MIN_SHARE`; the feature is then
labelled by the class (a second feature on the same class gets "coin 2", and so on, in order
of contrast); otherwise it stays unlabelled, and the report says that no class dominates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

from interpret.attribution.hazards import area_fractions
from interpret.attribution.nmf import NMFFeatures
from interpret.attribution.object_masks import OBJECT_CLASSES, object_masks
from interpret.core.errors import InterpretError

MIN_SHARE = 0.02  # of the feature's attribution, on the class's pixels
MIN_CONTRAST = 3.0  # three times as dense on the class as on the other pixels
LEAD = 2.0  # and twice the contrast of every other class that holds MIN_SHARE of it
RULE = (
    f"a class dominates a feature when it holds >= {MIN_SHARE:.0%} of the feature's "
    f"attribution, at >= {MIN_CONTRAST:g}x its density on the other pixels (contrast) and >= "
    f"{LEAD:g}x the contrast of every other class holding {MIN_SHARE:.0%} or more"
)


@dataclass
class ObjectLabels:
    """Each feature's attribution split by game object (k features, M classes).

    Attributes:
        classes: the M class names.
        area: (M,) the share of all sampled pixels each class covers.
        frames: (M,) how many sampled frames show each class at all.
        positive_shares: (k, M) the part of each feature's positive attribution each class
            explains (the module's fit; each row sums to 1, or 0 for a feature without any).
        negative_shares: (k, M) the same for its negative attribution.
        shares: (k, M) the same for positive plus negative.
        fit_r2: (k,) how much of the variance of each feature's map (positive plus negative,
            over cells and frames) the classes explain.
        lift: (k, M) ``shares / area``, 1 for no preference (0 for a class absent from the
            sample).
        contrast: (k, M) ``lift / ((1 - shares) / (1 - area))`` (inf for a feature all on
            one class).
        labels: (k,) the dominant class ("wall 2" for a second feature on walls), or "".
    """

    classes: list[str]
    area: np.ndarray
    frames: np.ndarray
    positive_shares: np.ndarray
    negative_shares: np.ndarray
    shares: np.ndarray
    fit_r2: np.ndarray
    lift: np.ndarray
    contrast: np.ndarray
    labels: list[str]

    def to_json(self) -> dict[str, Any]:
        """The scores as summary.json keeps them (rounded to 4 digits)."""

        def rounded(a: np.ndarray) -> list:
            return np.round(a.astype(np.float64), 4).tolist()

        return {
            "classes": self.classes,
            "labels": self.labels,
            "area": rounded(self.area),
            "frames_with_class": self.frames.astype(int).tolist(),
            "positive_shares": rounded(self.positive_shares),
            "negative_shares": rounded(self.negative_shares),
            "shares": rounded(self.shares),
            "fit_r2": rounded(self.fit_r2),
            "lift": rounded(self.lift),
            "contrast": rounded(np.minimum(self.contrast, 1e6)),  # JSON has no inf
            "rule": RULE,
            "meaning": "rows are features, columns classes; shares: the part of a feature's "
            "attribution each class explains (its map fit by a non-negative combination of the "
            "classes' cell fractions; object masks from the game's renderer); area: the part "
            "of all pixels the class covers; fit_r2: the variance of the map the fit explains; "
            "lift: share / area, how much denser the attribution is on the class than on an "
            "average pixel (1: no preference); contrast: its density on the class over its "
            "density on the other pixels (1: no preference; 1e6: all on the class)",
        }


def _gram(areas: np.ndarray) -> np.ndarray:
    """(M, M) ``sum a[c] a[c']`` over cells and frames of (N, M, H, W) class fractions."""
    flat = areas.transpose(1, 0, 2, 3).reshape(areas.shape[1], -1).astype(np.float64)
    return flat @ flat.T


def _fit(maps: np.ndarray, areas: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative least squares of each feature's map on the class fractions, cell by cell.

    :param maps: (N, k, H, W) >= 0
    :param areas: (N, M, H, W) class fractions of each cell
    :param gram: (M, M) `_gram(areas)`
    :return: (k, M) the mass each class explains (``beta[c] sum(a[c])``), (k,) R^2 of the fit
    """
    maps = maps.astype(np.float64)
    k, m = maps.shape[1], gram.shape[0]
    present = np.flatnonzero(np.diag(gram) > 0)
    # min |A beta - y|^2 = |L^T beta - L^-1 A^T y|^2 + const, with A^T A = G = L L^T
    g = gram[np.ix_(present, present)]
    lower = np.linalg.cholesky(g + 1e-12 * np.trace(g) * np.eye(len(present)))
    cross = np.einsum("nkyx,nmyx->km", maps, areas.astype(np.float64))[:, present]
    sums = areas.sum(axis=(0, 2, 3)).astype(np.float64)[present]
    explained = np.zeros((k, m))
    r2 = np.zeros(k)
    for f in range(k):
        beta, _ = nnls(lower.T, np.linalg.solve(lower, cross[f]))
        explained[f, present] = beta * sums
        y = maps[:, f]
        total = float(np.square(y - y.mean()).sum())
        residual = float(np.square(y).sum() - 2 * cross[f] @ beta + beta @ g @ beta)
        r2[f] = 1 - residual / total if total > 0 else 0.0
    return explained, r2


def _normalised(mass: np.ndarray) -> np.ndarray:
    total = mass.sum(axis=1, keepdims=True)
    return np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)


def dominant_labels(shares: np.ndarray, contrast: np.ndarray, classes: Sequence[str]) -> list[str]:
    """(k,) labels by the module's rule from (k, M) `shares` and `contrast`; "" where no
    class dominates. Repeats are numbered in order of contrast: "coin", "coin 2", ..."""
    winners: list[tuple[float, int, int]] = []  # (contrast, feature, class)
    for f in range(len(shares)):
        held = np.flatnonzero(shares[f] >= MIN_SHARE)
        if len(held) == 0:
            continue
        order = held[np.argsort(-contrast[f, held])]
        best = int(order[0])
        runner_up = float(contrast[f, order[1]]) if len(order) > 1 else 0.0
        if contrast[f, best] >= MIN_CONTRAST and contrast[f, best] >= LEAD * runner_up:
            winners.append((float(contrast[f, best]), f, best))
    labels = [""] * len(shares)
    seen: dict[int, int] = {}
    for _, f, c in sorted(winners, reverse=True):
        seen[c] = seen.get(c, 0) + 1
        labels[f] = classes[c] if seen[c] == 1 else f"{classes[c]} {seen[c]}"
    return labels


def score_objects(
    features: NMFFeatures, attributions: np.ndarray, masks: np.ndarray
) -> ObjectLabels:
    """Split each feature's attribution by object class and label the features.

    :param attributions: (N, C, H, W) attributions at ``features.layer``
    :param masks: (N, M, h, w) bool, a partition of each observation's pixels into the
        `OBJECT_CLASSES` (`object_masks`; any resolution, averaged down to (H, W))
    """
    if attributions.ndim != 4:
        raise InterpretError(
            f"object labels need a convolutional layer's (N, C, H, W) attributions, got "
            f"{attributions.shape}"
        )
    n, m = masks.shape[:2]
    if len(attributions) != n or n == 0 or m != len(OBJECT_CLASSES):
        raise InterpretError(
            f"{len(attributions)} attributions for {n} frames of masks over {m} classes "
            f"({len(OBJECT_CLASSES)} named)"
        )
    height, width = attributions.shape[2:]
    areas = area_fractions(masks.reshape(n * m, *masks.shape[2:]), (height, width))
    areas = areas.reshape(n, m, height, width)
    maps = features.maps(attributions)
    gram = _gram(areas)
    positive, _ = _fit(maps.positive, areas, gram)
    negative, _ = _fit(maps.negative, areas, gram)
    both, fit_r2 = _fit(maps.positive + maps.negative, areas, gram)
    area = areas.mean(axis=(0, 2, 3)).astype(np.float64)
    shares = _normalised(both)
    lift = np.divide(shares, area[None], out=np.zeros_like(shares), where=area[None] > 0)
    elsewhere = np.divide(
        1 - shares, 1 - area[None], out=np.ones_like(shares), where=area[None] < 1
    )
    with np.errstate(divide="ignore"):  # all on one class: infinite contrast
        contrast = np.where(lift > 0, lift / np.maximum(elsewhere, 0.0), 0.0)
    return ObjectLabels(
        classes=list(OBJECT_CLASSES),
        area=area,
        frames=masks.any(axis=(2, 3)).sum(axis=0),
        positive_shares=_normalised(positive),
        negative_shares=_normalised(negative),
        shares=shares,
        fit_r2=fit_r2,
        lift=lift,
        contrast=contrast,
        labels=dominant_labels(shares, contrast, OBJECT_CLASSES),
    )


def label_by_objects(
    features: NMFFeatures, attributions: np.ndarray, states: Sequence[bytes], batch_size: int = 32
) -> ObjectLabels:
    """`score_objects` on the CoinRun states (``get_state()`` bytes) the (N, C, H, W)
    `attributions` were computed for, with masks from the game's renderer."""
    return score_objects(features, attributions, object_masks(states, batch_size))


def feature_for_class(scores: dict[str, Any], name: str) -> tuple[int | None, str]:
    """The feature that stands for object class `name`, from the scores of `ObjectLabels.
    to_json` (a report's ``summary.json["object_labels"]``), and a sentence saying why: the
    feature labelled `name`; else, of the unlabelled features holding `MIN_SHARE` of their
    attribution on it, the one of highest contrast (at least `MIN_CONTRAST`); else None."""
    classes, labels = list(scores["classes"]), list(scores["labels"])
    if name not in classes:
        raise InterpretError(f"no object class {name!r}; the classes: {', '.join(classes)}")
    if name in labels:
        return labels.index(name), f"feature {labels.index(name)}, labelled {name}"
    c = classes.index(name)
    contrast, shares = np.asarray(scores["contrast"]), np.asarray(scores["shares"])
    candidates = [
        f
        for f, label in enumerate(labels)
        if not label and shares[f, c] >= MIN_SHARE and contrast[f, c] >= MIN_CONTRAST
    ]
    if not candidates:
        return None, (
            f"no feature is labelled {name}, and no unlabelled one holds {MIN_SHARE:.0%} of its "
            f"attribution on {name} at contrast {MIN_CONTRAST:g}"
        )
    best = max(candidates, key=lambda f: contrast[f, c])
    return best, (
        f"feature {best}: no feature is labelled {name}; of the unlabelled ones it has the "
        f"highest contrast on {name} ({contrast[best, c]:.3g}, {shares[best, c]:.0%} of it)"
    )
