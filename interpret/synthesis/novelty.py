"""Novelty of synthesized states: the nearest recorded frame (mean squared error) and the share
of pixels where some channel differs from it by more than 25% of the range."""

from __future__ import annotations

import numpy as np
import torch

DIFFERENT = 0.25
HISTOGRAM_EDGES = np.linspace(0.0, 1.0, 11)  # share of pixels different: 0-10%, ..., 90-100%


def nearest_frames(
    images: np.ndarray, frames: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For images (N, C, H, W) in [0, 1] and recorded frames (M, H, W, C) uint8:
    (index of the nearest frame (N,), share of its pixels that differ by > 25% (N,))."""
    x = torch.as_tensor(images).float().flatten(1)
    best_d = torch.full((len(x),), float("inf"))
    best_i = torch.zeros(len(x), dtype=torch.long)
    for start in range(0, len(frames), chunk):
        f = torch.as_tensor(frames[start : start + chunk]).permute(0, 3, 1, 2).float() / 255.0
        d = torch.cdist(x, f.flatten(1)) ** 2
        value, index = d.min(dim=1)
        better = value < best_d
        best_d[better], best_i[better] = value[better], index[better] + start
    nearest = torch.as_tensor(frames[best_i.numpy()]).permute(0, 3, 1, 2).float() / 255.0
    diff = (torch.as_tensor(images).float() - nearest).abs() > DIFFERENT
    share = diff.any(dim=1).flatten(1).float().mean(dim=1)
    return best_i.numpy(), share.numpy()


def novelty_histogram(share: np.ndarray) -> dict[str, list]:
    """Histogram of the share of differing pixels over samples, and the share of samples with
    more than each edge's share of pixels different."""
    counts, _ = np.histogram(share, bins=HISTOGRAM_EDGES)
    return {
        "edges": HISTOGRAM_EDGES.tolist(),
        "counts": counts.tolist(),
        "share_of_samples_above": [float(np.mean(share > e)) for e in HISTOGRAM_EDGES[:-1]],
    }
