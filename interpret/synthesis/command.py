"""Synthesize states of interest for a trained agent (Rupprecht et al., 2020).

Records frames of the agent acting epsilon-greedily, computes its guided-backprop saliency on
each, trains (or reuses a cached) generator with a saliency-weighted reconstruction loss, an
agent-perception loss and a KL term, then optimizes latent vectors so that the agent's outputs
on the generated states minimize a target:

  T+      states the agent values highly whatever it does
  T-      states where even the best action is bad
  T+-     states where one action is much better than another
  action:K                 states where the agent prefers action K
  package.module:function  any callable on the agent's outputs dict -> energy (N,)

World Models agents (run directories of ``train.py worldmodel``) work through their view: the
generator makes V's 64x64 frames, targets act on the controller's outputs (T+/T- need a value,
which it lacks), and goggles carry its recurrent state across steps.

The report shows each state with the agent's outputs on it, the nearest recorded frame, the
pixel-space activation-maximization baseline, the "generator goggles" table (the agent playing
while seeing reconstructions, for the full generator, the reconstruction-only variant and a
plain VAE) and the loss curves.

  python -m interpret synthesize runs/coinrun --target T- --samples 16 --out reports/coinrun-tminus
  python -m interpret synthesize MODEL --env atari:Pong --target T- --samples 16 --out reports/pong
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from agents.precision import add_precision_argument
from interpret.core.errors import InterpretError
from interpret.synthesis.training import VARIANTS, TrainSettings


def _cache_dir(args: argparse.Namespace) -> Path:
    """--cache-dir, or $RLINTERP_CACHE/synthesis (default ~/.cache/rlinterp/synthesis)."""
    if args.cache_dir:
        return Path(args.cache_dir)
    root = os.environ.get("RLINTERP_CACHE") or Path.home() / ".cache" / "rlinterp"
    return Path(root) / "synthesis"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 zip or zoo:NAME")
    parser.add_argument("--env", help="env id (default: the one the model was trained on)")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE")
    parser.add_argument("--target", default="T-", help="T+, T-, T+-, action:K or module:func")
    parser.add_argument("--samples", type=int, default=16, help="states to synthesize")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    g = parser.add_argument_group("frames")
    g.add_argument("--frames", type=int, default=4096, help="recorded frames to train on")
    g.add_argument("--epsilon", type=float, default=0.1, help="random-action chance")
    g.add_argument("--saliency-kernel", type=int, default=5, help="averaging filter size")
    g = parser.add_argument_group("generator")
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--latent-dim", type=int, default=64)
    g.add_argument("--kl-weight", type=float, default=1.0)
    g.add_argument("--perception-weight", type=float, default=1000.0)
    g.add_argument(
        "--variants",
        default="full,recon,vae",
        help="generators to train; goggles compares them (full is always trained)",
    )
    g.add_argument("--cache-dir", type=Path, default=None, help="default: ~/.cache/rlinterp")
    g = parser.add_argument_group("latent optimization")
    g.add_argument("--steps", type=int, default=200, help="Adam steps")
    g.add_argument("--restarts", type=int, default=2, help="random starts per sample")
    g.add_argument("--latent-lr", type=float, default=0.05)
    g.add_argument("--reg-weight", type=float, default=0.05, help="lambda of ||z||^2/2")
    g.add_argument("--beta", type=float, default=1.0, help="sharpness of soft max/min")
    g.add_argument("--tv-weight", type=float, default=1.0, help="pixel baseline's TV weight")
    g = parser.add_argument_group("evaluation")
    g.add_argument(
        "--goggles-episodes", type=int, default=32, help="episodes per goggles row (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    add_precision_argument(parser, "the agent's forward passes; the generator stays float32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")


def _check(args: argparse.Namespace) -> list[str]:
    positive = ("samples", "frames", "epochs", "batch_size", "latent_dim", "restarts")
    for name in positive:
        if getattr(args, name) < 1:
            raise InterpretError(f"--{name.replace('_', '-')} must be positive")
    if args.steps < 0 or args.goggles_episodes < 0:
        raise InterpretError("--steps and --goggles-episodes must be non-negative")
    if not 0.0 <= args.epsilon <= 1.0:
        raise InterpretError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    if args.saliency_kernel < 1 or args.saliency_kernel % 2 == 0:
        raise InterpretError("--saliency-kernel must be a positive odd number")
    if args.beta <= 0:
        raise InterpretError("--beta must be positive")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise InterpretError(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    return ["full", *[v for v in variants if v != "full"]]


def run(args: argparse.Namespace) -> Path:
    import agents
    import envs
    from agents.loading import resolve_model_path
    from agents.outputs import OutputError, check_writable_dir
    from interpret.core.model_env import check_fits
    from interpret.synthesis import pipeline
    from interpret.synthesis.frames import frame_space
    from interpret.synthesis.goggles import goggles_table
    from interpret.synthesis.report import write_synthesis_report
    from interpret.synthesis.targets import resolve_target

    variants = _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = Path(str(args.model))
    world_model = model_path.is_dir() and not (model_path / "model.zip").is_file()
    if not (world_model and (model_path / "config.json").is_file()):
        model_path = resolve_model_path(args.model)
    view = agents.load(args.model, device=args.device, precision=args.precision)
    recorded = dict(view.metadata)  # a World Models run's env is in its metadata too
    env_id = args.env or recorded.get("env_id")
    if not env_id:
        raise InterpretError("the model does not record its env; pass --env")
    if args.env_kwargs is None:
        options = dict(recorded.get("env_kwargs") or {}) if not args.env else {}
    else:
        options = envs.parse_options(args.env_kwargs)
    check_fits(view, env_id, options)  # a bad env id or a model of another game: refused here
    space = frame_space(view, env_id)
    target = resolve_target(args.target, view, beta=args.beta)
    _probe_target(view, space, target, args.target)  # e.g. action:99 of 15, before training
    cache = _cache_dir(args)
    try:
        check_writable_dir(cache, "--cache-dir")
    except OutputError as err:
        raise InterpretError(str(err)) from None
    progress = not args.no_progress
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
    timings: dict[str, float] = {}

    data, frames_key = pipeline.cached_frames(
        view,
        model_path,
        env_id,
        space,
        options,
        cache,
        n_frames=args.frames,
        epsilon=args.epsilon,
        seed=args.seed,
        kernel=args.saliency_kernel,
        progress=progress,
        timings=timings,
    )
    base = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_weight=args.kl_weight,
        perception_weight=args.perception_weight,
        latent_dim=args.latent_dim,
        seed=args.seed,
    )
    generators, histories = pipeline.cached_generators(
        view, space, data, base, variants, cache, frames_key, progress=progress, timings=timings
    )
    reconstructions = pipeline.reconstructions(space, data, generators)
    result = pipeline.synthesize(
        view,
        space,
        data,
        generators["full"],
        target,
        args.samples,
        restarts=args.restarts,
        steps=args.steps,
        latent_lr=args.latent_lr,
        reg_weight=args.reg_weight,
        tv_weight=args.tv_weight,
        seed=args.seed,
        timings=timings,
    )
    goggles = goggles_table(
        view,
        space,
        env_id,
        options,
        generators,
        args.goggles_episodes,
        seed=args.seed,
        progress=progress,
        timings=timings,
    )
    summary = {
        "model": str(model_path),
        "env_id": env_id,
        "env_options": options,
        "target": args.target,
        "algo": view.algo,
        "precision": args.precision,
        "frame_space": asdict(space),
        "frames": len(data),
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "train_settings": {v: base.variant(v).__dict__ for v in variants},
        "cache": {"frames": frames_key, "dir": str(cache)},
        "timings": timings,
        "loss_history": histories,
        "goggles": goggles,
        **result["summary"],
    }
    return write_synthesis_report(
        Path(args.out), summary, result, data, space, histories, goggles, reconstructions,
        replace=args.force,
    )  # fmt: skip


def kept_on_interrupt(args: argparse.Namespace) -> str | None:
    """An interrupted run keeps what its cache holds (frames, generators, checkpoints)."""
    cache = _cache_dir(args)
    if not (cache.is_dir() and any(cache.iterdir())):
        return None
    return f"no report written; the cache {cache} keeps finished frames and generator checkpoints"


def _probe_target(view: Any, space: Any, target: Any, spec: str) -> None:
    """The target on the agent's outputs for one blank frame: a target the agent cannot have
    (an action it lacks, a value it has not) is refused before any recording or training."""
    from interpret.synthesis.latent import agent_outputs

    blank = torch.zeros(1, space.channels, space.height, space.width, device=view.device)
    try:
        with torch.no_grad():
            energy = target(agent_outputs(view, space, blank))
    except InterpretError:
        raise
    except Exception as err:  # a user's module:function target may raise anything
        first = (str(err).strip().splitlines() or [""])[0]
        raise InterpretError(f"target {spec!r} fails on the agent's outputs: {first}") from None
    if not isinstance(energy, torch.Tensor) or energy.numel() != 1:
        raise InterpretError(f"target {spec!r} must return one energy per state, shape (N,)")
