"""Mixed precision for our image trunks: bf16 autocast inside, fp32 at the edges.

``set_precision(policy, "bf16")`` makes every ``HWCFeatures`` trunk of a policy run its
convolutions and dense layers under ``torch.autocast(dtype=torch.bfloat16)`` and hand float32
features to the heads, so master weights, optimizer state, logits, log-probabilities, values
and every loss stay in float32 (PPO's probability ratio needs fp32 log-probs). ``autocast``
is the same context for code that runs a network itself (interpreters).
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from agents.architectures import HWCFeatures

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of PRECISIONS, else raise ValueError (one line)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision


def add_precision_argument(parser: argparse.ArgumentParser, note: str) -> None:
    """``--precision fp32|bf16`` (default fp32) for a command that runs a network; ``note``
    says what bf16 changes for it."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help=f"network precision (bf16: autocast, fast only with bf16 hardware; {note})",
    )


def has_bf16_units(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX instructions. Elsewhere autocast emulates bf16, many times slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def warn_if_emulated(precision: str, device: torch.device | str = "cpu") -> None:
    """A RuntimeWarning when bf16 is asked for on a device without bf16 units."""
    if precision == "bf16" and not has_bf16_units(device):
        warnings.warn(
            f"bf16 on this {torch.device(device).type.upper()} has no bf16 units (AVX512-BF16, "
            "AMX or a bf16 GPU) and runs about 10x slower than fp32; use --precision fp32",
            RuntimeWarning,
            stacklevel=3,
        )


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """bf16 autocast on ``device``'s type when ``precision == "bf16"``, else nothing."""
    check_precision(precision)
    device_type = torch.device(device).type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def set_precision(module: nn.Module, precision: str) -> int:
    """Set the precision of every ``HWCFeatures`` trunk in ``module``; returns how many.

    Other networks (SB3's MLP and NatureCNN extractors) keep running in float32.
    """
    check_precision(precision)
    trunks = [sub for sub in module.modules() if isinstance(sub, HWCFeatures)]
    if trunks:
        warn_if_emulated(precision, next(module.parameters()).device)
    for trunk in trunks:
        trunk.precision = precision
    return len(trunks)
