"""V: the convolutional VAE of World Models (Ha & Schmidhuber 2018, appendix).

Encoder: four 4x4 stride-2 convolutions with 32, 64, 128, 256 channels (ReLU), 64x64x3 ->
2x2x256, then two dense layers to the mean and log-variance of z (32). Decoder: dense z ->
1024, viewed as 1x1x1024, then transposed convolutions (5x5, 5x5, 6x6, 6x6, stride 2) with
128, 64, 32, 3 channels back to 64x64x3 with a sigmoid. Loss: squared error summed over pixels
plus the KL to N(0, I), the KL floored at ``kl_tolerance * z_size`` (the original's 0.5 * 32)
so the optimizer stops squeezing it once it is small.

Layer names (stable; ``world_model.view`` prefixes them with ``vae.``): ``encoder.conv1``
.. ``encoder.conv4``, ``encoder.mu``, ``encoder.logvar``, ``decoder.fc``, ``decoder.deconv1`` ..
``decoder.deconv4``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

Z_SIZE = 32


class Encoder(nn.Module):
    """x (N, 3, 64, 64) in [0, 1] -> (mu, logvar), each (N, z_size)."""

    def __init__(self, z_size: int = Z_SIZE) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 4, stride=2)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 128, 4, stride=2)
        self.conv4 = nn.Conv2d(128, 256, 4, stride=2)
        self.mu = nn.Linear(2 * 2 * 256, z_size)
        self.logvar = nn.Linear(2 * 2 * 256, z_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 64, 64) -> (N, 256, 2, 2): the output of conv4 (after ReLU)."""
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """z (N, z_size) -> reconstruction (N, 3, 64, 64) in [0, 1]."""

    def __init__(self, z_size: int = Z_SIZE) -> None:
        super().__init__()
        self.fc = nn.Linear(z_size, 1024)
        self.deconv1 = nn.ConvTranspose2d(1024, 128, 5, stride=2)
        self.deconv2 = nn.ConvTranspose2d(128, 64, 5, stride=2)
        self.deconv3 = nn.ConvTranspose2d(64, 32, 6, stride=2)
        self.deconv4 = nn.ConvTranspose2d(32, 3, 6, stride=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, 1024, 1, 1)
        x = torch.relu(self.deconv1(x))
        x = torch.relu(self.deconv2(x))
        x = torch.relu(self.deconv3(x))
        return torch.sigmoid(self.deconv4(x))


class ConvVAE(nn.Module):
    """Encoder + decoder; ``forward`` samples z with the reparameterization trick."""

    def __init__(self, z_size: int = Z_SIZE) -> None:
        super().__init__()
        self.z_size = z_size
        self.encoder = Encoder(z_size)
        self.decoder = Decoder(z_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, 3, 64, 64) -> (reconstruction, mu, logvar)."""
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def vae_loss(
    x: torch.Tensor,
    recon: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_tolerance: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, KL), each a batch mean: reconstruction is the squared error summed
    over the 3x64x64 pixels; KL is summed over z and floored at ``kl_tolerance * z_size``."""
    recon_loss = (recon - x).pow(2).flatten(1).sum(1).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    kl_floored = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()
    return recon_loss + kl_floored, recon_loss, kl.mean()


def frames_to_tensor(frames: torch.Tensor | object) -> torch.Tensor:
    """uint8 frames (N, 64, 64, 3) -> float (N, 3, 64, 64) in [0, 1]."""
    t = torch.as_tensor(frames)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """Decoder output (N, 3, 64, 64) in [0, 1] -> uint8 frames (N, 64, 64, 3)."""
    return x.permute(0, 2, 3, 1).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
