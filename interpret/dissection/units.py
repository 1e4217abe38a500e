"""Network dissection of a policy's units (Liu, *Understanding Vision-based Dynamics Models*,
2021): per-unit statistics over recorded observations, top-quantile thresholds t_u, dead units,
and activation maps.

Works on any ``PolicyView`` (``module``, ``layers()``,
``layer_module(name)``, ``preprocess``, ``outputs``): activations are caught by a forward hook
on ``layer_module(layer)``, so nothing here depends on the algorithm. A fully connected layer's
output (N, D) is treated as a 1x1 convolution (N, D, 1, 1), as the thesis proposes (2.2.1).
Written by hand: netdissect is not a kept library, and these are a few tensor reductions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from interpret.core.errors import InterpretError


def as_units(activation: torch.Tensor) -> torch.Tensor:
    """Layer output -> (N, U, h, w): conv maps as they are, (N, D) as D units of size 1x1, a
    recurrent layer's one-step output (N, 1, D) as (N, D)."""
    if activation.dim() == 3 and activation.shape[1] == 1:
        activation = activation[:, 0]
    if activation.dim() == 4:
        return activation
    if activation.dim() == 2:
        return activation[:, :, None, None]
    raise InterpretError(
        f"cannot dissect a layer whose output has shape {tuple(activation.shape)}; "
        "expected (N, C, H, W) or (N, D)"
    )


