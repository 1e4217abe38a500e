"""M: the MDN-RNN of World Models: an LSTM over [z_t, a_t] predicting p(z_{t+1}).

The LSTM (256 units) feeds a dense head giving, for every latent dimension independently, a
mixture of ``n_mix`` (5) Gaussians: log mixture weights, means and log standard deviations;
optionally also the reward r_t and a logit for done_t (``predict_reward``/``predict_done``).
Sampling with temperature ``tau`` divides the mixture logits by tau and multiplies the standard
deviations by sqrt(tau), as the original did (tau -> 0: the most likely component's mean).

Layer names: ``lstm`` (``torch.nn.LSTM``, one layer) and ``head`` (``torch.nn.Linear``).
Discrete actions enter as one-hot vectors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MDNRNN(nn.Module):
    """LSTM + mixture density head.

    ``forward(z, a, state)``: z (N, T, z_size), a (N, T, action_size) -> dict with ``logpi``,
    ``mu``, ``logsigma`` (N, T, z_size, n_mix), optional ``reward`` (N, T), ``done`` logits
    (N, T), ``h`` (N, T, hidden), and ``state`` ((1, N, hidden), (1, N, hidden)).
    """

    def __init__(
        self,
        z_size: int = 32,
        action_size: int = 3,
        hidden: int = 256,
        n_mix: int = 5,
        predict_reward: bool = False,
        predict_done: bool = False,
    ) -> None:
        super().__init__()
        self.z_size, self.action_size, self.hidden, self.n_mix = z_size, action_size, hidden, n_mix
        self.predict_reward, self.predict_done = predict_reward, predict_done
        self.lstm = nn.LSTM(z_size + action_size, hidden, batch_first=True)
        extra = int(predict_reward) + int(predict_done)
        self.head = nn.Linear(hidden, 3 * z_size * n_mix + extra)

    def initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(1, n, self.hidden, device=self.head.weight.device)
        return zeros, zeros.clone()

    def mixture(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head applied to LSTM outputs h (..., hidden)."""
        out = self.head(h)
        k = self.z_size * self.n_mix
        shape = (*h.shape[:-1], self.z_size, self.n_mix)
        result = {
            "logpi": torch.log_softmax(out[..., :k].reshape(shape), dim=-1),
            "mu": out[..., k : 2 * k].reshape(shape),
            "logsigma": out[..., 2 * k : 3 * k].reshape(shape).clamp(-7.0, 5.0),
        }
        i = 3 * k
        if self.predict_reward:
            result["reward"], i = out[..., i], i + 1
        if self.predict_done:
            result["done"] = out[..., i]
        return result

    def forward(
        self,
        z: torch.Tensor,
        a: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        h, state = self.lstm(torch.cat([z, a], dim=-1), state)
        return {**self.mixture(h), "h": h, "state": state}

    def step(
        self, z: torch.Tensor, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step: z (N, z_size), a (N, action_size) -> (h (N, hidden), new state)."""
        h, state = self.lstm(torch.cat([z, a], dim=-1).unsqueeze(1), state)
        return h[:, 0], state


def mdn_log_prob(
    target: torch.Tensor, logpi: torch.Tensor, mu: torch.Tensor, logsigma: torch.Tensor
) -> torch.Tensor:
    """log p(target) under independent per-dimension Gaussian mixtures.

    target (..., z_size); logpi/mu/logsigma (..., z_size, n_mix) -> (..., z_size). Written out
    (one logsumexp) rather than via torch.distributions so training stays one fused expression.
    """
    x = target.unsqueeze(-1)
    log_normal = -0.5 * ((x - mu) / logsigma.exp()).pow(2) - logsigma - LOG_SQRT_2PI
    return torch.logsumexp(logpi + log_normal, dim=-1)


def sample_next_z(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample z (..., z_size) from the mixture at ``temperature`` (0: deterministic mode)."""
    if temperature <= 0:
        best = logpi.argmax(dim=-1, keepdim=True)
        return mu.gather(-1, best).squeeze(-1)
    probs = torch.softmax(logpi / temperature, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    idx = torch.multinomial(flat, 1, generator=generator).reshape(*probs.shape[:-1], 1)
    mean = mu.gather(-1, idx).squeeze(-1)
    sigma = logsigma.gather(-1, idx).squeeze(-1).exp() * math.sqrt(temperature)
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + sigma * noise


def mdn_loss(
    out: dict[str, torch.Tensor],
    next_z: torch.Tensor,
    reward: torch.Tensor | None = None,
    done: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Losses averaged over valid steps (``mask`` (N, T), 1 = valid): ``z`` (negative
    log-likelihood per latent dimension), optional ``reward`` (MSE), ``done`` (BCE); ``total``."""
    if mask is None:
        mask = torch.ones(next_z.shape[:2], device=next_z.device)
    denom = mask.sum().clamp(min=1.0)
    nll = -mdn_log_prob(next_z, out["logpi"], out["mu"], out["logsigma"]).mean(-1)
    losses = {"z": (nll * mask).sum() / denom}
    total = losses["z"]
    if "reward" in out and reward is not None:
        losses["reward"] = ((out["reward"] - reward).pow(2) * mask).sum() / denom
        total = total + losses["reward"]
    if "done" in out and done is not None:
        bce = nn.functional.binary_cross_entropy_with_logits(
            out["done"], done.float(), reduction="none"
        )
        losses["done"] = (bce * mask).sum() / denom
        total = total + losses["done"]
    losses["total"] = total
    return losses
