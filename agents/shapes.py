"""Shapes found by a dry run: one zero input, no gradients, the batch axis left out.

``output_shape(nn.Sequential(conv), (3, 64, 64))`` -> e.g. (32, 4, 4), what a trunk's dense layer
reads (``PolicyView.layer_shape`` is built on it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def output_shape(
    fn: Callable[[torch.Tensor], torch.Tensor], shape: Sequence[int]
) -> tuple[int, ...]:
    """Shape of ``fn``'s output for one zero input of ``shape`` (both without the batch axis)."""
    with torch.no_grad():
        return tuple(fn(torch.zeros(1, *shape)).shape[1:])
