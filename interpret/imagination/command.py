"""Decode what a recurrent network imagines (Wichers, Tao, Volpato, Barez, *Visualizing Neural
Network Imagination*, 2024).

The Game of Life benchmark trains convolutional encoder-RNN-decoder models to predict the k-th
state of random boards, applies the decoder to the intermediate hidden states and scores them
with the paper's metric (threshold 0.5, 95% pixel match, half credit for a repeated match,
divided by min(n, m - 2)), averaged over fresh sequences, for ``--runs`` seeds:

    python -m interpret imagine --gol --steps 3 --out reports/gol3
    python -m interpret imagine --gol --steps 3 --no-autoencoder --runs 3 --out reports/gol3-noae

Training checkpoints sit beside the report (``.NAME.runK.pt``) until it is written, so an
interrupted command resumes where it stopped. With ``--checkpoints DIR`` they are kept in DIR,
named by the settings the main training depends on, and a later command whose runs differ only
in the adversarial phase (or the evaluation) starts from the trained models:

    python -m interpret imagine --gol --runs 5 --checkpoints reports/gol-ckpt --out reports/a
    python -m interpret imagine --gol --runs 5 --checkpoints reports/gol-ckpt \
        --adversarial-steps 2000 --adversarial-fakes binary --out reports/b

For a World Models run directory MODEL, decodes what its MDN-RNN predicts for the next K
frames (``--steps``/``--horizon`` K, default 10) beside the real frames, the error per step
ahead, and a dream (see ``interpret.imagination.world_model_report``):

    python -m interpret imagine runs/car --steps 10 --dream-steps 50 --out reports/car-imagine
    python -m interpret imagine runs/car --temperature 1.0 --random-actions --out reports/car-t1
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

import torch

from interpret.core.errors import InterpretError
from interpret.core.report import write_report
from interpret.imagination.gol_experiment import gol_summary, run_gol
from interpret.imagination.gol_imaginer import (
    ADVERSARIAL_FAKES,
    ADVERSARIAL_REALS,
    CELL_OUTPUTS,
    CODEC_KERNELS,
    GoLConfig,
    checkpoint_key,
)
from interpret.imagination.gol_report import gol_page


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
    parser.add_argument(
        "--adversarial-reals",
        choices=ADVERSARIAL_REALS,
        default=GoLConfig.adversarial_reals,
        help="the real states the discriminator sees: any state of a sequence, or only those "
        "after at least one rule step (not the random start board)",
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
    parser.add_argument(
        "--checkpoints",
        type=Path,
        help="keep training checkpoints in this folder, reused by runs that differ only in the "
        "adversarial phase (default: beside the report, removed once it is written)",
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
    if args.checkpoints is not None and args.checkpoints.exists() and not args.checkpoints.is_dir():
        raise InterpretError(f"--checkpoints {args.checkpoints} is a file, not a folder")
    settings = (args.adversarial_steps, args.adversarial_weight, args.warmup, args.threads)
    if min(*settings, args.clip, args.weight_decay) < 0:
        raise InterpretError(
            "--adversarial-steps, --adversarial-weight, --warmup, --threads, --clip and "
            "--weight-decay must be >= 0"
        )


def kept_on_interrupt(args: argparse.Namespace) -> str | None:
    """What an interrupted Game of Life run leaves: its training checkpoints, for resuming."""
    if args.model is None and args.checkpoints is not None:
        return f"kept the training checkpoints in {args.checkpoints}; the same command resumes"
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
    # the options named like GoLConfig's fields, then the four that are spelt otherwise
    named = {
        f.name: vars(args)[f.name] for f in dataclasses.fields(GoLConfig) if f.name in vars(args)
    }
    config = GoLConfig(
        **named,
        autoencoder=not args.no_autoencoder,
        rnn=not args.no_rnn,
        single_conv=args.single_conv_cell,
        keep_best=not args.keep_last,
    )
    configs = [dataclasses.replace(config, seed=args.seed + i) for i in range(args.runs)]
    out = Path(args.out)
    if args.checkpoints is None:
        checkpoints = [out.parent / f".{out.name}.run{i}.pt" for i in range(len(configs))]
    else:
        args.checkpoints.mkdir(parents=True, exist_ok=True)
        checkpoints = [args.checkpoints / kept_checkpoint_name(c) for c in configs]
    result = run_gol(
        configs, checkpoints, args.sequences, args.diagnostic_sequences, not args.no_progress
    )
    summary = gol_summary(configs[0], result.runs, args.sequences)
    page = gol_page(summary, result.runs, result.examples)
    index = write_report(out, page, summary, result.examples, result.models, replace=args.force)
    if args.checkpoints is None:
        for checkpoint in checkpoints:
            checkpoint.unlink(missing_ok=True)
    return index


def kept_checkpoint_name(config: GoLConfig) -> str:
    """The file name of ``config``'s kept checkpoint: a digest of the settings its main training
    depends on, so every config that trains the same model names the same file."""
    digest = hashlib.sha256(checkpoint_key(config).encode()).hexdigest()
    return f"gol-{digest[:16]}.pt"
