"""Network imagination on the Game of Life (Wichers, Tao, Volpato, Barez, *Visualizing Neural
Network Imagination*, 2024): a convolutional encoder-RNN-decoder trained to predict only the
k-th state, whose decoder is then applied to the intermediate hidden states; optional
autoencoder loss and adversarial decoder training.

``train_gol(config)`` trains one model (resumable from a checkpoint) and returns it with its
training history; ``evaluate_gol`` computes the paper's metric over many fresh sequences.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agents.fileio import atomic_path
from interpret.imagination.game_of_life import LifeBoards, imagination_metric


@dataclass(frozen=True)
class GoLConfig:
    """One training run. ``steps``: GoL timesteps k; ``model_steps``: RNN timesteps (default k).

    The paper's best settings: 20 channels, one layer in the encoder and in the decoder.
    """

    steps: int = 3
    model_steps: int | None = None
    autoencoder: bool = True
    rnn: bool = True  # False: each timestep has its own weights ("Use RNN" = False)
    adversarial_steps: int = 0  # decoder-only GAN phase after the main training
    channels: int = 20
    board: int = 12
    density: tuple[float, float] = (0.2, 0.6)
    warmup: int = 0
    train_steps: int = 4000
    batch: int = 64
    lr: float = 3e-3
    schedule: str = "cosine"  # "cosine": lr decays to 0 over train_steps; "constant"
    clip: float = 1.0  # gradient norm clip (0: none)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (0: plain Adam)
    linear_cell_output: bool = False  # no ReLU after the RNN cell's last convolution
    cell_output: str = "relu"  # the cell's output activation: "relu", "tanh" or "sigmoid"
    single_conv: bool = False  # one 3x3 convolution per RNN step (not 3x3, ReLU, 1x1)
    codec_kernel: int = 1  # kernel of the encoder's and the decoder's convolution (1 or 3)
    loss: str = "mse"  # prediction loss: "mse" (L2, like the autoencoder's) or "bce"
    keep_best: bool = True  # end on the weights with the lowest validation prediction loss
    seed: int = 0
    adversarial_weight: float = 0.1  # the GAN loss's weight beside the prediction and AE losses
    adversarial_fakes: str = "soft"  # "soft": sigmoid outputs; "binary": thresholded at 0.5
    adversarial_reals: str = "all"  # "all": any state of a sequence; "evolved": not the first

    @property
    def rnn_steps(self) -> int:
        return self.model_steps if self.model_steps is not None else self.steps

    def boards(self) -> LifeBoards:
        return LifeBoards(self.board, self.steps, self.density, self.warmup)


# The adversarial phase's settings: they change nothing before the phase starts.
ADVERSARIAL_FIELDS = (
    "adversarial_steps",
    "adversarial_weight",
    "adversarial_fakes",
    "adversarial_reals",
)


def main_training_config(config: GoLConfig) -> GoLConfig:
    """``config`` with the adversarial phase's settings at their defaults: the settings the main
    training depends on, so runs that differ only in the adversarial phase share a checkpoint."""
    defaults = GoLConfig()
    return dataclasses.replace(
        config, **{name: getattr(defaults, name) for name in ADVERSARIAL_FIELDS}
    )


CELL_OUTPUTS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
CODEC_KERNELS = (1, 3)
ADVERSARIAL_FAKES = ("soft", "binary")
ADVERSARIAL_REALS = ("all", "evolved")


def _conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, padding_mode="circular")


class RNNCell(nn.Module):
    """One model timestep: hidden (N, C, H, W) -> next hidden, a 3x3 convolution, ReLU, a 1x1
    convolution (``single_conv``: the 3x3 alone), then ``output`` ("relu", "tanh", "sigmoid";
    ``linear_output``: none)."""

    def __init__(
        self,
        channels: int,
        linear_output: bool = False,
        output: str = "relu",
        single_conv: bool = False,
    ) -> None:
        super().__init__()
        if output not in CELL_OUTPUTS:
            raise ValueError(f"cell output must be one of {sorted(CELL_OUTPUTS)}, got {output!r}")
        layers: list[nn.Module] = [_conv(channels, channels, 3)]
        if not single_conv:
            layers += [nn.ReLU(), _conv(channels, channels, 1)]
        if not linear_output:
            layers.append(CELL_OUTPUTS[output]())
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class ImaginationNet(nn.Module):
    """Encoder (one conv, ReLU) -> ``rnn_steps`` cells (shared weights if ``rnn``) -> decoder
    (one conv, sigmoid); encoder and decoder kernels are ``codec_kernel`` (1 or 3). Boards
    (N, 1, H, W) in [0, 1]; all convolutions wrap around like the board."""

    def __init__(
        self,
        channels: int = 20,
        rnn_steps: int = 3,
        rnn: bool = True,
        linear_output: bool = False,
        cell_output: str = "relu",
        single_conv: bool = False,
        codec_kernel: int = 1,
    ) -> None:
        super().__init__()
        if codec_kernel not in CODEC_KERNELS:
            raise ValueError(f"codec kernel must be 1 or 3, got {codec_kernel}")
        self.rnn_steps = rnn_steps
        self.encoder = nn.Sequential(_conv(1, channels, codec_kernel), nn.ReLU())
        n_cells = 1 if rnn else rnn_steps
        self.cells = nn.ModuleList(
            RNNCell(channels, linear_output, cell_output, single_conv) for _ in range(n_cells)
        )
        self.decoder = _conv(channels, 1, codec_kernel)

    @classmethod
    def from_config(cls, config: GoLConfig) -> ImaginationNet:
        """The untrained model that ``config`` describes."""
        return cls(
            config.channels,
            config.rnn_steps,
            config.rnn,
            config.linear_cell_output,
            config.cell_output,
            config.single_conv,
            config.codec_kernel,
        )

    def hidden_states(self, boards: torch.Tensor) -> list[torch.Tensor]:
        """[encoder output, after cell 1, ..., after cell rnn_steps], each (N, C, H, W)."""
        h = self.encoder(boards)
        states = [h]
        for t in range(self.rnn_steps):
            h = self.cells[t % len(self.cells)](h)
            states.append(h)
        return states

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden (N, C, H, W) -> probabilities (N, 1, H, W)."""
        return torch.sigmoid(self.decoder(h))

    def imagine(self, boards: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) first states -> (N, rnn_steps + 1, H, W): every hidden state decoded;
        index 0 is the autoencoded input, the last is the prediction of the k-th state."""
        return torch.cat([self.decode(h) for h in self.hidden_states(boards)], dim=1)


class Discriminator(nn.Module):
    """Real GoL board vs decoded hidden state: (N, 1, H, W) -> logits (N,)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _conv(1, width, 3),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


