"""Decode what a World Models agent's MDN-RNN imagines (Wichers et al., *Visualizing Neural
Network Imagination*, 2024; Ha and Schmidhuber, *World Models*, 2018).

M's hidden state h_t (after reading real z_0..z_t and actions a_0..a_t) gives a mixture
p(z_{t+1}); its mean sum_k pi_k mu_k (or a sample at a temperature) goes through V's decoder and
is compared with the real next frame. Feeding the predictions back (open loop) with the recorded
actions gives the k-step-ahead predictions z_{t+1..t+K}; with the controller choosing actions
it gives a dream. Shapes: frames (T+1, 64, 64, 3) uint8, z (T+1, z_size), actions in M's input
encoding (T, action_size) (one-hot when discrete), predictions (S, K, z_size) for S starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from world_model.mdn_rnn import sample_next_z
from world_model.model import WorldModel
from world_model.vae import frames_to_tensor, tensor_to_frames

State = tuple[torch.Tensor, torch.Tensor]


def mixture_mean(logpi: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """logpi, mu (..., z_size, n_mix) -> the mixture's mean sum_k pi_k mu_k (..., z_size)."""
    return (logpi.exp() * mu).sum(-1)


def predict_z(
    mixture: dict[str, torch.Tensor],
    temperature: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """M's head output -> a next z (..., z_size): the mixture mean (``temperature`` None) or a
    sample at ``temperature`` (0: the most likely component's mean), as the dream samples."""
    if temperature is None:
        return mixture_mean(mixture["logpi"], mixture["mu"])
    return sample_next_z(
        mixture["logpi"], mixture["mu"], mixture["logsigma"], temperature, generator
    )


def mse_per_pixel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 3, 64, 64) pairs in [0, 1] -> (N,) mean squared error over pixels and channels."""
    return (a - b).pow(2).flatten(1).mean(1)


@torch.no_grad()
def teacher_forced_states(model: WorldModel, z: torch.Tensor, actions: torch.Tensor) -> State:
    """M reads the real z (T+1, z_size) and actions (T, action_size): the state after each step,
    h and c each (1, T, hidden) (column t: having read z_0..z_t, a_0..a_t)."""
    state = model.mdn.initial_state(1)
    hs, cs = [], []
    for t in range(len(actions)):
        _, state = model.mdn.step(z[t : t + 1], actions[t : t + 1], state)
        hs.append(state[0])
        cs.append(state[1])
    return torch.cat(hs, dim=1), torch.cat(cs, dim=1)


@torch.no_grad()
def open_loop(
    model: WorldModel,
    state: State,
    horizon: int,
    actions: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor],
    temperature: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """From states (1, S, hidden) that have read a step, predict ``horizon`` z's ahead, feeding
    each prediction back: ``actions(k, z_k, h_k)`` gives the (S, action_size) input for step k
    (k = 1 .. horizon - 1), z_k the prediction, h_k (S, hidden) the state that produced it.
    Returns (S, horizon, z_size)."""
    out: list[torch.Tensor] = []
    for k in range(horizon):
        if k > 0:
            _, state = model.mdn.step(out[-1], actions(k, out[-1], state[0][0]), state)
        out.append(predict_z(model.mdn.mixture(state[0][0]), temperature, generator))
    return torch.stack(out, dim=1)


@dataclass
class KStep:
    """k-step-ahead predictions of one episode (S = T - K + 1 starts t = 0 .. T - K).

    Attributes:
        error: (S, K) MSE per pixel of decoded prediction of frame t+k vs the real frame t+k.
        reconstruction_error: (T,) V's own error on frames 1..T (decode(encode(x)) vs x): the
            floor that M's predictions, decoded by V, cannot beat.
        copy_error: (S, K) error of repeating frame t as the prediction of frame t+k.
        shown: {start t: (K, 64, 64, 3) uint8 decoded predictions} for the requested starts.
    """

    error: np.ndarray
    reconstruction_error: np.ndarray
    copy_error: np.ndarray
    shown: dict[int, np.ndarray]


@torch.no_grad()
def k_step_predictions(
    model: WorldModel,
    frames: np.ndarray,
    actions: torch.Tensor,
    horizon: int,
    temperature: float | None = None,
    generator: torch.Generator | None = None,
    show: tuple[int, ...] = (),
    batch: int = 64,
) -> KStep:
    """Predict frames t+1 .. t+K from every start t of one episode: frames (T+1, 64, 64, 3)
    uint8, actions (T, action_size) in M's encoding, T >= K (see ``KStep``)."""
    x = frames_to_tensor(frames)
    steps = len(actions)
    if len(frames) != steps + 1 or steps < horizon:
        raise ValueError(f"need T+1 frames and T >= horizon actions; got {len(frames)}, {steps}")
    z, _ = model.vae.encoder(x)
    recon = model.vae.decoder(z[1:])
    h, c = teacher_forced_states(model, z, actions)
    starts = steps - horizon + 1
    error = np.zeros((starts, horizon), np.float32)
    copy = np.zeros((starts, horizon), np.float32)
    shown: dict[int, np.ndarray] = {}
    for lo in range(0, starts, batch):
        t = torch.arange(lo, min(starts, lo + batch))
        feed = lambda k, _z, _h, t=t: actions[t + k]  # noqa: E731  (a_{t+k} enters step k)
        pred = open_loop(model, (h[:, t], c[:, t]), horizon, feed, temperature, generator)
        for k in range(horizon):
            decoded = model.vae.decoder(pred[:, k])
            real = x[t + k + 1]
            error[t, k] = mse_per_pixel(decoded, real).numpy()
            copy[t, k] = mse_per_pixel(x[t], real).numpy()
            for s in show:
                if lo <= s < lo + len(t):
                    shown.setdefault(s, np.zeros((horizon, 64, 64, 3), np.uint8))
                    shown[s][k] = tensor_to_frames(decoded[s - lo : s - lo + 1])[0]
    return KStep(error, mse_per_pixel(recon, x[1:]).numpy(), copy, shown)


@torch.no_grad()
def dream(
    model: WorldModel,
    frames: np.ndarray,
    actions: torch.Tensor,
    start: int,
    steps: int,
    use_controller: bool,
    temperature: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An open-loop dream of ``steps`` frames from the real frame ``start`` (M having read the
    real episode up to it): actions from the controller (C([z, h]), or C(z) for a z-only run)
    or the recorded ones (then ``steps`` <= T - start). Returns (decoded dream (steps, 64, 64,
    3) uint8, the actions taken (steps, action_size) in M's encoding)."""
    x = frames_to_tensor(frames[: start + 1])
    z, _ = model.vae.encoder(x)
    ctrl = model.controller
    if start > 0:
        h, c = teacher_forced_states(model, z[:start], actions[:start])
        state = (h[:, -1:], c[:, -1:])
    else:
        state = model.mdn.initial_state(1)
    taken = []

    def choose(zt: torch.Tensor, ht: torch.Tensor, i: int) -> torch.Tensor:
        if use_controller:
            a = ctrl.encode_action(ctrl.to_action(ctrl.decide(zt, ht)))
        else:
            a = actions[start + i : start + i + 1]
        taken.append(a)
        return a

    # the first step reads the real z_start, then the model's own predictions
    _, state = model.mdn.step(z[start:], choose(z[start:], state[0][0], 0), state)
    pred = open_loop(
        model, state, steps, lambda k, zk, hk: choose(zk, hk, k), temperature, generator
    )
    return tensor_to_frames(model.vae.decoder(pred[0])), torch.cat(taken).numpy()
