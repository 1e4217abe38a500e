"""V as a VAE-GAN: the VAE's decoder doubles as a generator trained against a discriminator.

Flores (*Project II - World Models*, 2021, part III) replaces the decoder of World Models' V
with a GAN's generator and a discriminator that tells reconstructions from real frames, after
Larsen, Sønderby, Larochelle, Winther, *Autoencoding beyond pixels using a learned similarity
metric* (2016); the report could not make it train. Here, per batch of real frames x:

- x_rec = Dec(z), z ~ q(z|x); x_prior = Dec(z_p), z_p ~ N(0, I).
- Discriminator D: binary cross-entropy, real x against x_rec and x_prior (mean of the two).
- Encoder and decoder: V's own loss (squared pixel error summed over the 3x64x64 pixels, KL
  floored as in ``world_model.vae``), which keeps z a VAE code that M can model, plus
  ``feature_weight`` x the squared error between D's third-layer features of x and x_rec
  (Larsen's learned similarity), scaled to the pixel count so that 1 weighs it like the pixel
  error per element.
- The decoder alone also gets ``gan_weight`` x the generator's non-saturating loss
  (-log D(x_rec) - log D(x_prior), halved): it is computed on codes detached from the encoder,
  so that, as in Larsen et al., the encoder never learns to fool D.

The encoder and decoder keep ``ConvVAE``'s architecture and layer names, so a VAE-GAN's
``vae.safetensors`` loads, encodes and decodes exactly like a plain V's; D lives only in the
training checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from world_model.vae import ConvVAE, vae_loss

PIXELS = 3 * 64 * 64


class Discriminator(nn.Module):
    """x (N, 3, 64, 64) in [0, 1] -> logit (N,) that x is a real frame.

    Four 4x4 stride-2 convolutions (32, 64, 128, 256 channels, leaky ReLU 0.2), as V's encoder,
    then one dense layer; ``features`` is the third convolution's output (N, 128, 6, 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 4, stride=2)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 128, 4, stride=2)
        self.conv4 = nn.Conv2d(128, 256, 4, stride=2)
        self.logit = nn.Linear(2 * 2 * 256, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.leaky_relu(conv(x), 0.2)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv4(self.features(x)), 0.2)
        return self.logit(h.flatten(1)).squeeze(1)


@dataclass(frozen=True)
class GanWeights:
    """How much the adversarial and the feature terms weigh against V's pixel error."""

    gan_weight: float = 10.0
    feature_weight: float = 1.0


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def vae_gan_step(
    vae: ConvVAE,
    discriminator: Discriminator,
    vae_optim: torch.optim.Optimizer,
    disc_optim: torch.optim.Optimizer,
    x: torch.Tensor,
    weights: GanWeights,
    kl_tolerance: float = 0.5,
) -> dict[str, float]:
    """One update of D, then of the encoder and decoder, on frames x (N, 3, 64, 64) in [0, 1].

    Returns the batch means: ``loss`` (V's own loss), ``reconstruction``, ``kl``, ``feature``,
    ``adversarial`` (the generator's loss), ``discriminator`` (D's loss) and ``d_real`` /
    ``d_fake`` (D's mean probability on real frames and on reconstructions)."""
    mu, logvar = vae.encoder(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    recon = vae.decoder(z)
    z_prior = torch.randn_like(mu)
    recon_detached_code = vae.decoder(z.detach())
    prior = vae.decoder(z_prior)

    real_logits = discriminator(x)
    fake_logits = discriminator(recon_detached_code.detach())
    prior_logits = discriminator(prior.detach())
    d_loss = _bce(real_logits, True) + 0.5 * (_bce(fake_logits, False) + _bce(prior_logits, False))
    disc_optim.zero_grad()
    d_loss.backward()
    disc_optim.step()

    loss, rec, kl = vae_loss(x, recon, mu, logvar, kl_tolerance)
    discriminator.requires_grad_(False)  # D is a fixed critic for this half of the step
    with torch.no_grad():
        real_features = discriminator.features(x)
    feature_scale = PIXELS / real_features[0].numel()
    feature = (discriminator.features(recon) - real_features).pow(2).flatten(1).sum(1).mean()
    adversarial = 0.5 * (
        _bce(discriminator(recon_detached_code), True) + _bce(discriminator(prior), True)
    )
    total = loss + weights.feature_weight * feature_scale * feature
    total = total + weights.gan_weight * adversarial
    vae_optim.zero_grad()
    total.backward()
    vae_optim.step()
    discriminator.requires_grad_(True)
    return {
        "loss": loss.item(),
        "reconstruction": rec.item(),
        "kl": kl.item(),
        "feature": feature.item() * feature_scale,
        "adversarial": adversarial.item(),
        "discriminator": d_loss.item(),
        "d_real": torch.sigmoid(real_logits).mean().item(),
        "d_fake": torch.sigmoid(fake_logits).mean().item(),
    }
