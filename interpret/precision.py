"""Inference precision for the interpreters: ``with autocast("bf16", device): ...``.

``"fp32"`` (the default everywhere) runs the network as it is; ``"bf16"`` runs it under
``torch.autocast(device_type, dtype=torch.bfloat16)`` (weights stay float32; matmuls and
convolutions compute in bfloat16). Callers cast the outputs to float32 before using them
(sampling, sums, gradients). bfloat16 is fast only where the CPU has native bfloat16
instructions (AVX512-BF16, AMX) or on a GPU; elsewhere torch emulates it and it is slower.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`, else a ValueError naming the valid ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block at `precision` on `device` (a torch device or its name)."""
    if check_precision(precision) == "fp32":
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        yield
