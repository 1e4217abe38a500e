"""``python -m interpret imagine MODEL``: what a World Models run's MDN-RNN predicts, decoded.

Plays the run's env (its config's env id) with the run's controller (or random actions),
records the frames, and decodes M's predictions of the next K frames from every step (open
loop after the first, with the recorded actions) beside the real frames; the error per step
ahead (MSE per pixel, frames in [0, 1]) against V's own reconstruction error (the floor) and
the error of repeating the last real frame; and a dream of N steps from a real start.
"""

from __future__ import annotations

import argparse
import html
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from interpret.core.errors import InterpretError
from interpret.core.report import page, png_data_uri, write_report
from interpret.imagination.world_model import dream, k_step_predictions

DEFAULT_HORIZON = 10
SHOWN_ROWS = 4


def validate(args: argparse.Namespace) -> None:
    from world_model.rundir import is_world_model_run

    if args.gol:
        raise InterpretError("give either MODEL (a World Models run) or --gol, not both")
    if not is_world_model_run(args.model):
        raise InterpretError(
            f"{args.model}: not a World Models run directory (no config.json with "
            '"algo": "worldmodel"); imagine MODEL decodes a World Models agent\'s MDN-RNN'
        )
    for name in ("steps", "episodes", "max_steps", "dream_steps"):
        if getattr(args, name) <= 0:
            raise InterpretError(f"--{name.replace('_', '-')} must be positive")
    if args.temperature is not None and args.temperature < 0:
        raise InterpretError("--temperature must be >= 0 (omit it for the mixture mean)")


def play(view, episodes: int, max_steps: int, seed: int, random_actions: bool) -> list[dict]:
    """Episodes of the run's env: {"frames": (T+1, 64, 64, 3) uint8, "actions": (T, A) in M's
    encoding (float32), "return": float}."""
    from world_model.rundir import make_eval_env

    ctrl = view.module.controller
    out = []
    for i in range(episodes):
        env = make_eval_env(view.source, seed + i)
        env.action_space.seed(seed + i)
        frame, _ = env.reset(seed=seed + i)
        view.reset()
        frames, actions, total = [frame], [], 0.0
        for _ in range(max_steps):
            act = view.act(frame[None])  # advances C's recurrent state even when unused
            if random_actions:
                act = np.asarray(env.action_space.sample())[None]
            action = torch.as_tensor(act)
            actions.append(ctrl.encode_action(action)[0].numpy().astype(np.float32))
            frame, reward, terminated, truncated, _ = env.step(ctrl.env_action(action[0]))
            frames.append(frame)
            total += float(reward)
            if terminated or truncated:
                break
        env.close()
        out.append({"frames": np.stack(frames), "actions": np.stack(actions), "return": total})
    return out


