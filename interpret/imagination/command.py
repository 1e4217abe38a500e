"""Decode what a recurrent network imagines (Wichers, Tao, Volpato, Barez, *Visualizing Neural
Network Imagination*, 2024).

The Game of Life benchmark trains convolutional encoder-RNN-decoder models to predict the k-th
state of random boards, applies the decoder to the intermediate hidden states and scores them
with the paper's metric (threshold 0.5, 95% pixel match, half credit for a repeated match,
divided by min(n, m - 2)), averaged over fresh sequences, for ``--runs`` seeds:

    python -m interpret imagine --gol --steps 3 --out reports/gol3
    python -m interpret imagine --gol --steps 3 --no-autoencoder --runs 3 --out reports/gol3-noae

Training checkpoints sit beside the report (``.NAME.runK.pt``) until it is written, so an
interrupted command resumes where it stopped.

For a World Models run directory MODEL, decodes what its MDN-RNN predicts for the next K
frames (``--steps``/``--horizon`` K, default 10) beside the real frames, the error per step
ahead, and a dream (see ``interpret.imagination.world_model_report``):

    python -m interpret imagine runs/car --steps 10 --dream-steps 50 --out reports/car-imagine
    python -m interpret imagine runs/car --temperature 1.0 --random-actions --out reports/car-t1
"""

from __future__ import annotations

