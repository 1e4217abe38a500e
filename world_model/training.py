"""Training V and M from a run directory's data, checkpointed every epoch.

V trains on frames streamed from ``rollouts/`` (Adam, lr 1e-4 as the original); each epoch
ends with ``checkpoints/vae.pt`` (weights, optimizer, epoch, and for a VAE-GAN the
discriminator and its optimizer; read back with ``torch.load(weights_only=True)``), and the
stage ends with ``vae.safetensors``. Then every
episode is encoded to ``series/ep_*.npz`` (mu, logvar, actions, rewards, dones). M trains on
random windows of those series (Adam, lr 1e-3, gradient norm clipped at 1), same checkpoints.
Progress goes to ``vae_progress.csv`` / ``mdn_progress.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from agents.fileio import atomic_path
from world_model.data import FrameStream, SequenceSampler
from world_model.mdn_rnn import MDNRNN, mdn_loss
from world_model.model import save_weights
from world_model.rollouts import episode_files
from world_model.rundir import append_progress
from world_model.vae import ConvVAE, frames_to_tensor, vae_loss
from world_model.vae_gan import Discriminator, GanWeights, vae_gan_step

Log = Callable[[str], None]


Stateful = torch.nn.Module | torch.optim.Optimizer


def _save_checkpoint(path: Path, parts: dict[str, Stateful], epoch: int) -> None:
    """``parts`` by name (``model``, ``optim``, ...) and the number of finished epochs."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({**{k: v.state_dict() for k, v in parts.items()}, "epoch": epoch}, tmp)


def _load_checkpoint(path: Path, parts: dict[str, Stateful]) -> int:
    """Restore a checkpoint if there is one; returns the number of finished epochs."""
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return int(state["epoch"])


def train_vae(
    run_dir: Path,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-4,
    kl_tolerance: float = 0.5,
    z_size: int = 32,
    seed: int = 0,
    log: Log = print,
    gan: GanWeights | None = None,
) -> ConvVAE:
    """Train V on ``run_dir/rollouts`` and write ``run_dir/vae.safetensors``; with ``gan``, as
    a VAE-GAN (``world_model.vae_gan``), whose progress rows add the GAN's losses."""
    torch.manual_seed(seed)
    vae = ConvVAE(z_size)
    optim = torch.optim.Adam(vae.parameters(), lr=lr)
    parts: dict[str, Stateful] = {"model": vae, "optim": optim}
    if gan is not None:
        discriminator = Discriminator()
        disc_optim = torch.optim.Adam(discriminator.parameters(), lr=lr)
        parts.update(discriminator=discriminator, discriminator_optim=disc_optim)
    ckpt = run_dir / "checkpoints" / "vae.pt"
    done = _load_checkpoint(ckpt, parts)
    stream = FrameStream(episode_files(run_dir / "rollouts"), batch_size, seed=seed)
    stream.epoch = done
    for epoch in range(done, epochs):
        started, n = time.monotonic(), 0
        sums: dict[str, float] = {}
        vae.train()
        for frames in stream:
            x = frames_to_tensor(frames)
            if gan is None:
                losses = _plain_vae_step(vae, optim, x, kl_tolerance)
            else:
                losses = vae_gan_step(vae, discriminator, optim, disc_optim, x, gan, kl_tolerance)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v * len(x)
            n += len(x)
        means = {k: v / max(n, 1) for k, v in sums.items()}
        row = {"epoch": epoch + 1, **means, "frames": n}
        row["seconds"] = round(time.monotonic() - started, 1)
        append_progress(run_dir / "vae_progress.csv", row)
        _save_checkpoint(ckpt, parts, epoch + 1)
        loss, rec, kl = means["loss"], means["reconstruction"], means["kl"]
        line = f"V epoch {epoch + 1}/{epochs}: loss {loss:.1f} (recon {rec:.1f}, kl {kl:.1f})"
        if gan is not None:
            line += f", D {means['discriminator']:.3f}, adversarial {means['adversarial']:.3f}"
        log(line)
    save_weights(vae, run_dir / "vae.safetensors")
    return vae.eval()