def imagine_world_model(args: argparse.Namespace) -> Path:
    import agents

    validate(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    view = agents.load(args.model)
    model: Any = view.module  # a WorldModel: this verb runs on World Models runs only
    horizon = args.steps
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    episodes = play(view, args.episodes, args.max_steps, args.seed, args.random_actions)
    played = time.perf_counter()
    errors, recon, copy, lengths = [], [], [], []
    shown_rows: list[tuple[int, np.ndarray]] = []
    bar = tqdm(episodes, desc="predict", disable=args.no_progress, leave=False)
    for i, ep in enumerate(bar):
        steps = len(ep["actions"])
        lengths.append(steps)
        if steps < horizon:
            continue
        starts = steps - horizon + 1
        show = (
            tuple(sorted({int(s) for s in np.linspace(0, starts - 1, SHOWN_ROWS)}))
            if i == 0
            else ()
        )
        result = k_step_predictions(
            model, ep["frames"], torch.as_tensor(ep["actions"]), horizon, args.temperature,
            generator, show,
        )  # fmt: skip
        errors.append(result.error)
        recon.append(result.reconstruction_error)
        copy.append(result.copy_error)
        shown_rows = shown_rows or [(s, result.shown[s]) for s in show]
    if not errors:
        raise InterpretError(
            f"every episode ended before {horizon} steps (lengths {lengths}); lower --steps"
        )
    first = episodes[0]
    dream_start = 0
    dream_steps = args.dream_steps
    if args.dream_actions == "recorded":
        dream_steps = min(dream_steps, len(first["actions"]) - dream_start)
    dreamed, dream_actions = dream(
        model, first["frames"], torch.as_tensor(first["actions"]), dream_start, dream_steps,
        args.dream_actions == "controller", args.temperature, generator,
    )  # fmt: skip
    error = np.concatenate(errors)
    summary = _summary(args, view, episodes, error, np.concatenate(recon), np.concatenate(copy))
    summary["dream"] = {
        "start": dream_start,
        "steps": len(dreamed),
        "actions": args.dream_actions,
    }
    summary["seconds"] = {
        "play": round(played - started, 2),
        "total": round(time.perf_counter() - started, 2),
    }
    real_next = first["frames"][dream_start + 1 : dream_start + 1 + len(dreamed)]
    arrays = {
        "frames": first["frames"],
        "actions": first["actions"],
        "error": error,
        "reconstruction_error": np.concatenate(recon),
        "copy_error": np.concatenate(copy),
        "shown_starts": np.array([s for s, _ in shown_rows], np.int64),
        "shown_predictions": np.stack([p for _, p in shown_rows]),
        "dream": dreamed,
        "dream_actions": dream_actions,
    }
    body = _html(summary, first["frames"], shown_rows, dreamed, real_next)
    body = page("World Models imagination", body)
    return write_report(args.out, body, summary, arrays, replace=args.force)


def _summary(args, view, episodes, error, recon, copy) -> dict[str, Any]:
    return {
        "benchmark": "world_models_imagination",
        "model": str(args.model),
        "env_id": view.config["env_id"],
        "controller": view.metadata.get("controller"),
        "controller_input": view.module.controller.inputs,
        "actions": "random" if args.random_actions else "controller",
        "episodes": len(episodes),
        "episode_lengths": [len(e["actions"]) for e in episodes],
        "returns": [round(e["return"], 3) for e in episodes],
        "seed": args.seed,
        "horizon": args.steps,
        "prediction": "mixture mean"
        if args.temperature is None
        else f"sample at temperature {args.temperature}",
        "temperature": args.temperature,
        "starts": len(error),
        "mse_per_step": [float(v) for v in error.mean(0)],
        "mse_per_step_std": [float(v) for v in error.std(0)],
        "copy_last_frame_mse_per_step": [float(v) for v in copy.mean(0)],
        "vae_reconstruction_mse": float(recon.mean()),
    }


def _strip(frames: np.ndarray) -> str:
    """(n, 64, 64, 3) uint8 -> one data URI of the frames side by side, 2 px apart."""
    gap = np.full((64, 2, 3), 255, np.uint8)
    parts = [p for f in frames for p in (f, gap)][:-1]
    return png_data_uri(np.concatenate(parts, axis=1))


def _curve(summary: dict[str, Any]) -> str:
    """SVG: MSE per step ahead of M's prediction, copying the last frame, and V's floor."""
    series = {
        "M's prediction": (summary["mse_per_step"], "#1f77b4"),
        "repeat last real frame": (summary["copy_last_frame_mse_per_step"], "#ff7f0e"),
        "V's reconstruction (floor)": (
            [summary["vae_reconstruction_mse"]] * len(summary["mse_per_step"]),
            "#888",
        ),
    }
    top = max(max(v) for v, _ in series.values()) or 1.0
    width, height, n = 600, 240, len(summary["mse_per_step"])
    parts = []
    for i, (name, (values, color)) in enumerate(series.items()):
        points = " ".join(
            f"{50 + (width - 70) * (k / max(n - 1, 1)):.1f},"
            f"{height - 25 - (height - 50) * v / top:.1f}"
            for k, v in enumerate(values)
        )
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{points}'/>")
        parts.append(f"<text x='60' y='{16 + 14 * i}' fill='{color}'>{html.escape(name)}</text>")
    parts.append(f"<text x='2' y='{height - 25}'>0</text><text x='2' y='30'>{top:.4f}</text>")
    parts.append(f"<text x='50' y='{height - 5}'>k = 1</text>")
    parts.append(f"<text x='{width - 60}' y='{height - 5}'>k = {n}</text>")
    svg = f"<svg width='{width}' height='{height}' style='border:1px solid #ccc'>"
    return svg + "".join(parts) + "</svg>"


def _html(summary, frames, shown_rows, dreamed, real_next) -> str:
    mse = summary["mse_per_step"]
    table = "".join(
        f"<tr><td>{k + 1}</td><td>{m:.5f}</td><td>{c:.5f}</td></tr>"
        for k, (m, c) in enumerate(zip(mse, summary["copy_last_frame_mse_per_step"], strict=True))
    )
    parts = [
        "<h1>World Models imagination</h1>",
        f"<p>{html.escape(summary['model'])} on {html.escape(summary['env_id'])}: "
        f"{summary['episodes']} episode(s) of {summary['episode_lengths']} steps, actions from "
        f"{summary['actions']}; M's next z: {html.escape(summary['prediction'])}, decoded by V. "
        f"From each of {summary['starts']} starts t, M has read the real frames up to t and "
        f"predicts frames t+1 .. t+{summary['horizon']} open loop (its own predictions fed "
        "back, with the recorded actions).</p>",
        "<h2>Error per step ahead</h2><p class='muted'>Mean squared error per pixel (frames in "
        "[0, 1]) of the decoded prediction against the real frame; V's reconstruction error "
        f"is {summary['vae_reconstruction_mse']:.5f}.</p>",
        _curve(summary),
        "<table><tr><th>k</th><th>M's prediction</th><th>repeat last frame</th></tr>"
        f"{table}</table>",
        "<h2>Real next frames (top) and decoded predictions (bottom)</h2>"
        "<p class='muted'>First episode; the first frame of each row is the real frame t.</p>",
    ]
    for start, predicted in shown_rows:
        horizon = len(predicted)
        real = frames[start : start + horizon + 1]
        blank = np.full((1, 64, 64, 3), 255, np.uint8)
        parts.append(
            f"<p>t = {start}<br><img class='pixel' src='{_strip(real)}'><br>"
            f"<img class='pixel' src='{_strip(np.concatenate([blank, predicted]))}'></p>"
        )
    dream_info = summary["dream"]
    reads = "[z, h]" if summary.get("controller_input", "zh") == "zh" else "z"
    actor = f"C({reads})" if dream_info["actions"] == "controller" else "recording"
    parts.append(
        f"<h2>Dream</h2><p class='muted'>{dream_info['steps']} steps from real frame "
        f"{dream_info['start']} of the first episode, M's predictions fed back, actions from "
        f"the {dream_info['actions']} ({actor}). Top: the dream; bottom: what the real "
        "episode showed.</p>"
        f"<p><img class='pixel' src='{_strip(dreamed)}'><br>"
        f"<img class='pixel' src='{_strip(real_next)}'></p>"
    )
    return "\n".join(parts)