@dataclass
class TrainedGoL:
    """A trained model and what happened: ``history`` rows every ``log_every`` steps hold the
    step, loss and the pixel accuracy of every decoded hidden state against the GoL state of
    the same index (meaningful when model and GoL timesteps are equal)."""

    config: GoLConfig
    model: ImaginationNet
    decoder_before_adversarial: dict[str, torch.Tensor] | None = None
    best_step: int = 0  # the training step whose weights the model ends on
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _prediction_loss(model: ImaginationNet, hidden: torch.Tensor, target: torch.Tensor, kind: str):
    """Loss of the decoded last hidden state against the k-th state: binary cross-entropy
    (learns the binary rules faster here) or L2 on the sigmoid output (the paper does not name
    its prediction loss)."""
    if kind == "mse":
        return F.mse_loss(model.decode(hidden), target)
    return F.binary_cross_entropy_with_logits(model.decoder(hidden), target)


def _losses(
    model: ImaginationNet, hidden: list[torch.Tensor], seq: torch.Tensor, config: GoLConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction loss, autoencoder loss) of the hidden states of ``seq``: the k-th state
    only, and L2 on the reconstructed first state, as in the paper (section 2.2); the
    autoencoder loss is 0 when it is off."""
    prediction = _prediction_loss(model, hidden[-1], seq[:, -1:], config.loss)
    if not config.autoencoder:
        return prediction, torch.zeros(())
    return prediction, F.mse_loss(model.decode(hidden[0]), seq[:, :1])


@torch.no_grad()
def stepwise_accuracy(model: ImaginationNet, seq: torch.Tensor) -> list[float]:
    """Pixel accuracy of each decoded hidden state i against GoL state i (up to the shorter)."""
    decoded = (model.imagine(seq[:, :1]) > 0.5).float()
    k = min(decoded.shape[1], seq.shape[1])
    return [(decoded[:, i] == seq[:, i]).float().mean().item() for i in range(k)]


def train_gol(
    config: GoLConfig,
    checkpoint: Path | None = None,
    log_every: int = 250,
    progress: Callable[[int, int], None] | None = None,
) -> TrainedGoL:
    """Train one model on fresh random boards every step (seeded by ``config.seed``).

    Adam at ``config.lr`` (cosine decay to 0 unless ``schedule="constant"``), gradient norm
    clipped at ``config.clip``. Every ``log_every`` steps the prediction loss on 512 fixed
    validation sequences is measured; with ``keep_best`` the model ends on the weights where
    it was lowest (a late collapse does not lose a converged model). With ``checkpoint``, state
    is saved there every ``log_every`` steps (weights only, loaded with ``weights_only=True``)
    and a matching checkpoint is resumed from; it matches on the main training's settings
    (``main_training_config``), so a finished one goes straight to another adversarial phase.
    """
    if config.adversarial_fakes not in ADVERSARIAL_FAKES:  # before training, not after
        raise ValueError(f"adversarial fakes must be one of {ADVERSARIAL_FAKES}")
    if config.adversarial_reals not in ADVERSARIAL_REALS:
        raise ValueError(f"adversarial reals must be one of {ADVERSARIAL_REALS}")
    torch.manual_seed(config.seed)
    data = torch.Generator().manual_seed(config.seed)
    model = ImaginationNet.from_config(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = _scheduler(optimizer, config)
    boards = config.boards()
    probe = boards.sample(512, torch.Generator().manual_seed(10_000 + config.seed))
    result = TrainedGoL(config, model)
    best: dict[str, Any] = {"loss": float("inf"), "step": 0, "model": None}
    start_step, elapsed = 0, 0.0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        if state["config"] in _config_keys(main_training_config(config)) | _config_keys(config):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            data.set_state(state["data_rng"])
            torch.set_rng_state(state["torch_rng"])
            start_step, elapsed = int(state["step"]), float(state["seconds"])
            best = {k: state[f"best_{k}"] for k in ("loss", "step", "model")}
            result.history = [
                dict(zip(state["history_keys"], row, strict=True))
                for row in state["history"].tolist()
            ]
    began = time.perf_counter() - elapsed
    for step in range(start_step, config.train_steps):
        seq = boards.sample(config.batch, data)
        prediction, autoencoder = _losses(model, model.hidden_states(seq[:, :1]), seq, config)
        loss = (prediction + autoencoder) / 2 if config.autoencoder else prediction
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        if done % log_every == 0 or done == config.train_steps:
            validation = validation_loss(model, probe, config.loss)
            if validation < best["loss"]:
                best = {"loss": validation, "step": done, "model": _copy(model.state_dict())}
            accuracy = stepwise_accuracy(model, probe)
            result.history.append(
                {
                    "step": done,
                    "loss": loss.item(),
                    "validation_loss": validation,
                    **{f"acc{i}": a for i, a in enumerate(accuracy)},
                }
            )
            if checkpoint is not None:
                _save_checkpoint(
                    checkpoint, config, model, optimizer, scheduler, data, done, began, result, best
                )
        if progress is not None:
            progress(done, config.train_steps)
    if config.keep_best and best["model"] is not None:
        model.load_state_dict(best["model"])
    result.best_step = int(best["step"])
    if config.adversarial_steps > 0:
        result.decoder_before_adversarial = _copy(model.decoder.state_dict())
        train_adversarial_decoder(model, config, data)
    result.seconds = time.perf_counter() - began
    return result


# Fields added after checkpoints were first written, oldest first: a checkpoint written before a
# group existed resumes when the config has that group (and every later one) at its defaults.
LATER_FIELDS = (
    ("cell_output", "single_conv", "codec_kernel"),
    ("adversarial_weight", "adversarial_fakes"),
    ("adversarial_reals",),
)


def _config_keys(config: GoLConfig) -> set[str]:
    """The config strings a checkpoint of ``config`` may carry: its repr, and its repr without
    the later field groups (``LATER_FIELDS``) that are at their defaults, newest first."""
    key = repr(config)
    keys = {key}
    defaults = GoLConfig()
    for group in reversed(LATER_FIELDS):
        if any(getattr(config, name) != getattr(defaults, name) for name in group):
            break
        for name in group:
            key = key.replace(f", {name}={getattr(config, name)!r}", "")
        keys.add(key)
    return keys


def checkpoint_key(config: GoLConfig) -> str:
    """The shortest string a checkpoint of ``config``'s main training may carry: its repr with
    the adversarial settings and every later field group at its defaults left out. It stays
    the same when a field is added at its default (and to ``LATER_FIELDS``), so it can name a
    kept checkpoint across versions."""
    return min(_config_keys(main_training_config(config)), key=len)


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _scheduler(optimizer: torch.optim.Optimizer, config: GoLConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.train_steps)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    raise ValueError(f"schedule must be cosine or constant, got {config.schedule!r}")


@torch.no_grad()
def validation_loss(model: ImaginationNet, seq: torch.Tensor, kind: str = "mse") -> float:
    """Prediction loss of the k-th state on fixed sequences (N, k + 1, H, W)."""
    hidden = model.hidden_states(seq[:, :1])
    return _prediction_loss(model, hidden[-1], seq[:, -1:], kind).item()


def _save_checkpoint(
    path, config, model, optimizer, scheduler, data, step, began, result, best
) -> None:
    keys = list(result.history[0]) if result.history else []
    rows = [[row[k] for k in keys] for row in result.history]
    state = {
        "config": repr(main_training_config(config)),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data_rng": data.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "seconds": time.perf_counter() - began,
        "history_keys": keys,
        "history": torch.tensor(rows, dtype=torch.float64),
        **{f"best_{k}": v for k, v in best.items()},
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def decoded_fakes(probabilities: torch.Tensor, kind: str) -> torch.Tensor:
    """What the discriminator sees of decoded states (N, 1, H, W): the sigmoid outputs
    ("soft"), or the boards the metric scores, thresholded at 0.5 ("binary"), with the sigmoid's
    gradient passed straight through (Bengio et al. 2013) so the decoder still learns."""
    if kind == "soft":
        return probabilities
    if kind == "binary":
        hard = (probabilities > 0.5).to(probabilities.dtype)
        return probabilities + (hard - probabilities).detach()
    raise ValueError(f"adversarial fakes must be one of {ADVERSARIAL_FAKES}, got {kind!r}")


def real_states(seq: torch.Tensor, kind: str, data: torch.Generator) -> torch.Tensor:
    """The discriminator's real batch from sequences (N, k + 1, H, W): one state index drawn for
    the batch, from all of them ("all") or from 1..k ("evolved"); (N, H, W)."""
    if kind not in ADVERSARIAL_REALS:
        raise ValueError(f"adversarial reals must be one of {ADVERSARIAL_REALS}, got {kind!r}")
    first = 1 if kind == "evolved" else 0
    return seq[:, int(torch.randint(first, seq.shape[1], (1,), generator=data).item())]


def train_adversarial_decoder(
    model: ImaginationNet, config: GoLConfig, data: torch.Generator
) -> None:
    """Section 2.3: a discriminator learns real GoL states vs decoded intermediate hidden
    states; the decoder alone (encoder and RNN frozen) learns to fool it, keeping the prediction
    and autoencoder losses. Non-saturating GAN loss, ``config.adversarial_weight`` relative to
    the others. Real states are binary; soft fakes (``adversarial_fakes="soft"``) let the
    discriminator win on softness alone, binary ones make it judge the boards' structure. The
    real states are drawn from the whole sequence (``adversarial_reals="all"``) or from the
    states after at least one rule step ("evolved"): a random start board is a GoL state that
    a half-decoded intermediate resembles, an evolved one has the rule's structure."""
    discriminator = Discriminator()
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    g_opt = torch.optim.Adam(model.decoder.parameters(), lr=1e-3, betas=(0.5, 0.999))
    boards = config.boards()
    model.encoder.requires_grad_(False)
    model.cells.requires_grad_(False)
    try:
        for _ in range(config.adversarial_steps):
            seq = boards.sample(config.batch, data)
            with torch.no_grad():
                hidden = model.hidden_states(seq[:, :1])
            intermediate = torch.cat(hidden[1:-1], dim=0)
            real = real_states(seq, config.adversarial_reals, data)
            fake = decoded_fakes(model.decode(intermediate), config.adversarial_fakes)
            d_real = discriminator(real[:, None])
            d_fake = discriminator(fake.detach())
            d_loss = F.binary_cross_entropy_with_logits(
                d_real, torch.ones_like(d_real)
            ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            g_fool = discriminator(fake)
            gan = F.binary_cross_entropy_with_logits(g_fool, torch.ones_like(g_fool))
            prediction, autoencoder = _losses(model, hidden, seq, config)
            loss = prediction + config.adversarial_weight * gan + autoencoder
            g_opt.zero_grad(set_to_none=True)
            loss.backward()
            g_opt.step()
    finally:
        model.requires_grad_(True)


@torch.no_grad()
def evaluate_gol(
    model: ImaginationNet, config: GoLConfig, sequences: int = 10_000, seed: int = 12345
) -> dict[str, float]:
    """The paper's metric (mean over ``sequences`` fresh sequences, section 3.1), the same
    metric for a trivial model that imagines empty boards (the floor: dead boards match it),
    and the final-state accuracy: pixel accuracy and the share of boards predicted exactly."""
    generator = torch.Generator().manual_seed(seed)
    boards = config.boards()
    metric, dead, pixel, exact, total = 0.0, 0.0, 0.0, 0.0, 0
    for start in range(0, sequences, 1000):
        seq = boards.sample(min(1000, sequences - start), generator)
        decoded = model.imagine(seq[:, :1])
        metric += imagination_metric(decoded[:, 1:-1], seq).sum().item()
        dead += imagination_metric(torch.zeros_like(decoded[:, 1:-1]), seq).sum().item()
        correct = (decoded[:, -1] > 0.5).float() == seq[:, -1]
        pixel += correct.float().mean(dim=(1, 2)).sum().item()
        exact += correct.flatten(1).all(dim=1).float().sum().item()
        total += len(seq)
    return {
        "metric": metric / total,
        "all_dead_metric": dead / total,
        "final_pixel_accuracy": pixel / total,
        "final_exact": exact / total,
        "sequences": total,
    }


def config_dict(config: GoLConfig) -> dict[str, Any]:
    return dataclasses.asdict(config) | {"rnn_steps": config.rnn_steps}