@contextlib.contextmanager
def capture(view, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that store each layer's latest output (as (N, U, h, w)) in the yielded
    dict; removed on exit."""
    caught: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                output = output[0]  # an LSTM's (output sequence, (h, c))
            if not isinstance(output, torch.Tensor):
                raise InterpretError(f"layer {name!r} does not output a single tensor")
            caught[name] = as_units(output.detach())

        return hook

    try:
        for name in layers:
            handles.append(view.layer_module(name).register_forward_hook(hook_for(name)))
        yield caught
    finally:
        for handle in handles:
            handle.remove()


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def forward_layers(view, layers: Sequence[str], obs: np.ndarray) -> dict[str, torch.Tensor]:
    """Raw observations (n, ...) -> {layer: (n, U, h, w)} in one forward pass."""
    with capture(view, layers) as caught:
        view.outputs(view.preprocess(obs))
    missing = [name for name in layers if name not in caught]
    if missing:
        raise InterpretError(f"layer(s) {missing} were not reached by the forward pass")
    return dict(caught)


@dataclass
class UnitStatistics:
    """Per-unit statistics of one layer over N observations.

    Attributes:
        layer: the layer's name; ``shape``: (U, h, w) of one observation's activation.
        quantile: q, the top share of activations above the threshold (0.01 or 0.05).
        threshold: (U,) t_u, the (k+1)-th largest of the unit's N*h*w activations, k =
            floor(q * N*h*w): so (with distinct values) exactly a share q lies above it.
        maximum, mean: (U,) over all observations and positions.
        active_fraction: (U,) share of activations > 0.
        dead: (U,) bool, the unit never activates (maximum <= 0), as in the thesis' Table 5.1.
        per_observation_max: (N, U) max over positions, to rank a unit's top observations.
    """

    layer: str
    shape: tuple[int, int, int]
    quantile: float
    threshold: np.ndarray
    maximum: np.ndarray
    mean: np.ndarray
    active_fraction: np.ndarray
    dead: np.ndarray
    per_observation_max: np.ndarray

    @property
    def units(self) -> int:
        return self.shape[0]


@torch.no_grad()
def unit_statistics(
    view, layer: str, observations: np.ndarray, quantile: float = 0.01, batch_size: int = 256
) -> UnitStatistics:
    """Statistics of ``layer``'s units over ``observations`` (N, *obs_shape) uint8, streamed in
    batches: the threshold keeps each unit's running top (k+1) values, so it is exact without
    holding all N*h*w activations."""
    n = len(observations)
    if n == 0:
        raise InterpretError("no observations to dissect")
    # Per batch: (U,) maxima, sums, counts of positives; (b, U) per-observation maxima.
    maxima: list[torch.Tensor] = []
    totals: list[torch.Tensor] = []
    positives: list[torch.Tensor] = []
    per_obs_max: list[torch.Tensor] = []
    top: torch.Tensor | None = None  # (U, <= k+1) each unit's largest values so far
    keep, shape = 0, None
    for part in batches(n, batch_size):
        act = forward_layers(view, [layer], observations[part])[layer].float()
        if shape is None:
            shape = tuple(act.shape[1:])
            keep = int(np.floor(quantile * n * shape[1] * shape[2])) + 1
        flat = act.transpose(0, 1).reshape(shape[0], -1)  # (U, b*h*w)
        per_obs_max.append(act.flatten(2).amax(dim=2))
        maxima.append(flat.amax(dim=1))
        totals.append(flat.sum(dim=1, dtype=torch.float64))
        positives.append((flat > 0).sum(dim=1, dtype=torch.float64))
        pool = flat if top is None else torch.cat([top, flat], dim=1)
        top = pool.topk(min(keep, pool.shape[1]), dim=1).values
    assert shape is not None and top is not None  # n > 0: the loop ran
    count = n * shape[1] * shape[2]
    maximum = torch.stack(maxima).amax(dim=0)
    total = sum(totals[1:], totals[0])  # summed in batch order
    positive = sum(positives[1:], positives[0])
    return UnitStatistics(
        layer=layer,
        shape=(shape[0], shape[1], shape[2]),
        quantile=quantile,
        threshold=top[:, keep - 1].numpy(),
        maximum=maximum.numpy(),
        mean=(total / count).float().numpy(),
        active_fraction=(positive / count).float().numpy(),
        dead=(maximum <= 0).numpy(),
        per_observation_max=torch.cat(per_obs_max).numpy(),
    )


@torch.no_grad()
def dead_units(view, observations: np.ndarray, batch_size: int = 256) -> dict[str, dict]:
    """For every layer of ``view.layers()``: {"dead": count, "units": U} of units whose
    activation is never positive over ``observations`` (the thesis' Table 5.1), one pass."""
    layers = view.layers()
    maxima: dict[str, torch.Tensor] = {}
    for part in batches(len(observations), batch_size):
        for name, act in forward_layers(view, layers, observations[part]).items():
            unit_max = act.transpose(0, 1).flatten(1).amax(dim=1).float()
            maxima[name] = unit_max if name not in maxima else torch.maximum(maxima[name], unit_max)
    return {name: {"dead": int((m <= 0).sum()), "units": len(m)} for name, m in maxima.items()}


def top_observations(
    scores: np.ndarray,
    threshold: float,
    episodes: np.ndarray,
    steps: np.ndarray,
    top: int = 3,
    spacing: int = 5,
) -> list[int]:
    """Indices of up to ``top`` observations with the highest ``scores`` (N,) above
    ``threshold``, no two of the same episode fewer than ``spacing`` steps apart (the thesis
    keeps no two images within 5 frames of each other in the same trajectory)."""
    chosen: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] <= threshold or len(chosen) == top:
            break
        if all(
            episodes[j] != episodes[i] or abs(int(steps[j]) - int(steps[i])) >= spacing
            for j in chosen
        ):
            chosen.append(int(i))
    return chosen


def upsampled(activation: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, U, h, w) -> (n, U, H, W) by bilinear interpolation (as netdissect does)."""
    if activation.shape[-2:] == size:
        return activation
    if activation.shape[-2:] == (1, 1):
        return activation.expand(*activation.shape[:2], *size)
    return F.interpolate(activation.float(), size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def activation_maps(
    view,
    layer: str,
    observations: np.ndarray,
    units: Sequence[int],
    thresholds: np.ndarray,
    size: tuple[int, int],
) -> np.ndarray:
    """Activation maps {p | a_u(x, p) > t_u} upsampled to the observation: for observation i
    and unit ``units[i]``, (len(units), H, W) bool. A 1x1 (fully connected) unit's map is the
    whole frame or nothing."""
    if len(units) == 0:
        return np.zeros((0, *size), dtype=bool)
    act = forward_layers(view, [layer], observations)[layer]
    index = torch.as_tensor(list(units))
    chosen = act[torch.arange(len(index)), index][:, None]  # (n, 1, h, w)
    t = torch.as_tensor(np.asarray(thresholds)[list(units)], dtype=torch.float32)
    return (upsampled(chosen.float(), size)[:, 0] > t[:, None, None]).numpy()


def observation_image(obs: np.ndarray) -> np.ndarray | None:
    """One raw observation -> (H, W, 3) uint8 to show, or None if it is not an image.

    HWC RGB is shown as is; a grayscale frame stack (H, W, k) shows its newest frame."""
    obs = np.asarray(obs)
    if obs.ndim != 3 or obs.dtype != np.uint8:
        return None
    if obs.shape[2] == 3:
        return obs
    if obs.shape[2] in (1, 2, 4):
        return np.repeat(obs[:, :, -1:], 3, axis=2)
    if obs.shape[0] in (1, 3, 4):  # channel-first
        return observation_image(np.transpose(obs, (1, 2, 0)))
    return None
