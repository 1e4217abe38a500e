"""Why the shared decoder does or does not read the intermediate states of a Game of Life
imaginer (Wichers, Tao, Volpato, Barez, *Visualizing Neural Network Imagination*, 2024):
diagnostics the paper does not have.

Step i pairs hidden state h_i (h_0: the encoder's output) with GoL state s_i, for every i with
both (i < min(rnn_steps + 1, steps + 1)). Each function takes a trained model and its config,
draws fresh boards from fixed seeds, and returns a dataclass of per-step arrays:

- ``decoder_logits``: the decoder's logits on live and on dead cells, and how well a threshold
  at 0 (the decoder's own) or any threshold (ROC AUC) separates them;
- ``refit_decoder``: the decoder's bias, or bias and scale, refitted per step on training
  boards and scored on fresh ones, with the imagination metric after the refit. A metric near
  1 after the refit but not before means the code drifts in offset or scale across steps; a
  low one after it means the information is not where the decoder looks;
- ``shared_probe``: one 1x1 logistic regression fitted across all steps, per step, beside a
  probe fitted to each step alone, and the metric with the shared probe as the decoder;
- ``gol_diagnostics``: all three, as a JSON-ready dict via ``as_dict``.

    diagnostics = gol_diagnostics(trained.model, trained.config)
    diagnostics.refit.metric_bias_scale, diagnostics.shared_probe.shared_accuracy
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from interpret.imagination.game_of_life import imagination_metric
from interpret.imagination.gol_imaginer import GoLConfig, ImaginationNet

FIT_SEED = 31_337  # boards the refits and probes are fitted on
TEST_SEED = 42_424  # fresh boards they are scored on


def _as_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [None if np.isnan(v) else float(v) for v in value.tolist()]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


class _JSONMixin:
    def as_dict(self) -> dict[str, Any]:
        """Arrays as lists of floats (NaN as None), for summary.json."""
        return {f.name: _as_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _sample(config: GoLConfig, n: int, seed: int) -> torch.Tensor:
    """(n, steps + 1, H, W) 0/1 sequences from a fixed seed."""
    return config.boards().sample(n, torch.Generator().manual_seed(seed))


@torch.no_grad()
def step_logits(model: ImaginationNet, seq: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    """The decoder's logits on every hidden state, each (N, H, W), and the number of steps
    with a GoL state to compare to (min(rnn_steps + 1, m))."""
    hidden = model.hidden_states(seq[:, :1])
    logits = [model.decoder(h)[:, 0] for h in hidden]
    return logits, min(len(logits), seq.shape[1])


@dataclass
class LogitStats(_JSONMixin):
    """Decoder logits on h_i against s_i; every array (n_steps,). ``accuracy_at_zero``: pixel
    accuracy of logit > 0; ``balanced_at_zero``: the mean of its recall on live and on dead
    cells; ``auc``: ROC AUC (1: some threshold separates them; NaN: one class only)."""

    live_mean: np.ndarray
    live_std: np.ndarray
    dead_mean: np.ndarray
    dead_std: np.ndarray
    accuracy_at_zero: np.ndarray
    balanced_at_zero: np.ndarray
    auc: np.ndarray


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else np.nan


def _masked_mean_std(values: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    chosen = values[mask]
    if chosen.numel() == 0:
        return np.nan, np.nan
    return chosen.mean().item(), chosen.std(correction=0).item()


def decoder_logits(
    model: ImaginationNet, config: GoLConfig, sequences: int = 1000, seed: int = TEST_SEED
) -> LogitStats:
    """Statistics of the decoder's logits per step on ``sequences`` fresh sequences."""
    seq = _sample(config, sequences, seed)
    logits, n = step_logits(model, seq)
    rows: dict[str, list[float]] = {f.name: [] for f in dataclasses.fields(LogitStats)}
    for i in range(n):
        z, live = logits[i], seq[:, i] > 0
        for name, mask in (("live", live), ("dead", ~live)):
            mean, std = _masked_mean_std(z, mask)
            rows[f"{name}_mean"].append(mean)
            rows[f"{name}_std"].append(std)
        said = z > 0
        rows["accuracy_at_zero"].append((said == live).float().mean().item())
        recalls = [(said[m] == live[m]).float().mean().item() for m in (live, ~live) if m.any()]
        rows["balanced_at_zero"].append(float(np.mean(recalls)))
        rows["auc"].append(_auc(z.flatten().numpy(), live.flatten().numpy()))
    return LogitStats(**{k: np.array(v, dtype=np.float64) for k, v in rows.items()})


