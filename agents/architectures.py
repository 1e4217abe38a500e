"""Convolutional trunks that read HWC uint8 observations directly.

Every trunk is an ``nn.Sequential`` of named stages whose first stage, ``input``, turns an
(N, H, W, C) float batch in [0, 255] into an (N, C, H, W) view in [0, 1] without copying:
the permuted view already has channels-last strides, which the convolutions are stored in
too. So no ``VecTransposeImage`` copy is needed and the layout change happens on the device.

Stage names are the layer names interpreters use (``"1a"``, ``"2b"``, ``"fc1"``, ...).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn

from agents.shapes import output_shape


class HWCInput(nn.Module):
    """(N, H, W, C) float in [0, 255] -> (N, C, H, W) channels-last view in [0, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) * (1.0 / 255.0)


class ConvReLU(nn.Module):
    """A "same"-padded stride-1 convolution followed by a ReLU module (hookable)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class LinearReLU(nn.Module):
    """A dense layer followed by a ReLU module."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.linear(x))


class _L2PoolFunction(torch.autograd.Function):
    """sqrt(avgpool(x^2) + eps) with a hand-written backward, x / (k^2 * out) per window:
    autograd's chain (square, pool, add, sqrt) keeps x^2 and makes four full-size passes,
    which made L2 pooling half the cost of a backward pass above it on CPU. Temporaries are
    updated in place (the same float operations, one full-size buffer fewer in the backward)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: int, eps: float) -> torch.Tensor:
        out = nn.functional.avg_pool2d(x * x, k, k).add_(eps).sqrt_()
        ctx.save_for_backward(x, out)
        ctx.k = k
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        x, out = ctx.saved_tensors
        k = ctx.k
        per_window = grad_out / (out * (k * k))
        grad = nn.functional.interpolate(per_window, scale_factor=k, mode="nearest")  # (N,C,H,W)
        return grad.mul_(x), None, None


class L2Pool2d(nn.Module):
    """L2 pooling, pool size = stride: sqrt(avgpool(x^2) + eps). Shape (N,C,H,W)->(N,C,H/k,W/k)."""

    def __init__(self, kernel_size: int = 2, eps: float = 1e-8) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        if x.shape[-1] % k or x.shape[-2] % k:  # windows cut at the edge: autograd's chain
            return torch.sqrt(nn.functional.avg_pool2d(x * x, k, k) + self.eps)
        return _L2PoolFunction.apply(x, k, self.eps)


class ResidualBlock(nn.Module):
    """IMPALA residual block: x + conv(relu(conv(relu(x)))), 3x3 convs, same width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.relu0 = nn.ReLU()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(self.relu1(self.conv0(self.relu0(x))))


def interpretable_stages(chw: tuple[int, int, int]) -> OrderedDict[str, nn.Module]:
    """Appendix C of Hilton et al. (2020), up to the 512-unit dense layer.

    Names as in the paper: 1a, 2a, 2b, 3a, 4a for the convolutions; fc1 (256), fc2 (512).
    """
    conv = OrderedDict(
        [
            ("1a", ConvReLU(chw[0], 16, 7)),
            ("pool1", L2Pool2d(2)),
            ("2a", ConvReLU(16, 32, 5)),
            ("2b", ConvReLU(32, 32, 5)),
            ("pool2", L2Pool2d(2)),
            ("3a", ConvReLU(32, 32, 5)),
            ("pool3", L2Pool2d(2)),
            ("4a", ConvReLU(32, 32, 5)),
            ("pool4", L2Pool2d(2)),
        ]
    )
    flat = math.prod(output_shape(nn.Sequential(conv), chw))
    dense = [
        ("flatten", nn.Flatten()),
        ("fc1", LinearReLU(flat, 256)),
        ("fc2", LinearReLU(256, 512)),
    ]
    return OrderedDict([*conv.items(), *dense])


def impala_stages(
    chw: tuple[int, int, int], widths: tuple[int, ...] = (16, 32, 32)
) -> OrderedDict[str, nn.Module]:
    """IMPALA CNN as in the Procgen paper: per width a 3x3 conv, a 3x3/2 max-pool and two
    residual blocks (``block1`` ...); then flatten, ReLU and a 256-unit dense layer (``fc``)."""
    conv: OrderedDict[str, nn.Module] = OrderedDict()
    channels = chw[0]
    for i, width in enumerate(widths, start=1):
        conv[f"block{i}"] = nn.Sequential(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(channels, width, 3, padding=1)),
                    ("pool", nn.MaxPool2d(3, stride=2, padding=1)),
                    ("res1", ResidualBlock(width)),
                    ("res2", ResidualBlock(width)),
                ]
            )
        )
        channels = width
    flat = math.prod(output_shape(nn.Sequential(conv), chw))
    dense = [("flatten", nn.Flatten()), ("relu", nn.ReLU()), ("fc", LinearReLU(flat, 256))]
    return OrderedDict([*conv.items(), *dense])


def build_trunk(arch: str, observation_space: gym.spaces.Box) -> tuple[nn.Sequential, int]:
    """Build the named-stage trunk for ``arch``; returns (trunk, features_dim).

    ``observation_space`` must be an HWC image space (H, W, C).
    """
    height, width, channels = observation_space.shape
    chw = (channels, height, width)
    stages: OrderedDict[str, nn.Module]
    if arch == "nature":
        nature = NatureCNN(gym.spaces.Box(0, 255, chw, dtype=np.uint8), features_dim=512)
        stages = OrderedDict([("cnn", nature.cnn), ("linear", nature.linear)])
        features_dim = 512
    elif arch in _BUILDERS:
        stages = _BUILDERS[arch](chw)
        last = next(reversed(stages.values()))
        assert isinstance(last, LinearReLU)  # every builder ends with its dense layer
        features_dim = last.linear.out_features
    else:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    return nn.Sequential(OrderedDict([("input", HWCInput()), *stages.items()])), features_dim


_BUILDERS: dict[str, Callable[[tuple[int, int, int]], OrderedDict[str, nn.Module]]] = {
    "interpretable": interpretable_stages,
    "impala": impala_stages,
}
ARCHS = ("interpretable", "impala", "nature")
# The layer interpreters read by default, where a paper chose one (Hilton et al. 2020: 2b).
DEFAULT_LAYERS = {"interpretable": "2b"}


class HWCFeatures(BaseFeaturesExtractor):
    """SB3 features extractor over an HWC uint8 image space, by architecture name.

    Input: (N, H, W, C) float in [0, 255] (SB3's ``preprocess_obs`` with
    ``normalize_images=False``). Output: (N, features_dim) float32. ``precision`` ("fp32" or
    "bf16", a run-time setting, not saved) runs the trunk under bf16 autocast.
    """

    def __init__(self, observation_space: gym.spaces.Box, arch: str = "interpretable") -> None:
        trunk, features_dim = build_trunk(arch, observation_space)
        super().__init__(observation_space, features_dim)
        self.arch = arch
        self.net = trunk
        self.precision = "fp32"

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp32":
            return self.net(observations)
        with torch.autocast(observations.device.type, dtype=torch.bfloat16):
            return self.net(observations).float()