import argparse
import html
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from interpret.core.errors import InterpretError
from interpret.core.report import page, png_data_uri, write_report
from interpret.imagination.game_of_life import imagination_metric
from interpret.imagination.gol_diagnostics import gol_diagnostics
from interpret.imagination.gol_imaginer import (
    ADVERSARIAL_FAKES,
    CELL_OUTPUTS,
    CODEC_KERNELS,
    GoLConfig,
    config_dict,
    evaluate_gol,
    linear_probe_accuracy,
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="World Models run directory")
    parser.add_argument("--gol", action="store_true", help="run the Game of Life benchmark")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--steps",
        "--horizon",
        dest="steps",
        type=int,
        help="GoL timesteps k (default 3); for MODEL: steps ahead K (default 10)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        help="MODEL: sample M at this temperature "
        "(0: the likeliest component's mean; default: the mixture mean)",
    )
    parser.add_argument("--episodes", type=int, default=1, help="MODEL: episodes to play")
    parser.add_argument("--max-steps", type=int, default=200, help="MODEL: steps per episode")
    parser.add_argument("--dream-steps", type=int, default=30, help="MODEL: dream length N")
    parser.add_argument(
        "--dream-actions",
        choices=("controller", "recorded"),
        default="controller",
        help="MODEL: who acts in the dream (default: the controller)",
    )
    parser.add_argument(
        "--random-actions", action="store_true", help="MODEL: play random actions, not C"
    )
    parser.add_argument("--model-steps", type=int, help="RNN timesteps (default: --steps)")
    parser.add_argument("--no-autoencoder", action="store_true", help="no autoencoder loss")
    parser.add_argument("--no-rnn", action="store_true", help="separate weights per timestep")
    parser.add_argument(
        "--adversarial-steps", type=int, default=500, help="decoder GAN steps (0: none)"
    )
    parser.add_argument(
        "--adversarial-weight",
        type=float,
        default=GoLConfig.adversarial_weight,
        help="the GAN loss's weight in the decoder's adversarial phase (0.1)",
    )
    parser.add_argument(
        "--adversarial-fakes",
        choices=ADVERSARIAL_FAKES,
        default=GoLConfig.adversarial_fakes,
        help="what the discriminator sees of decoded states: soft sigmoid outputs, or binary "
        "boards thresholded at 0.5 (gradient passed straight through)",
    )
    parser.add_argument("--train-steps", type=int, default=GoLConfig.train_steps)
    parser.add_argument("--lr", type=float, default=GoLConfig.lr, help="Adam learning rate")
    parser.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default=GoLConfig.schedule,
        help="learning rate schedule (cosine: decays to 0 over --train-steps)",
    )
    parser.add_argument(
        "--clip", type=float, default=GoLConfig.clip, help="gradient norm clip (0: none)"
    )
    parser.add_argument(
        "--linear-cell-output",
        action="store_true",
        help="no ReLU after the RNN cell's last convolution",
    )
    parser.add_argument(
        "--cell-output",
        choices=sorted(CELL_OUTPUTS),
        default=GoLConfig.cell_output,
        help="the RNN cell's output activation (tanh, sigmoid: saturating)",
    )
    parser.add_argument(
        "--single-conv-cell",
        action="store_true",
        help="one 3x3 convolution per RNN step (not 3x3, ReLU, 1x1)",
    )
    parser.add_argument(
        "--codec-kernel",
        type=int,
        choices=CODEC_KERNELS,
        default=GoLConfig.codec_kernel,
        help="kernel of the encoder's and the decoder's convolution",
    )
    parser.add_argument(
        "--diagnostic-sequences",
        type=int,
        default=400,
        help="sequences the diagnostics' refits and probes are fitted on",
    )
    parser.add_argument(
        "--weight-decay", type=float, default=0.0, help="AdamW weight decay (0: plain Adam)"
    )
    parser.add_argument(
        "--loss",
        choices=("bce", "mse"),
        default=GoLConfig.loss,
        help="prediction loss on the k-th state (the paper does not name it)",
    )
    parser.add_argument(
        "--keep-last",
        action="store_true",
        help="end on the last weights, not those with the lowest validation loss",
    )
    parser.add_argument("--board", type=int, default=GoLConfig.board, help="board side, cells")
    parser.add_argument("--channels", type=int, default=GoLConfig.channels)
    parser.add_argument("--warmup", type=int, default=0, help="rule steps before the first state")
    parser.add_argument("--runs", type=int, default=1, help="training runs (seeds)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    parser.add_argument("--sequences", type=int, default=10_000, help="sequences per evaluation")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 suits these small nets)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _validate(args: argparse.Namespace) -> None:
    if not args.gol:
        raise InterpretError(
            "nothing to imagine: give MODEL (a World Models run) or --gol (the Game of Life)"
        )
    model_steps = args.model_steps if args.model_steps is not None else args.steps
    if args.steps < 2 or model_steps < 2:
        raise InterpretError(
            "--steps and --model-steps must be >= 2 (the metric needs intermediate states)"
        )
    if args.linear_cell_output and args.cell_output != "relu":
        raise InterpretError("--linear-cell-output and --cell-output exclude each other")
    if args.diagnostic_sequences < 2:
        raise InterpretError("--diagnostic-sequences must be at least 2 (half fit, half test)")
    for name in ("train_steps", "board", "channels", "runs", "sequences", "lr"):
        if getattr(args, name) <= 0:
            raise InterpretError(f"--{name.replace('_', '-')} must be positive")
    if args.board < 3:
        raise InterpretError("--board must be at least 3 cells")
    settings = (args.adversarial_steps, args.adversarial_weight, args.warmup, args.threads)
    if min(*settings, args.clip, args.weight_decay) < 0:
        raise InterpretError(
            "--adversarial-steps, --adversarial-weight, --warmup, --threads, --clip and "
            "--weight-decay must be >= 0"
        )


def kept_on_interrupt(args: argparse.Namespace) -> str | None:
    """What an interrupted Game of Life run leaves: its training checkpoints, for resuming."""
    out = Path(args.out)
    kept = sorted(out.parent.glob(f".{out.name}.run*.pt")) if args.model is None else []
    if not kept:
        return None
    return (
        f"kept {len(kept)} training checkpoint(s) beside {out} ({kept[0].name}, ...); the same "
        "command resumes from them"
    )


def run(args: argparse.Namespace) -> Path:
    if args.model is not None:
        from interpret.imagination import world_model_report as wm

        args.steps = wm.DEFAULT_HORIZON if args.steps is None else args.steps
        return wm.imagine_world_model(args)
    args.steps = 3 if args.steps is None else args.steps
    _validate(args)
    if args.threads:
        torch.set_num_threads(args.threads)  # 0: torch's default
    configs = [
        GoLConfig(
            steps=args.steps,
            model_steps=args.model_steps,
            autoencoder=not args.no_autoencoder,
            rnn=not args.no_rnn,
            adversarial_steps=args.adversarial_steps,
            adversarial_weight=args.adversarial_weight,
            adversarial_fakes=args.adversarial_fakes,
            channels=args.channels,
            board=args.board,
            warmup=args.warmup,
            train_steps=args.train_steps,
            lr=args.lr,
            schedule=args.schedule,
            clip=args.clip,
            weight_decay=args.weight_decay,
            linear_cell_output=args.linear_cell_output,
            cell_output=args.cell_output,
            single_conv=args.single_conv_cell,
            codec_kernel=args.codec_kernel,
            loss=args.loss,
            keep_best=not args.keep_last,
            seed=args.seed + i,
        )
        for i in range(args.runs)
    ]
    out = Path(args.out)
    runs, files, examples = [], {}, None
    checkpoints = [out.parent / f".{out.name}.run{i}.pt" for i in range(len(configs))]
    for i, (config, checkpoint) in enumerate(zip(configs, checkpoints, strict=True)):
        bar = tqdm(
            total=config.train_steps,
            desc=f"run {i + 1}/{len(configs)}",
            disable=args.no_progress,
            leave=False,
        )
        trained = train_gol(config, checkpoint, progress=_advance(bar))
        bar.close()
        row = _evaluate_run(trained, args.sequences, args.diagnostic_sequences)
        runs.append(row)
        buffer = io.BytesIO()
        torch.save(trained.model.state_dict(), buffer)
        files[f"model_run{i}.pt"] = buffer.getvalue()
        if examples is None:
            examples = _examples(trained.model, config)
    summary = _summary(configs[0], runs, args)
    arrays = dict(examples or {})
    index = write_report(
        out, _html(summary, runs, examples), summary, arrays, files, replace=args.force
    )
    for checkpoint in checkpoints:
        checkpoint.unlink(missing_ok=True)
    return index


def _advance(bar: tqdm) -> Callable[[int, int], None]:
    """A ``train_gol`` progress callback that moves ``bar`` to the steps done."""

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return update


def _evaluate_run(trained, sequences: int, diagnostic_sequences: int = 400) -> dict[str, Any]:
    model, config = trained.model, trained.config
    started = time.perf_counter()
    row: dict[str, Any] = {
        "seed": config.seed,
        "train_seconds": round(trained.seconds, 1),
        "weights_from_step": trained.best_step if config.keep_best else config.train_steps,
    }
    if trained.decoder_before_adversarial is not None:
        adversarial = {k: v.clone() for k, v in model.decoder.state_dict().items()}
        model.decoder.load_state_dict(trained.decoder_before_adversarial)
        before = evaluate_gol(model, config, sequences)
        model.decoder.load_state_dict(adversarial)
        after = evaluate_gol(model, config, sequences)
        row |= {
            "metric_without_adversarial": before["metric"],
            "metric_with_adversarial": after["metric"],
            "metric": max(before["metric"], after["metric"]),
            "final_pixel_accuracy": before["final_pixel_accuracy"],
            "final_exact": before["final_exact"],
            "all_dead_metric": before["all_dead_metric"],
        }
    else:
        result = evaluate_gol(model, config, sequences)
        row |= {
            "metric_without_adversarial": result["metric"],
            "metric_with_adversarial": None,
            "metric": result["metric"],
            "final_pixel_accuracy": result["final_pixel_accuracy"],
            "final_exact": result["final_exact"],
            "all_dead_metric": result["all_dead_metric"],
        }
    row["meets_accuracy_criterion"] = row["final_pixel_accuracy"] >= ACCURACY_CRITERION
    # [i][j]: GoL state j read from hidden state i by a fitted 1x1 logistic probe (diagnostic)
    row["linear_probe_accuracy"] = linear_probe_accuracy(model, config)
    row["diagnostics"] = _diagnostics(trained, diagnostic_sequences, min(sequences, 2000))
    row["first_step_98"] = _first_steps(trained.history, 0.98)
    row["history"] = trained.history
    row["eval_seconds"] = round(time.perf_counter() - started, 1)
    return row


def _diagnostics(trained, fit_sequences: int, test_sequences: int) -> dict[str, Any]:
    """``gol_diagnostics`` of the decoder as the main training left it (before any
    adversarial phase, whose decoder is put back afterwards)."""
    model = trained.model
    if trained.decoder_before_adversarial is None:
        return gol_diagnostics(model, trained.config, fit_sequences, test_sequences).as_dict()
    adversarial = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    model.decoder.load_state_dict(trained.decoder_before_adversarial)
    try:
        return gol_diagnostics(model, trained.config, fit_sequences, test_sequences).as_dict()
    finally:
        model.decoder.load_state_dict(adversarial)


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


def _summary(config: GoLConfig, runs: list[dict[str, Any]], args) -> dict[str, Any]:
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
        "config": config_dict(config) | {"seed": args.seed},
        "runs": len(runs),
        "sequences_per_run": args.sequences,
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


def _board_image(board: np.ndarray, scale: int = 8) -> str:
    """(H, W) in [0, 1] -> data URI; alive is dark."""
    pixels = (255 - np.clip(board, 0, 1) * 255).astype(np.uint8)
    return png_data_uri(np.kron(pixels, np.ones((scale, scale), dtype=np.uint8)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _html(summary: dict[str, Any], runs: list[dict[str, Any]], examples) -> str:
    config = summary["config"]
    paper = summary["paper"]
    paper_text = (
        f"paper ({paper['runs']} runs): <b>{paper['metric']:.2f}</b>"
        if paper
        else "no row of the paper's tables has these settings"
    )
    parts = [
        "<h1>Game of Life imagination benchmark</h1>",
        f"<p>{config['steps']} GoL timesteps, {config['rnn_steps']} model timesteps, "
        f"autoencoder loss: {config['autoencoder']}, RNN (shared weights): {config['rnn']}, "
        f"adversarial decoder steps: {config['adversarial_steps']}, RNN cell: "
        f"{'one 3x3 conv' if config['single_conv'] else '3x3 conv, ReLU, 1x1 conv'}, then "
        f"{'nothing' if config['linear_cell_output'] else config['cell_output']}; "
        f"{config['codec_kernel']}x{config['codec_kernel']} encoder and decoder, "
        f"{config['channels']} "
        f"channels, {config['board']}x{config['board']} torus, {config['train_steps']} "
        f"training steps of {config['batch']} boards ({config['loss']} prediction loss, Adam "
        f"lr {config['lr']:g} with {config['schedule']} schedule, gradient clip "
        f"{config['clip']:g}; weights kept: "
        f"{'lowest validation loss' if config['keep_best'] else 'last'}).</p>",
        f"<p>Mean metric over {summary['runs']} run(s), {summary['sequences_per_run']} "
        f"sequences each: <b>{_fmt(summary['mean_metric'])}</b> (the max of with/without "
        f"adversarial training per run, as in the paper); runs with final-state pixel accuracy "
        f">= 99%: {summary['runs_meeting_accuracy_criterion']}, their mean "
        f"{_fmt(summary['mean_metric_meeting_criterion'])}. {paper_text}. A model that "
        f"imagines empty boards scores {_fmt(summary['all_dead_metric'])}.</p>",
        "<h2>Runs</h2><table><tr><th>seed</th><th>metric</th><th>without adversarial</th>"
        "<th>with adversarial</th><th>final pixel acc.</th><th>final exact</th>"
        "<th>first step with 98% per decoded state</th><th>weights from step</th>"
        "<th>train s</th></tr>",
    ]
    for r in runs:
        firsts = ", ".join(f"{k[3:]}: {v}" for k, v in r["first_step_98"].items())
        parts.append(
            f"<tr><td>{r['seed']}</td><td>{_fmt(r['metric'])}</td>"
            f"<td>{_fmt(r['metric_without_adversarial'])}</td>"
            f"<td>{_fmt(r['metric_with_adversarial'])}</td>"
            f"<td>{_fmt(r['final_pixel_accuracy'])}</td><td>{_fmt(r['final_exact'])}</td>"
            f"<td>{html.escape(firsts)}</td><td>{r['weights_from_step']}</td>"
            f"<td>{r['train_seconds']}</td></tr>"
        )
    parts.append("</table>")
    parts.append(_over_runs_table(summary["over_runs"]))
    parts.append(_diagnostics_html(runs[0]["diagnostics"]))
    parts.append(_probe_table(runs[0]["linear_probe_accuracy"]))
    parts.append(_curves(runs[0]["history"]))
    parts.append(
        "<h2>Examples (first run)</h2><p class='muted'>Top row: the GoL states s_1..s_m. "
        "Bottom row: the decoder applied to every hidden state (encoder output, RNN steps); "
        "the metric scores the middle ones, thresholded at 0.5.</p><table>"
    )
    states, decoded = examples["example_states"], examples["example_decoded"]
    for k in range(len(states)):
        top = "".join(f"<img class='pixel' src='{_board_image(s)}'> " for s in states[k])
        bottom = "".join(f"<img class='pixel' src='{_board_image(d)}'> " for d in decoded[k])
        parts.append(
            f"<tr><td>{top}<br>{bottom}</td>"
            f"<td>metric {examples['example_metric'][k]:.2f}</td></tr>"
        )
    parts.append("</table>")
    return page("Game of Life imagination", "\n".join(parts))


def _over_runs_table(groups: dict[str, dict[str, Any]]) -> str:
    """Mean +- std (n) of each aggregate over all runs and over the kept ones."""

    def cell(stats: dict[str, Any]) -> str:
        if not stats["n"]:
            return "<td>-</td>"
        return f"<td>{stats['mean']:.3f} &plusmn; {stats['std']:.3f} ({stats['n']})</td>"

    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>{cell(groups['all'][name])}{cell(groups['kept'][name])}"
        "</tr>"
        for name in OVER_RUNS
    )
    return (
        "<h2>Over runs</h2><p class='muted'>Mean &plusmn; std (runs) over all runs and over "
        "the runs with final-state pixel accuracy >= 99% (the paper averages only those). "
        "The refit and probe rows use the decoder before any adversarial phase.</p>"
        f"<table><tr><th></th><th>all ({groups['all']['runs']})</th>"
        f"<th>kept ({groups['kept']['runs']})</th></tr>{rows}</table>"
    )


def _step_table(columns: dict[str, list[float | None]]) -> str:
    """A table with one row per step i (h_i against s_i) and one column per entry."""
    n = len(next(iter(columns.values())))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in columns)
    rows = "".join(
        f"<tr><th>h_{i} / s_{i + 1}</th>"
        + "".join(f"<td>{_fmt(v[i])}</td>" for v in columns.values())
        + "</tr>"
        for i in range(n)
    )
    return f"<table><tr><th>step</th>{head}</tr>{rows}</table>"


def _diagnostics_html(diagnostics: dict[str, Any]) -> str:
    """The first run's decoder logits, decoder refits and shared probe, per step."""
    logits, refit, probe = (
        diagnostics["decoder_logits"],
        diagnostics["decoder_refit"],
        diagnostics["shared_probe"],
    )
    return (
        "<h2>Diagnostics (first run)</h2><p class='muted'>Step i pairs hidden state h_i with "
        "GoL state s_(i+1) (s_1: the input). All use the decoder as the main training left it. "
        "Decoder logits on live and dead cells; accuracy of the decoder's own threshold (0) "
        "and ROC AUC (1: some threshold separates them).</p>"
        + _step_table(logits)
        + "<p class='muted'>The decoder's bias, and bias and scale, refitted per step on "
        "training boards (sigmoid(z + b), sigmoid(a z + b)) and scored on fresh ones. Metric "
        f"raw {_fmt(refit['metric_raw'])}, bias refit {_fmt(refit['metric_bias'])}, bias and "
        f"scale refit {_fmt(refit['metric_bias_scale'])}: high after a refit means the code "
        "drifts in offset or scale; low after it means the state is not where the decoder "
        "looks.</p>"
        + _step_table({k: v for k, v in refit.items() if not k.startswith("metric")})
        + "<p class='muted'>One 1x1 logistic probe fitted across all steps against a probe per "
        f"step (held-out pixel accuracy); metric with the shared probe as the decoder: "
        f"{_fmt(probe['metric'])}.</p>"
        + _step_table({k: v for k, v in probe.items() if k != "metric"})
    )


def _probe_table(table: list[list[float]]) -> str:
    """Held-out pixel accuracy of 1x1 logistic probes: rows hidden states, columns GoL states."""
    head = "".join(f"<th>s_{j + 1}</th>" for j in range(len(table[0])))
    rows = "".join(
        f"<tr><th>h_{i}</th>" + "".join(f"<td>{a:.3f}</td>" for a in row) + "</tr>"
        for i, row in enumerate(table)
    )
    return (
        "<h2>Linear probes (first run)</h2><p class='muted'>Pixel accuracy of a logistic "
        "regression fitted to read GoL state s_j from hidden state h_i (h_0: the encoder's "
        "output), tested on held-out boards. A state readable here but not by the model's own "
        "decoder is represented in another direction than the one the decoder reads.</p>"
        f"<table><tr><th></th>{head}</tr>{rows}</table>"
    )


def _curves(history: list[dict[str, Any]]) -> str:
    """SVG chart: pixel accuracy of each decoded hidden state against its GoL state."""
    if not history:
        return ""
    keys = [k for k in history[0] if k.startswith("acc")]
    width, height, last = 600, 220, history[-1]["step"]
    colors = ["#888", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    lines = []
    for i, key in enumerate(keys):
        points = " ".join(
            f"{40 + (width - 60) * h['step'] / last:.1f},"
            f"{height - 20 - (height - 40) * max(h[key] - 0.5, 0) / 0.5:.1f}"
            for h in history
        )
        color = colors[i % len(colors)]
        lines.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{points}'/>")
        lines.append(f"<text x='{width - 15}' y='{20 + 14 * i}' fill='{color}'>{key[3:]}</text>")
    return (
        "<h2>Training (first run)</h2><p class='muted'>Pixel accuracy (0.5 to 1) of decoded "
        f"hidden state i against GoL state i, over {last} training steps.</p>"
        f"<svg width='{width}' height='{height}' style='border:1px solid #ccc'>"
        + "".join(lines)
        + "</svg>"
    )
