"""Attribution interface: integrated gradients from a hidden layer, NMF features, trajectories.

Plays the agent to sample observations, attributes its value (or another output) to a hidden
layer's activations with integrated gradients, factorizes the attributions into k NMF features,
then records a few trajectories and writes a static report (``index.html``, self-contained)
with the attribution overlaid on each observation, dataset examples of each feature, and a
timeline of value, advantage, reward and action with bookmarks to the most surprising steps.

example:
  python -m interpret attribute runs/demo --env procgen:coinrun \\
      --env-kwargs distribution_mode=easy paint_vel_info=true \\
      --layer 2b --features 8 --out reports/demo-attribution

Files in the report directory:
  index.html    the interface (opens from disk, no network)
  summary.json  settings, the k directions (channel space) with their labels, completeness
                errors, bookmarks, timings
  arrays.npz    directions (k, C); per trajectory t<i>_*: observations, values, advantages,
                rewards, actions, dones, level_seeds, feature maps positive/negative (T, k, H, W)
                and residual (T, H, W) as float16; with --save-attributions also the raw
                attributions (T, C, H, W)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.precision import add_precision_argument
from interpret.core.errors import InterpretError, check_counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 .zip or zoo:NAME")
    parser.add_argument("--env", help="env id (default: the one the model was trained on)")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE")
    parser.add_argument(
        "--layer",
        help="hidden layer (default: the model's: 2b, an SB3 CNN's last conv, an MLP's input)",
    )
    parser.add_argument(
        "--target",
        help="output to attribute: value, policy (log-probability of the greedy action), "
        "logit:K, actions:K,L,... (log-probability of picking any of them; names work too: "
        "actions:UP is every action that presses UP), q:K, max-q (default: value/max-q)",
    )
    parser.add_argument("--features", type=int, default=8, help="NMF features (k)")
    parser.add_argument("--nmf-on", choices=("attribution", "activation"), default="attribution")
    parser.add_argument("--steps", type=int, default=10, help="integration steps (alphas)")
    parser.add_argument("--sample-envs", type=int, default=16, help="envs for the NMF sample")
    parser.add_argument("--sample-steps", type=int, default=128, help="steps per sample env")
    parser.add_argument("--sample-every", type=int, default=2, help="keep every Nth step")
    parser.add_argument("--trajectories", type=int, default=3, help="trajectories shown")
    parser.add_argument("--trajectory-steps", type=int, default=256)
    parser.add_argument("--smooth", type=float, default=1.0, help="Gaussian sigma (layer px)")
    parser.add_argument("--batch-size", type=int, default=64)
    add_precision_argument(parser, "the integral stays float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-attributions", action="store_true")
    parser.add_argument(
        "--no-object-labels", action="store_true",
        help="CoinRun: do not label the features by the game objects their attribution falls on",
    )  # fmt: skip
    parser.add_argument("--trust-pickle", action="store_true", help="load with SB3's unpickler")
    parser.add_argument("--out", default="reports/attribution", help="report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> Path:
    import agents
    import envs
    from envs.action_names import action_names, discrete_actions
    from interpret.attribution.integrated_gradients import (
        HiddenLayerIntegratedGradients,
        expand_action_names,
        target_output,
    )
    from interpret.attribution.nmf import fit_nmf
    from interpret.attribution.object_labels import label_by_objects
    from interpret.attribution.report import render_report
    from interpret.core.model_env import resolve_env
    from interpret.core.report import write_files
    from interpret.core.trajectory import record_trajectories

    positive = ("features", "steps", "sample_envs", "sample_steps", "sample_every")
    check_counts(args, (*positive, "trajectories", "trajectory_steps", "batch_size"), ("smooth",))
    torch.manual_seed(args.seed)
    view = agents.load(args.model, trust_pickle=args.trust_pickle)
    env_id, env_options = resolve_env(view, args.env, args.env_kwargs)
    names = action_names(env_id, discrete_actions(view.action_space))
    args.target = expand_action_names(args.target, names)  # "actions:UP" -> "actions:2,5,8"
    output = target_output(view, args.target)  # separate trunks: the layer of its trunk
    layer = view.layer_for(args.layer, output) if args.layer else view.default_layer(output)
    ig = HiddenLayerIntegratedGradients(
        view, layer, target=args.target, n_steps=args.steps, precision=args.precision
    )
    channels = _probe(ig, view)
    if args.features > channels:
        raise InterpretError(
            f"--features {args.features}: layer {layer!r} has {channels} channels, so at most "
            f"{channels} NMF features"
        )
    timings: dict[str, float] = {}

    # the game labels the features where its renderer draws object masks: CoinRun, at a
    # convolutional layer (feature maps with a spatial extent)
    label_objects = (
        not args.no_object_labels
        and envs.parse_env_id(env_id) == ("procgen", "coinrun")
        and len(view.layer_shape(layer)) == 3
    )
    clock = time.perf_counter()
    sample = record_trajectories(
        view, env_id, n_envs=args.sample_envs, n_steps=args.sample_steps,
        seed=args.seed + 1000, record_states=label_objects, **env_options,
    )  # fmt: skip
    sample_obs = np.concatenate([t.observations[:: args.sample_every] for t in sample])
    _check_observations(sample_obs)
    timings["record_sample_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    sample_attr = ig.attribute(sample_obs, batch_size=args.batch_size)
    timings["attribute_sample_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    values = sample_attr.attributions if args.nmf_on == "attribution" else sample_attr.activations
    features = fit_nmf(values, layer, min(args.features, values.shape[1]), source=args.nmf_on)
    timings["nmf_s"] = time.perf_counter() - clock
    object_labels = None
    if label_objects:
        clock = time.perf_counter()
        states = [s for t in sample for s in (t.states or [])[:: args.sample_every]]
        object_labels = label_by_objects(features, sample_attr.attributions, states)
        features.labels = list(object_labels.labels)
        timings["object_labels_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    shown = record_trajectories(
        view, env_id, n_envs=args.trajectories, n_steps=args.trajectory_steps, seed=args.seed,
        **env_options,
    )  # fmt: skip
    timings["record_trajectories_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    shown_attr = [ig.attribute(t.observations, batch_size=args.batch_size) for t in shown]
    shown_maps = [features.maps(a.attributions) for a in shown_attr]
    timings["attribute_trajectories_s"] = time.perf_counter() - clock

    settings: dict[str, Any] = {
        "model": str(view.source),
        "env_id": env_id,
        "env_options": env_options,
        "layer": layer,
        "target": ig.target_name,
        "n_steps": args.steps,
        "alphas": ig.alphas,
        "baseline": "zero",
        "precision": args.precision,
        "features": features.k,
        "nmf_on": args.nmf_on,
        "sample_observations": len(sample_obs),
        "smooth_sigma": args.smooth,
        "seed": args.seed,
    }
    files = render_report(
        settings=settings,
        features=features,
        sample_observations=sample_obs,
        sample_attribution=sample_attr,
        trajectories=shown,
        attributions=shown_attr,
        maps=shown_maps,
        action_names=names,
        save_attributions=args.save_attributions,
        object_labels=object_labels,
        timings=timings,
    )
    return write_files(args.out, files, replace=args.force)


def _probe(ig: Any, view: Any) -> int:
    """Reject a layer the report cannot show or a target the policy lacks, before any playing;
    returns the layer's channel count (a dense layer's width: D channels at one position)."""
    from interpret.attribution.integrated_gradients import target_function

    obs_shape = tuple(view.observation_space.shape)
    with torch.no_grad():
        activations = ig.lower(view.preprocess(np.zeros((1, *obs_shape), dtype=np.uint8)))
        # the page places features on the image; vector observations take dense layers too
        if activations.dim() != 4 and (activations.dim() != 2 or len(obs_shape) != 1):
            raise InterpretError(
                f"layer {ig.layer!r} has shape {tuple(activations.shape[1:])}; NMF features of "
                "image observations need a convolutional layer (C, H, W), of vector observations "
                "a convolutional or dense one (the library's HiddenLayerIntegratedGradients "
                "attributes any layer)"
            )
        target_function(view, ig.target, ig.upper(activations))
    return int(activations.shape[1])


def _check_observations(observations: np.ndarray) -> None:
    if observations.ndim == 2:  # vectors (D,), shown as bar charts
        return
    if observations.ndim != 4 or observations.shape[-1] not in (1, 3, 4):
        raise InterpretError(
            f"observations of shape {observations.shape[1:]} are neither images (H, W, C) nor "
            "vectors (D,); the attribution interface shows only those"
        )
