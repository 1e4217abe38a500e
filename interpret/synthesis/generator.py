"""The generator: a VAE over generator-space images (N, C, H, W) in [0, 1].

Encoder: ``stages`` (4) x [stride-2 4x4 convolution, batch norm, ReLU], ``base_filters`` (32)
doubling per stage, then fully connected mean and log-variance of a ``latent_dim`` Gaussian.
Decoder: the mirror (a fully connected layer to the smallest feature map, stride-2 transposed
convolutions halving the filters, a sigmoid at the end). Sizes that are not a multiple of
2^stages (Atari's 84) are decoded past the size (84 -> 96) and center-cropped.
Saved as safetensors weights plus a JSON config (no pickle).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from agents.fileio import atomic_path
from agents.shapes import output_shape


@dataclass(frozen=True)
class GeneratorConfig:
    channels: int
    height: int
    width: int
    latent_dim: int = 64
    base_filters: int = 32
    stages: int = 4


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU())


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU())


class Generator(nn.Module):
    """``encode(x) -> (mean, logvar)`` (N, latent_dim) each; ``decode(z) -> (N, C, H, W)``."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        widths = [c.base_filters * 2**i for i in range(c.stages)]
        self.encoder = nn.Sequential(
            *[_down(a, b) for a, b in zip([c.channels, *widths[:-1]], widths, strict=True)]
        )
        enc_shape = output_shape(self.encoder, (c.channels, c.height, c.width))
        flat = math.prod(enc_shape)
        self.mean = nn.Linear(flat, c.latent_dim)
        self.logvar = nn.Linear(flat, c.latent_dim)
        scale = 2**c.stages
        self._start = (widths[-1], -(-c.height // scale), -(-c.width // scale))
        self.expand = nn.Sequential(nn.Linear(c.latent_dim, math.prod(self._start)), nn.ReLU())
        rev = widths[::-1]
        self.decoder = nn.Sequential(
            *[_up(a, b) for a, b in itertools.pairwise(rev)],
            nn.ConvTranspose2d(rev[-1], c.channels, 4, 2, 1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        return self.mean(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder(self.expand(z).view(-1, *self._start))
        top = (x.shape[2] - self.config.height) // 2
        left = (x.shape[3] - self.config.width) // 2
        return x[:, :, top : top + self.config.height, left : left + self.config.width]

    def forward(
        self, x: torch.Tensor, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, mean, logvar); ``sample=False`` decodes the mean."""
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if sample else mean
        return self.decode(z), mean, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (decoded mean), in eval mode."""
        return self.decode(self.encode(x)[0])

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """``path`` (.safetensors) and ``path`` with ``.json`` (config and ``extra``)."""
        from safetensors.torch import save_file

        path = Path(path)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(state, str(tmp))
        meta = {"config": asdict(self.config), **(extra or {})}
        with atomic_path(path.with_suffix(".json"), suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple[Generator, dict]:
        """(generator in eval mode, its JSON record)."""
        from safetensors.torch import load_file

        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        generator = cls(GeneratorConfig(**meta["config"]))
        generator.load_state_dict(load_file(str(path)))
        return generator.eval(), meta
