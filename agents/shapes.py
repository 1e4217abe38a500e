"""Shapes found by a dry run: one zero input, no gradients, the batch axis left out.

``output_shape(nn.Sequential(conv), (3, 64, 64))`` -> e.g. (32, 4, 4), what a trunk's dense layer
reads; ``layer_shape(view, "2b")`` -> one observation's activations at a view's layer 2b.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def output_shape(
    fn: Callable[[torch.Tensor], torch.Tensor], shape: Sequence[int]
) -> tuple[int, ...]:
    """Shape of ``fn``'s output for one zero input of ``shape`` (both without the batch axis)."""
    with torch.no_grad():
        return tuple(fn(torch.zeros(1, *shape)).shape[1:])


def layer_shape(view: Any, layer: str) -> tuple[int, ...]:
    """Shape of one observation's activations at a view's ``layer`` (e.g. (32, 32, 32) for 2b);
    an unknown layer raises ``UnknownLayerError``, which names the valid ones."""
    lower, _ = view.split(layer)
    return output_shape(lambda x: lower(view.preprocess(x)), view.observation_space.shape)
