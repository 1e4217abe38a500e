"""Data for V and M: frames streamed from the rollout chunks, and encoded z sequences.

``FrameStream`` never holds more than ``buffer_episodes`` episodes in memory: each epoch it
visits the chunk files in a fresh random order, fills a buffer with a few of them and yields
shuffled batches from it (a shuffle buffer, as streaming loaders do). The encoded series are
~50x smaller than the frames (2 x 32 floats per frame), so M's ``SequenceSampler`` keeps them
in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


class FrameStream:
    """Batches of uint8 frames (B, 64, 64, 3) from chunk files, shuffled per epoch."""

    def __init__(
        self, files: list[Path], batch_size: int = 64, buffer_episodes: int = 8, seed: int = 0
    ) -> None:
        if not files:
            raise ValueError("no rollout files to train on")
        self.files, self.batch_size = list(files), batch_size
        self.buffer_episodes, self.seed, self.epoch = buffer_episodes, seed, 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        order = rng.permutation(len(self.files))
        for start in range(0, len(order), self.buffer_episodes):
            buffer = []
            for i in order[start : start + self.buffer_episodes]:
                with np.load(self.files[i]) as data:
                    buffer.append(data["frames"])
            frames = np.concatenate(buffer)
            perm = rng.permutation(len(frames))
            for b in range(0, len(perm), self.batch_size):
                yield torch.from_numpy(frames[np.sort(perm[b : b + self.batch_size])])


class SequenceSampler:
    """Random windows of ``seq_len`` steps from encoded episodes.

    Each batch: z (B, T, z) sampled from q(z|x) (mu + sigma * eps, fresh each time, as the
    original), next_z (B, T, z), actions (B, T, A), rewards (B, T), dones (B, T), mask (B, T)
    (0 past an episode's end, for episodes shorter than ``seq_len`` + 1).
    """

    def __init__(self, series: list[dict[str, np.ndarray]], seq_len: int, seed: int = 0) -> None:
        self.series = [s for s in series if len(s["mu"]) >= 2]
        if not self.series:
            raise ValueError("no encoded episode has 2 or more steps")
        self.seq_len = seq_len
        self.rng = np.random.default_rng(seed)
        lengths = np.array([len(s["mu"]) - 1 for s in self.series], float)
        self.weights = lengths / lengths.sum()

    def steps(self) -> int:
        return int(sum(len(s["mu"]) - 1 for s in self.series))

    def batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        T = self.seq_len
        picks = self.rng.choice(len(self.series), size=batch_size, p=self.weights)
        keys = ("z", "next_z", "actions", "rewards", "dones", "mask")
        out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for i in picks:
            s = self.series[i]
            n = len(s["mu"]) - 1  # transitions available
            start = int(self.rng.integers(0, max(1, n - T + 1)))
            idx = np.arange(start, start + T)
            valid = idx < start + min(T, n)
            idx = np.minimum(idx, n - 1)
            z_all = s["mu"] + np.exp(0.5 * s["logvar"]) * self.rng.standard_normal(s["mu"].shape)
            out["z"].append(z_all[idx])
            out["next_z"].append(z_all[idx + 1])
            out["actions"].append(s["actions_in"][idx])
            out["rewards"].append(s["rewards"][idx])
            out["dones"].append(s["dones"][idx])
            out["mask"].append(valid)
        return {k: torch.as_tensor(np.stack(v), dtype=torch.float32) for k, v in out.items()}
