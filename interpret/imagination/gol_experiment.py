"""The Game of Life benchmark behind ``python -m interpret imagine --gol`` (Wichers, Tao,
Volpato, Barez, *Visualizing Neural Network Imagination*, 2024): train one model per config,
score each (the metric with and without the adversarial decoder, probes, diagnostics) and
aggregate the runs beside the paper's tables.

    result = run_gol(configs, checkpoints, sequences=10_000, diagnostic_sequences=400)
    summary = gol_summary(configs[0], result.runs, sequences=10_000)
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from interpret.imagination.game_of_life import imagination_metric
from interpret.imagination.gol_diagnostics import gol_diagnostics, linear_probe_accuracy
from interpret.imagination.gol_imaginer import (
    GoLConfig,
    ImaginationNet,
    TrainedGoL,
    config_dict,
    evaluate_gol,
    train_gol,
)

# Table 1 and 2 of the paper (mean metric; number of runs), for the report's comparison.
PAPER_TABLE = [
    {"steps": 2, "model_steps": 2, "autoencoder": True, "rnn": True, "runs": 6, "metric": 1.00},
    {"steps": 3, "model_steps": 3, "autoencoder": True, "rnn": True, "runs": 42, "metric": 0.99},
    {"steps": 4, "model_steps": 4, "autoencoder": True, "rnn": True, "runs": 33, "metric": 0.93},
    {"steps": 3, "model_steps": 3, "autoencoder": False, "rnn": True, "runs": 22, "metric": 0.56},
    {"steps": 3, "model_steps": 3, "autoencoder": True, "rnn": False, "runs": 20, "metric": 0.40},
    {"steps": 2, "model_steps": 3, "autoencoder": True, "rnn": True, "runs": 16, "metric": 0.73},
    {"steps": 3, "model_steps": 2, "autoencoder": True, "rnn": True, "runs": 22, "metric": 0.74},
]
ACCURACY_CRITERION = 0.99  # the paper keeps runs with 99% training accuracy on the final state


@dataclass
class GoLExperiment:
    """``runs``: one row per run (metrics, diagnostics, training history); ``models``:
    {"model_runI.pt": the run's state dict}; ``examples``: the first run's example boards,
    "example_states" (n, k, H, W) uint8, "example_decoded" (n, m + 1, H, W) float32,
    "example_metric" (n,)."""

    runs: list[dict[str, Any]]
    models: dict[str, bytes]
    examples: dict[str, np.ndarray]


def run_gol(
    configs: list[GoLConfig],
    checkpoints: list[Path],
    sequences: int,
    diagnostic_sequences: int,
    progress: bool = True,
) -> GoLExperiment:
    """Train and score one model per config, each resumable from its checkpoint."""
    result = GoLExperiment([], {}, {})
    for i, (config, checkpoint) in enumerate(zip(configs, checkpoints, strict=True)):
        bar = tqdm(
            total=config.train_steps,
            desc=f"run {i + 1}/{len(configs)}",
            disable=not progress,
            leave=False,
        )
        trained = train_gol(config, checkpoint, progress=_advance(bar))
        bar.close()
        result.runs.append(_evaluate_run(trained, sequences, diagnostic_sequences))
        buffer = io.BytesIO()
        torch.save(trained.model.state_dict(), buffer)
        result.models[f"model_run{i}.pt"] = buffer.getvalue()
        if i == 0:
            result.examples = _examples(trained.model, config)
    return result


def _advance(bar: tqdm) -> Callable[[int, int], None]:
    """A ``train_gol`` progress callback that moves ``bar`` to the steps done."""

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return update


@contextmanager
def _main_decoder(trained: TrainedGoL) -> Iterator[ImaginationNet]:
    """The model with its decoder as the main training left it (before any adversarial phase,
    whose decoder is put back afterwards)."""
    model = trained.model
    if trained.decoder_before_adversarial is None:
        yield model
        return
    adversarial = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    model.decoder.load_state_dict(trained.decoder_before_adversarial)
    try:
        yield model
    finally:
        model.decoder.load_state_dict(adversarial)


def _evaluate_run(trained: TrainedGoL, sequences: int, diagnostic_sequences: int) -> dict[str, Any]:
    model, config = trained.model, trained.config
    started = time.perf_counter()
    row: dict[str, Any] = {
        "seed": config.seed,
        "train_seconds": round(trained.seconds, 1),
        "weights_from_step": trained.best_step if config.keep_best else config.train_steps,
    }
    with _main_decoder(trained):
        before = evaluate_gol(model, config, sequences)
    after = None
    if trained.decoder_before_adversarial is not None:
        after = evaluate_gol(model, config, sequences)
    row |= {
        "metric_without_adversarial": before["metric"],
        "metric_with_adversarial": after["metric"] if after else None,
        "metric": max(before["metric"], after["metric"]) if after else before["metric"],
        "final_pixel_accuracy": before["final_pixel_accuracy"],
        "final_exact": before["final_exact"],
        "all_dead_metric": before["all_dead_metric"],
    }
    row["meets_accuracy_criterion"] = row["final_pixel_accuracy"] >= ACCURACY_CRITERION
    # [i][j]: GoL state j read from hidden state i by a fitted 1x1 logistic probe (diagnostic)
    row["linear_probe_accuracy"] = linear_probe_accuracy(model, config)
    with _main_decoder(trained):
        diagnostics = gol_diagnostics(model, config, diagnostic_sequences, min(sequences, 2000))
    row["diagnostics"] = diagnostics.as_dict()
    row["first_step_98"] = _first_steps(trained.history, 0.98)
    row["history"] = trained.history
    row["eval_seconds"] = round(time.perf_counter() - started, 1)
    return row


def _first_steps(history: list[dict[str, Any]], level: float) -> dict[str, int | None]:
    """Training step at which each decoded state first reached ``level`` pixel accuracy."""
    keys = [k for k in (history[0] if history else {}) if k.startswith("acc")]
    return {k: next((int(h["step"]) for h in history if h[k] >= level), None) for k in keys}


@torch.no_grad()
def _examples(model, config: GoLConfig, n: int = 8) -> dict[str, np.ndarray]:
    seq = config.boards().sample(n, torch.Generator().manual_seed(777))
    decoded = model.imagine(seq[:, :1])
    scores = imagination_metric(decoded[:, 1:-1], seq)
    return {
        "example_states": seq.numpy().astype(np.uint8),
        "example_decoded": decoded.numpy().astype(np.float32),
        "example_metric": scores.numpy(),
    }


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


# Per-run numbers aggregated over runs: name -> where it sits in a run's row
OVER_RUNS: dict[str, tuple[str, ...]] = {
    "metric": ("metric",),
    "metric_without_adversarial": ("metric_without_adversarial",),
    "metric_with_adversarial": ("metric_with_adversarial",),
    "final_pixel_accuracy": ("final_pixel_accuracy",),
    "metric_decoder_raw": ("diagnostics", "decoder_refit", "metric_raw"),
    "metric_bias_refit": ("diagnostics", "decoder_refit", "metric_bias"),
    "metric_bias_scale_refit": ("diagnostics", "decoder_refit", "metric_bias_scale"),
    "metric_shared_probe": ("diagnostics", "shared_probe", "metric"),
}


def _lookup(row: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        row = row.get(key) if isinstance(row, dict) else None  # type: ignore[assignment]
    return row


def _stats(values: list[float]) -> dict[str, Any]:
    """n, mean, population std, min, max of ``values`` (None where empty)."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def over_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Aggregates of ``OVER_RUNS`` over "all" runs and over the "kept" runs that reached 99%
    final-state accuracy (the paper averages only those): group -> name -> stats."""
    groups = {"all": runs, "kept": [r for r in runs if r["meets_accuracy_criterion"]]}
    return {
        group: {"runs": len(rows)}
        | {
            name: _stats([v for r in rows if (v := _lookup(r, path)) is not None])
            for name, path in OVER_RUNS.items()
        }
        for group, rows in groups.items()
    }


def gol_summary(config: GoLConfig, runs: list[dict[str, Any]], sequences: int) -> dict[str, Any]:
    """``summary.json`` of the runs of ``config`` (the first run's config), each scored on
    ``sequences`` sequences."""
    kept = [r for r in runs if r["meets_accuracy_criterion"]]
    paper = [
        p
        for p in PAPER_TABLE
        if (p["steps"], p["model_steps"], p["autoencoder"], p["rnn"])
        == (config.steps, config.rnn_steps, config.autoencoder, config.rnn)
    ]
    without = [r["metric_without_adversarial"] for r in runs]
    with_adv = [
        r["metric_with_adversarial"] for r in runs if r["metric_with_adversarial"] is not None
    ]
    return {
        "benchmark": "game_of_life",
        "config": config_dict(config),
        "runs": len(runs),
        "sequences_per_run": sequences,
        "mean_metric": _mean([r["metric"] for r in runs]),
        "mean_metric_without_adversarial": _mean(without),
        "mean_metric_with_adversarial": _mean(with_adv),
        "runs_meeting_accuracy_criterion": len(kept),
        "mean_metric_meeting_criterion": _mean([r["metric"] for r in kept]),
        "all_dead_metric": _mean([r["all_dead_metric"] for r in runs]),
        "mean_final_pixel_accuracy": _mean([r["final_pixel_accuracy"] for r in runs]),
        "paper": paper[0] if paper else None,
        "over_runs": over_runs(runs),
        "per_run": [{k: v for k, v in r.items() if k != "history"} for r in runs],
    }
