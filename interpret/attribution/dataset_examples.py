"""Dataset-example feature visualization (Hilton et al. 2020, "Dataset example-based feature
visualization" and "Spatially-aware feature visualization").

A feature's response at each position of a layer is the layer's activations projected on the
feature's direction. ``top_examples`` picks the observations and positions where it is
strongest, at most ``per_position`` times per position (for diversity), and cuts the patch of
the observation around each position, with a grey-white checkerboard beyond the screen's edge.
``spatial_examples`` fixes each position in turn and picks the observation with the strongest
response there (each observation reused at most ``max_reuse`` times), so the mosaic keeps the
observation's spatial layout; transparency shows a weak response.

Written by hand: no kept library does dataset-example selection (it is a few array operations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Example:
    """One dataset example: observation ``index``, layer position (``y``, ``x``), ``score``."""

    index: int
    y: int
    x: int
    score: float


def top_examples(response: np.ndarray, n: int = 8, per_position: int = 1) -> list[Example]:
    """The ``n`` strongest (observation, position) pairs of one feature's (N, H, W) response,
    at most ``per_position`` per position and one per observation."""
    order = np.argsort(response, axis=None)[::-1]
    counts: dict[tuple[int, int], int] = {}
    used: set[int] = set()
    chosen: list[Example] = []
    for flat in order:
        index, y, x = np.unravel_index(flat, response.shape)
        score = float(response[index, y, x])
        if score <= 0 or len(chosen) == n:
            break
        if counts.get((y, x), 0) >= per_position or index in used:
            continue
        counts[(y, x)] = counts.get((y, x), 0) + 1
        used.add(int(index))
        chosen.append(Example(int(index), int(y), int(x), score))
    return chosen


def checkerboard(height: int, width: int, square: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 grey-white checkerboard: the area beyond the screen's edge."""
    yy, xx = np.mgrid[:height, :width]
    light = ((yy // square + xx // square) % 2 == 0)[..., None]
    return np.where(light, 255, 190).astype(np.uint8).repeat(3, axis=2)


def patch(observation: np.ndarray, y: int, x: int, stride: int, size: int) -> np.ndarray:
    """(size, size, 3) patch of an (H, W, 3) observation centred on layer position (y, x)
    (``stride`` observation pixels per layer position); off-screen pixels are a checkerboard."""
    height, width = observation.shape[:2]
    cy, cx = y * stride + stride // 2, x * stride + stride // 2
    top, left = cy - size // 2, cx - size // 2
    out = checkerboard(size, size)
    y0, y1 = max(top, 0), min(top + size, height)
    x0, x1 = max(left, 0), min(left + size, width)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = observation[y0:y1, x0:x1, :3]
    return out


def spatial_examples(
    response: np.ndarray, observations: np.ndarray, cell: int = 4, max_reuse: int = 2
) -> np.ndarray:
    """Spatially-aware visualization of one feature: an (H_obs, W_obs, 4) RGBA uint8 mosaic.

    The layer's (H, W) grid is cut into ``cell`` x ``cell`` blocks; for each block (strongest
    first) the observation with the strongest response there (used at most ``max_reuse``
    times) fills the block's pixels; alpha is the response relative to the strongest block.
    """
    n, height, width = response.shape
    stride = observations.shape[1] // height
    blocks = response.reshape(n, height // cell, cell, width // cell, cell).max(axis=(2, 4))
    best = blocks.max(axis=0)
    scale = max(float(best.max()), 1e-12)
    mosaic = np.zeros((*observations.shape[1:3], 4), dtype=np.uint8)
    uses = np.zeros(n, dtype=int)
    block_order = np.argsort(best, axis=None)[::-1]
    for flat in block_order:
        by, bx = np.unravel_index(flat, best.shape)
        candidates = np.argsort(blocks[:, by, bx])[::-1]
        index = next((int(i) for i in candidates if uses[i] < max_reuse), int(candidates[0]))
        uses[index] += 1
        ys = slice(by * cell * stride, (by + 1) * cell * stride)
        xs = slice(bx * cell * stride, (bx + 1) * cell * stride)
        mosaic[ys, xs, :3] = observations[index, ys, xs, :3]
        strength = max(float(blocks[index, by, bx]), 0.0) / scale
        mosaic[ys, xs, 3] = round(255 * strength)
    return mosaic