def fit_affine(z: torch.Tensor, y: torch.Tensor, iterations: int = 100) -> tuple[float, float]:
    """(a, b) minimising the cross-entropy of sigmoid(a z + b) against 0/1 targets ``y``: a
    logistic regression on the one feature z; a tiny ridge keeps separable data finite."""
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    z, y = z.flatten().double(), y.flatten().double()
    optimizer = torch.optim.LBFGS(
        [params], max_iter=iterations, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(params[0] * z + params[1], y)
        loss = loss + 1e-6 * (params**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    a, b = params.detach().tolist()
    return a, b


def best_threshold(z: torch.Tensor, y: torch.Tensor, sign: float = 1.0) -> tuple[float, float]:
    """(c, accuracy): the cut c for which "live where sign * z > c" has the highest pixel
    accuracy against 0/1 targets ``y`` (any shape), cuts halfway between distinct values."""
    s = (sign * z).flatten().double()
    order = torch.argsort(s)
    s, live = s[order], (y.flatten()[order] > 0).double()
    n, zero = len(s), torch.zeros(1, dtype=torch.float64)
    # cut before sorted index k: dead below it and live from it on are right
    correct = torch.cat([zero, torch.cumsum(1 - live, 0)]) + (
        live.sum() - torch.cat([zero, torch.cumsum(live, 0)])
    )
    correct[1:n][s[1:] == s[:-1]] = -1.0  # no cut between equal values
    k = int(torch.argmax(correct))
    cut = s[0] - 1 if k == 0 else s[-1] + 1 if k == n else (s[k - 1] + s[k]) / 2
    return float(cut), float(correct[k]) / n


def refit_bias(z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(1, b): the decoder's logit z shifted by the bias b whose 0.5 threshold (z + b > 0) is
    the most accurate on ``y``."""
    cut, _ = best_threshold(z, y)
    return 1.0, -cut


def refit_bias_scale(z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(a, b) for sigmoid(a z + b): |a| from a logistic regression on z, the sign of a and the
    cut -b / a the most accurate on ``y`` (under a 0.5 threshold only the sign of a and the cut
    matter; |a| tells how stretched the code is)."""
    magnitude = max(abs(fit_affine(z, y)[0]), 1e-6)
    fits = [(best_threshold(z, y, sign), sign) for sign in (1.0, -1.0)]
    (cut, _), sign = max(fits, key=lambda fit: fit[0][1])
    return sign * magnitude, -magnitude * cut


@dataclass
class DecoderRefit(_JSONMixin):
    """Per step (n_steps,): the decoder's logits z refitted as sigmoid(z + ``bias_offset``)
    and as sigmoid(``scale`` z + ``offset``) (``refit_bias``, ``refit_bias_scale``); held-out
    pixel accuracy raw and after each refit; and the imagination metric on the fresh boards raw
    and with the refitted intermediate steps (steps without a GoL state keep the raw decoder)."""

    bias_offset: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    accuracy_raw: np.ndarray
    accuracy_bias: np.ndarray
    accuracy_bias_scale: np.ndarray
    metric_raw: float
    metric_bias: float
    metric_bias_scale: float


def _metric(decoded: list[torch.Tensor], seq: torch.Tensor) -> float:
    """Mean imagination metric of decoded probabilities [h_0 .. h_T], each (N, H, W)."""
    stacked = torch.stack(decoded[1:-1], dim=1)
    return imagination_metric(stacked, seq).mean().item()


def refit_decoder(
    model: ImaginationNet,
    config: GoLConfig,
    fit_sequences: int = 400,
    test_sequences: int = 2000,
    fit_seed: int = FIT_SEED,
    test_seed: int = TEST_SEED,
) -> DecoderRefit:
    """Refit only the decoder's bias, and its bias and scale, per step (see ``DecoderRefit``)."""
    fit_seq, test_seq = (
        _sample(config, fit_sequences, fit_seed),
        _sample(config, test_sequences, test_seed),
    )
    fit_logits, n = step_logits(model, fit_seq)
    test_logits, _ = step_logits(model, test_seq)
    biased = [refit_bias(fit_logits[i], fit_seq[:, i]) for i in range(n)]
    scaled = [refit_bias_scale(fit_logits[i], fit_seq[:, i]) for i in range(n)]

    def decoded(params: list[tuple[float, float]]) -> list[torch.Tensor]:
        return [
            torch.sigmoid(params[i][0] * z + params[i][1]) if i < n else torch.sigmoid(z)
            for i, z in enumerate(test_logits)
        ]

    def accuracy(probabilities: list[torch.Tensor]) -> np.ndarray:
        return np.array(
            [
                ((probabilities[i] > 0.5).float() == test_seq[:, i]).float().mean().item()
                for i in range(n)
            ]
        )

    raw, bias, both = decoded([(1.0, 0.0)] * n), decoded(biased), decoded(scaled)
    return DecoderRefit(
        bias_offset=np.array([b for _, b in biased]),
        scale=np.array([a for a, _ in scaled]),
        offset=np.array([b for _, b in scaled]),
        accuracy_raw=accuracy(raw),
        accuracy_bias=accuracy(bias),
        accuracy_bias_scale=accuracy(both),
        metric_raw=_metric(raw, test_seq),
        metric_bias=_metric(bias, test_seq),
        metric_bias_scale=_metric(both, test_seq),
    )


@dataclass
class SharedProbe(_JSONMixin):
    """Per step (n_steps,): held-out pixel accuracy of one 1x1 logistic probe fitted on all
    steps together (``shared_accuracy``) and of a probe fitted to each step alone
    (``per_step_accuracy``); ``metric``: the imagination metric with the shared probe as the
    decoder of the intermediate steps (steps without a GoL state keep the model's decoder)."""

    shared_accuracy: np.ndarray
    per_step_accuracy: np.ndarray
    metric: float


def _pixels(h: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) -> (N * H * W, C) float64 rows, one per pixel."""
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).double().numpy()


def fit_probe(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A logistic regression (scikit-learn) on rows ``x`` (P, C) with 0/1 targets (P,); returns
    rows -> probability of live (P,). Features are divided by one scale (their std), which
    keeps the fit cheap without changing what it can read; a constant target is predicted."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return lambda rows: np.full(len(rows), float(y[0]))
    scale = max(float(x.std()), 1e-6)
    probe = LogisticRegression(max_iter=500).fit(x / scale, y)
    return lambda rows: probe.predict_proba(rows / scale)[:, 1]


def probe_accuracy(
    probe: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray
) -> float:
    """Pixel accuracy of ``probe``'s probabilities on rows ``x`` against 0/1 targets ``y``."""
    return float(((probe(x) > 0.5) == (y > 0)).mean())


@torch.no_grad()
def linear_probe_accuracy(
    model: ImaginationNet, config: GoLConfig, sequences: int = 400, seed: int = 54321
) -> list[list[float]]:
    """A diagnostic beside the metric: is GoL state j linearly readable, pixel by pixel, from
    hidden state i by *some* 1x1 decoder? ``[i][j]``: held-out pixel accuracy of a logistic
    regression (``fit_probe``) fitted on half of ``sequences`` fresh sequences, tested on the
    other half. High where the model's own decoder fails means the state is represented but
    in another direction than the one the shared decoder reads."""
    seq = _sample(config, sequences, seed)
    half = sequences // 2
    table = []
    for h in model.hidden_states(seq[:, :1]):
        features = h.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        train = features[:half].reshape(-1, h.shape[1])
        test = features[half:].reshape(-1, h.shape[1])
        targets = [seq[:, j].flatten(1).numpy() for j in range(seq.shape[1])]
        table.append(
            [
                probe_accuracy(fit_probe(train, y[:half].ravel()), test, y[half:].ravel())
                for y in targets
            ]
        )
    return table


@torch.no_grad()
def shared_probe(
    model: ImaginationNet, config: GoLConfig, sequences: int = 400, seed: int = FIT_SEED
) -> SharedProbe:
    """Fit on the first half of ``sequences`` fresh sequences, score on the second half."""
    if sequences < 2:
        raise ValueError(f"need at least 2 sequences (half fit, half test), got {sequences}")
    seq = _sample(config, sequences, seed)
    half = sequences // 2
    hidden = model.hidden_states(seq[:, :1])
    n = min(len(hidden), seq.shape[1])
    train = [(_pixels(hidden[i][:half]), seq[:half, i].flatten().numpy()) for i in range(n)]
    test = [(_pixels(hidden[i][half:]), seq[half:, i].flatten().numpy()) for i in range(n)]
    shared = fit_probe(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]))
    own = [fit_probe(x, y) for x, y in train]
    test_shape = (len(seq) - half, *seq.shape[2:])
    decoded = [
        torch.from_numpy(shared(_pixels(h[half:])).reshape(test_shape)).float()
        if i < n
        else model.decode(h[half:])[:, 0]
        for i, h in enumerate(hidden)
    ]
    return SharedProbe(
        shared_accuracy=np.array([probe_accuracy(shared, x, y) for x, y in test]),
        per_step_accuracy=np.array(
            [probe_accuracy(p, x, y) for p, (x, y) in zip(own, test, strict=True)]
        ),
        metric=_metric(decoded, seq[half:]),
    )


@dataclass
class GoLDiagnostics:
    """The three diagnostics of one model."""

    logits: LogitStats
    refit: DecoderRefit
    shared_probe: SharedProbe

    def as_dict(self) -> dict[str, Any]:
        return {
            "decoder_logits": self.logits.as_dict(),
            "decoder_refit": self.refit.as_dict(),
            "shared_probe": self.shared_probe.as_dict(),
        }


def gol_diagnostics(
    model: ImaginationNet, config: GoLConfig, fit_sequences: int = 400, test_sequences: int = 2000
) -> GoLDiagnostics:
    """All three diagnostics: ``fit_sequences`` to fit the refits and probes (the probes use
    half of them for testing), ``test_sequences`` fresh ones to score logits and refits."""
    return GoLDiagnostics(
        logits=decoder_logits(model, config, test_sequences),
        refit=refit_decoder(model, config, fit_sequences, test_sequences),
        shared_probe=shared_probe(model, config, fit_sequences),
    )