def _plain_vae_step(
    vae: ConvVAE, optim: torch.optim.Optimizer, x: torch.Tensor, kl_tolerance: float
) -> dict[str, float]:
    """One update of V on frames x (N, 3, 64, 64); the batch means of its loss and terms."""
    recon, mu, logvar = vae(x)
    loss, rec, kl = vae_loss(x, recon, mu, logvar, kl_tolerance)
    optim.zero_grad()
    loss.backward()
    optim.step()
    return {"loss": loss.item(), "reconstruction": rec.item(), "kl": kl.item()}


@torch.no_grad()
def encode_episodes(
    run_dir: Path, vae: ConvVAE, action_encoder: Callable[[np.ndarray], np.ndarray]
) -> list[Path]:
    """Encode each rollout to ``series/ep_*.npz`` (skipping those already encoded)."""
    out_dir = run_dir / "series"
    out_dir.mkdir(exist_ok=True)
    written = []
    for path in episode_files(run_dir / "rollouts"):
        target = out_dir / path.name
        written.append(target)
        if target.is_file():
            continue
        with np.load(path) as data:
            frames, actions = data["frames"], data["actions"]
            rewards, dones = data["rewards"], data["dones"]
        mus, logvars = [], []
        for b in range(0, len(frames), 256):
            mu, logvar = vae.encoder(frames_to_tensor(frames[b : b + 256]))
            mus.append(mu.numpy())
            logvars.append(logvar.numpy())
        with atomic_path(target, suffix=".npz") as tmp:
            np.savez(
                tmp,
                mu=np.concatenate(mus),
                logvar=np.concatenate(logvars),
                actions_in=action_encoder(actions).astype(np.float32),
                rewards=rewards,
                dones=dones,
            )
    return written


def load_series(files: list[Path]) -> list[dict[str, np.ndarray]]:
    series = []
    for path in files:
        with np.load(path) as data:
            series.append({k: data[k] for k in data.files})
    return series


def train_mdn(
    run_dir: Path,
    mdn: MDNRNN,
    epochs: int,
    steps_per_epoch: int | None = None,
    batch_size: int = 16,
    seq_len: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    log: Log = print,
) -> MDNRNN:
    """Train M on ``run_dir/series`` and write ``run_dir/mdn.safetensors``.

    An epoch is ``steps_per_epoch`` batches (default: as many as the data has windows)."""
    torch.manual_seed(seed)
    optim = torch.optim.Adam(mdn.parameters(), lr=lr)
    ckpt = run_dir / "checkpoints" / "mdn.pt"
    done = _load_checkpoint(ckpt, {"model": mdn, "optim": optim})
    series = load_series(sorted((run_dir / "series").glob("ep_*.npz")))
    sampler = SequenceSampler(series, seq_len, seed=seed + done)
    steps = steps_per_epoch or max(1, sampler.steps() // (batch_size * seq_len))
    for epoch in range(done, epochs):
        started = time.monotonic()
        sums: dict[str, float] = {}
        mdn.train()
        for _ in range(steps):
            b = sampler.batch(batch_size)
            out = mdn(b["z"], b["actions"])
            losses = mdn_loss(out, b["next_z"], b["rewards"], b["dones"], b["mask"])
            optim.zero_grad()
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(mdn.parameters(), 1.0)
            optim.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item() / steps
        row = {"epoch": epoch + 1, **{f"loss_{k}": v for k, v in sums.items()}, "batches": steps}
        row["seconds"] = round(time.monotonic() - started, 1)
        append_progress(run_dir / "mdn_progress.csv", row)
        _save_checkpoint(ckpt, {"model": mdn, "optim": optim}, epoch + 1)
        log(f"M epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.3f}" for k, v in sums.items()))
    save_weights(mdn, run_dir / "mdn.safetensors")
    return mdn.eval()
