"""Conway's Game of Life: the rules, random boards with their next states, and the imagination
metric of Wichers et al., *Visualizing Neural Network Imagination* (2024).

Boards are (..., H, W) tensors of 0/1 on a torus (the edges wrap), so a convolution with
circular padding sees exactly what the rules see. Written by hand: no kept library has the
rules or the metric, and both are a few lines of tensor code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MATCH_FRACTION = 0.95  # f(h, s) = 0 below this share of equal pixels (section 3.1)
BINARY_THRESHOLD = 0.5  # network outputs are thresholded here before matching


def life_step(boards: torch.Tensor) -> torch.Tensor:
    """One Game of Life step on a torus: (..., H, W) 0/1 -> (..., H, W) 0/1 (same dtype).

    A live cell with 2 or 3 live neighbours lives on; a dead cell with exactly 3 is born.
    """
    alive = boards != 0
    cells = alive.to(torch.int8)
    neighbours = torch.zeros_like(cells)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                neighbours += torch.roll(cells, shifts=(dy, dx), dims=(-2, -1))
    born_or_kept = (neighbours == 3) | (alive & (neighbours == 2))
    return born_or_kept.to(boards.dtype)


def life_sequence(boards: torch.Tensor, steps: int) -> torch.Tensor:
    """(N, H, W) first states -> (N, steps + 1, H, W): the first state and ``steps`` successors."""
    states = [boards]
    for _ in range(steps):
        states.append(life_step(states[-1]))
    return torch.stack(states, dim=1)


@dataclass(frozen=True)
class LifeBoards:
    """Random Game of Life boards and their next ``steps`` states by the rules.

    Each board's cells are alive independently with a density drawn uniformly from
    ``density`` per board (so the data covers sparse and crowded boards alike); ``warmup``
    rule steps are applied first, which the paper does "sometimes" to start from the
    patterns the rules produce rather than from noise.
    """

    size: int = 16
    steps: int = 3
    density: tuple[float, float] = (0.1, 0.9)
    warmup: int = 0

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, steps + 1, size, size) float32 0/1 sequences; index 0 is the model's input."""
        low, high = self.density
        p = low + (high - low) * torch.rand(n, 1, 1, generator=generator)
        boards = (torch.rand(n, self.size, self.size, generator=generator) < p).float()
        for _ in range(self.warmup):
            boards = life_step(boards)
        return life_sequence(boards, self.steps)


def imagination_metric(decoded: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """The paper's metric (equation 1) for each sequence: (N,) float32.

    Args:
        decoded: (N, n, H, W) decoder outputs h_1..h_n of the n intermediate hidden states
            (not the encoder's output nor the last RNN step, which are trained directly);
            thresholded at 0.5.
        states: (N, m, H, W) 0/1 Game of Life states s_1..s_m; s_1 and s_m are excluded.

    f(h_i, s_j) is 0 if fewer than 95% of pixels are equal; otherwise 1 for the first generated
    state matching s_j and 0.5 for each further one. The sum over i and j = 2..m-1 is divided
    by min(n, m - 2), so it can exceed 1 when n > m - 2 (appendix B: 0.5, 0.75, 1.0, 1.5).
    """
    if decoded.dim() != 4 or states.dim() != 4 or decoded.shape[0] != states.shape[0]:
        raise ValueError(
            f"expected decoded (N, n, H, W) and states (N, m, H, W), got "
            f"{tuple(decoded.shape)} and {tuple(states.shape)}"
        )
    n, m = decoded.shape[1], states.shape[1]
    if n < 1 or m < 3:
        raise ValueError(f"need n >= 1 decoded states and m >= 3 true states, got {n}, {m}")
    predicted = (decoded > BINARY_THRESHOLD).flatten(2)  # (N, n, P)
    targets = (states[:, 1:-1] != 0).flatten(2)  # (N, m-2, P)
    equal = (predicted[:, :, None, :] == targets[:, None, :, :]).float().mean(-1)
    matches = (equal >= MATCH_FRACTION).float().sum(dim=1)  # (N, m-2): generated matches per s_j
    credit = torch.where(matches > 0, 1.0 + 0.5 * (matches - 1.0), torch.zeros_like(matches))
    return credit.sum(dim=1) / min(n, m - 2)
