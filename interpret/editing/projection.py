"""Model editing (Hilton et al. 2020, Appendix A): blind a policy to a feature direction.

Given directions v (vectors over the channels of a layer, e.g. NMF directions at ``2b``), the
kernel W of the next parametrized layer is replaced by W with the orthogonal projection
P = I - v v^T / |v|^2 (for several directions: I minus the projector onto their span) applied
on its input-channel axis: W'[o, c', ...] = sum_c W[o, c, ...] P[c, c']. The next layer then
computes W (P a): the same as before for activations orthogonal to v, and the same whether or
not any multiple of v is added to them. Only that weight changes; biases and every other
parameter stay bit for bit.

What lies between the layer and the kernel may act on each channel alone (ReLU, pooling, as
``pool2`` between ``2b`` and ``3a`` in the paper's network, and flattening into a dense layer,
whose input features are then channel-major blocks); a residual block or any other mixing
module in between is refused. After the last trunk layer the edited kernels are the head's
first dense layers (policy and value, or the Q layer).

Written by hand because no kept library edits weights this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.policy_view import LayerReadersError, PolicyView
from interpret.core.errors import InterpretError


class EditError(InterpretError):
    """An edit that cannot be made: bad directions, or no kernel right after the layer."""


@dataclass(frozen=True)
class KernelEdit:
    """What `project_out` changed.

    Attributes:
        layer: the layer whose channel directions were projected out.
        parameters: state-dict names of the edited weights (e.g. ``...3a.conv.weight``).
        directions: (k, C) the directions as given.
        rank: dimension of the projected-out span.
    """

    layer: str
    parameters: tuple[str, ...]
    directions: np.ndarray
    rank: int

    def to_json(self) -> dict[str, Any]:
        """JSON-able record for metadata: ``view.save(path, {"edit": edit.to_json()})``."""
        return {
            "method": "project out directions from the next layer's input (Hilton et al. App. A)",
            "layer": self.layer,
            "parameters": list(self.parameters),
            "directions": self.directions.tolist(),
            "rank": self.rank,
        }


def projection(directions: np.ndarray | torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """(C, C) float64 orthogonal projector removing the span of `directions` ((C,) or (k, C)).

    One direction v gives I - v v^T / |v|^2 exactly; several give I - Q Q^T with Q an
    orthonormal basis of their span (from an SVD; directions dependent on others add nothing).
    """
    v = torch.as_tensor(np.asarray(directions, dtype=np.float64))
    if v.dim() == 1:
        v = v[None]
    if v.dim() != 2 or v.shape[0] == 0:
        raise EditError(f"directions must have shape (C,) or (k, C), got {tuple(v.shape)}")
    if channels is not None and v.shape[1] != channels:
        raise EditError(f"directions have {v.shape[1]} entries, the layer has {channels} channels")
    if not torch.isfinite(v).all():
        raise EditError("directions contain NaN or infinity")
    u, s, _ = torch.linalg.svd(v.T, full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        raise EditError("directions are all zero")
    basis = u[:, s > s[0] * v.shape[1] * torch.finfo(torch.float64).eps]
    return torch.eye(v.shape[1], dtype=torch.float64) - basis @ basis.T


def next_kernels(view: PolicyView, layer: str) -> list[tuple[str, nn.Module]]:
    """[(state-dict weight name, module)] of the parametrized layer(s) reading `layer`'s
    output through channel-wise modules only (`PolicyView.readers`); `EditError` if something
    mixing comes first."""
    try:
        return view.readers(layer)
    except LayerReadersError as err:
        raise EditError(str(err)) from None


@torch.no_grad()
def project_kernel(weight: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """`weight` (out, in, ...) with the (C, C) projector `p` applied on its input axis; a dense
    weight whose ``in`` is a multiple of C is read as (out, C, in / C) (flattened channels)."""
    channels = p.shape[0]
    if weight.shape[1] % channels:
        raise EditError(f"kernel input size {weight.shape[1]} is not a multiple of {channels}")
    w = weight.detach().to(torch.float64)
    if weight.dim() == 2:
        blocks = w.reshape(w.shape[0], channels, -1)
        return torch.einsum("ocs,cd->ods", blocks, p).reshape(weight.shape).to(weight.dtype)
    return torch.einsum("oc...,cd->od...", w, p).to(weight.dtype)


@torch.no_grad()
def project_out(
    view: PolicyView, layer: str, directions: np.ndarray | torch.Tensor | list
) -> KernelEdit:
    """Edit `view`'s policy in place so the layer after `layer` no longer sees `directions`.

    :param view: `agents.load`'s view; its module's weights are changed
    :param layer: a name from ``view.layers()`` (``"2b"`` in the paper)
    :param directions: (C,) or (k, C) vectors in `layer`'s channel space (e.g. NMF directions)
    :return: what was edited; save with ``view.save(path, metadata={"edit": edit.to_json()})``
    """
    channels = view.layer_shape(layer)[0]
    p = projection(np.asarray(directions, dtype=np.float64), channels)
    kernels = next_kernels(view, layer)
    for name, module in kernels:
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.in_channels != channels):
            raise EditError(f"{name} reads {module.in_channels} channels, {layer!r} has {channels}")
    for _, module in kernels:
        weight = module.get_parameter("weight")
        weight.copy_(project_kernel(weight, p.to(weight.device)))
    rank = channels - round(float(torch.trace(p)))
    arr = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    return KernelEdit(layer, tuple(name for name, _ in kernels), arr, rank)
