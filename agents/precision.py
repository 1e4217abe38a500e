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
    for trunk in trunks:
        trunk.precision = precision
    return len(trunks)
