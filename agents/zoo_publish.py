"""Publish a finished run as a zoo entry: weights-only model, record, curve, measured scores.

    python -m agents.zoo publish runs/coinrun-ppo zoo/coinrun-ppo --episodes 1000

writes into ``zoo/NAME/``: ``model.zip`` (the run's final model, or ``--checkpoint``'s, with
the optimizer state emptied: it loads in plain ``PPO.load``/``DQN.load`` and through
``agents.load("zoo:NAME")``), ``config.json`` (every piece's command), ``progress.csv`` (up
to the model's step), ``eval.json`` (a fresh evaluation: N unseen Procgen levels or N
episodes, once with sampled and once with greedy actions), ``curve.png`` and a ``README.md``
card with the scores and their 95% intervals, total steps, training time, steps/s and the
machines; curve and card stop at the model's step too.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from agents.curves import plot_curve
from agents.fileio import atomic_path, read_json, write_json
from agents.sb3_zip import read_sb3_zip, write_sb3_zip

OPTIMIZER_MEMBER = "policy.optimizer"
ENTRY_FILES = ("model.zip", "config.json", "progress.csv", "eval.json", "curve.png", "README.md")


class PublishError(ValueError):
    """A run that cannot be published as asked (one line)."""


def model_source(run_dir: Path, checkpoint: Path | None = None) -> Path:
    """The zip to publish: ``checkpoint`` (a path, or a name in the run's checkpoints/), else
    the run's final model.zip, else its latest checkpoint."""
    if checkpoint is not None:
        for candidate in (checkpoint, run_dir / "checkpoints" / checkpoint):
            if candidate.is_file():
                return candidate
        raise PublishError(f"no checkpoint {checkpoint} (nor in {run_dir / 'checkpoints'})")
    if (run_dir / "model.zip").is_file():
        return run_dir / "model.zip"
    latest = run_dir / "checkpoints" / "latest.json"
    if latest.is_file():
        return run_dir / "checkpoints" / read_json(latest)["model"]
    raise PublishError(f"{run_dir} has neither model.zip nor a checkpoint")


def write_weights_only(src: Path, dst: Path) -> None:
    """``src`` copied to ``dst`` with an empty optimizer state (its param groups, which SB3's
    loader needs, are kept): a few hundred bytes instead of two copies of every weight."""
    archive = read_sb3_zip(src)
    replaced = {}
    if OPTIMIZER_MEMBER in archive.state_dicts:
        groups = archive.state_dicts[OPTIMIZER_MEMBER]["param_groups"]
        replaced[OPTIMIZER_MEMBER] = {"state": {}, "param_groups": groups}
    write_sb3_zip(src, dst, replaced, extra={**archive.extra, "published_from": src.name})


def copy_progress(src: Path, dst: Path, steps: int) -> None:
    """``src`` (a progress.csv) up to the published model's ``steps``, each line as written."""
    with open(src, newline="") as f:
        lines = f.readlines()
    rows = zip(lines[1:], csv.DictReader(lines), strict=True)
    kept = [line for line, row in rows if float(row["time/total_timesteps"]) <= steps]
    with atomic_path(dst, ".csv") as tmp, open(tmp, "w", newline="") as f:
        f.writelines(lines[:1] + kept)


MODES = {"sampled": False, "greedy": True}  # evaluation name -> deterministic


def _relative(path: Path, run_dir: Path) -> str:
    """``path`` as the run directory names it (``model.zip``, ``checkpoints/...``)."""
    try:
        return str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path)


def evaluate_entry(
    model: Path, episodes: int, parallel: int = 32, modes: tuple[str, ...] = tuple(MODES)
) -> dict[str, Any]:
    """Scores of the model at ``model`` with sampled and with greedy actions (``modes``): on
    ``episodes`` unseen levels (Procgen, each played once, ``parallel`` at a time) or
    ``episodes`` episodes (seed 0)."""
    import agents
    import envs
    from agents.evaluate import evaluate_episodes, evaluate_procgen_levels, procgen_eval_levels

    view = agents.load(model)
    env_id = view.metadata["env_id"]
    options = dict(view.metadata.get("env_kwargs") or {})
    out: dict[str, Any] = {"env_id": env_id, "env_options": options, "seed": 0}
    started = time.monotonic()
    procgen = envs.parse_env_id(env_id)[0] == "procgen"
    seeds = procgen_eval_levels(options, episodes, 0)["test"] if procgen else []
    if procgen:  # sampled outcomes depend on how many levels share the sampler's stream
        out["levels"] = f"{min(seeds)}..{max(seeds)} (unseen in training)"
        out["parallel"] = parallel
    for name in modes:
        greedy = MODES[name]
        if procgen:
            results = evaluate_procgen_levels(
                view, env_id, seeds, parallel, deterministic=greedy, seed=0, **options
            )
        else:
            results = evaluate_episodes(
                view, env_id, episodes, deterministic=greedy, seed=0, **options
            )
        out[name] = results.summary()
    out["eval_seconds"] = round(time.monotonic() - started, 1)
    return out


def score_text(summary: dict[str, Any]) -> str:
    """One evaluation summary as text with its 95% interval."""
    if "completion_rate" in summary:
        lo, hi = summary["completion_ci95"]
        return (
            f"{summary['completed']}/{summary['episodes']} levels completed = "
            f"{100 * summary['completion_rate']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%)"
        )
    half = 1.96 * summary["return_stderr"]
    return (
        f"mean score {summary['mean_return']:+.2f} (95% CI {summary['mean_return'] - half:+.2f} "
        f"to {summary['mean_return'] + half:+.2f}) over {summary['episodes']} episodes"
    )


def entry_card(
    name: str, config: dict[str, Any], progress: Path, evaluation: dict, note: str = ""
) -> str:
    """The README.md of a zoo entry; ``note`` (Markdown) goes under "Notes" at the end."""
    with open(progress, newline="") as f:
        rows = list(csv.DictReader(f))
    last = rows[-1] if rows else {}
    steps = int(float(last.get("time/total_timesteps") or 0))
    seconds = float(last.get("time/time_elapsed") or 0)
    pieces = config.get("pieces") or []
    machines = sorted({p.get("machine", "?") for p in pieces}) or ["?"]
    lines = [
        f"# zoo:{name}: {config['algo'].upper()} `{config['arch']}` on `{config['env_id']}`",
        "",
        "Trained by this project's `train.py` only (every piece's command is in `config.json`);",
        "`model.zip` holds the weights without optimizer state.",
        "",
        "```python",
        "import agents",
        "",
        f'view = agents.load("zoo:{name}")',
        "```",
        "",
        f"- env options: `{json.dumps(config.get('env_kwargs', {}))}`; preset "
        f"`{config.get('preset')}`; seed {config.get('seed')}",
        f"- total steps: {steps:,}; training time {seconds / 3600:.1f} h "
        f"({steps / max(seconds, 1):.0f} steps/s); {len(pieces) or 1} piece(s)",
        f"- machine(s): {'; '.join(machines)}",
        "",
        f"Evaluation (`eval.json`, {evaluation.get('levels') or 'episodes with seed 0'}):",
        "",
        f"- sampled actions: {score_text(evaluation['sampled'])}",
        f"- greedy actions: {score_text(evaluation['greedy'])}",
        "",
        "![learning curve](curve.png)",
    ]
    if note.strip():
        lines += ["", "## Notes", "", note.strip()]
    return "\n".join(lines) + "\n"


def publish(
    run_dir: Path,
    dst: Path,
    *,
    episodes: int,
    checkpoint: Path | None = None,
    parallel: int = 32,
    force: bool = False,
    note: str = "",
) -> list[Path]:
    """Write the zoo entry ``dst`` from ``run_dir`` (see the module docstring); returns the
    files written. An existing entry is replaced only with ``force``; ``note`` is kept in the
    card (so a re-publish does not lose what was said about the run)."""
    if episodes < 1:
        raise PublishError("--episodes must be positive")
    for needed in ("config.json", "progress.csv"):
        if not (run_dir / needed).is_file():
            raise PublishError(f"{run_dir} has no {needed}")
    if (dst / "model.zip").exists() and not force:
        raise PublishError(f"{dst} already holds a model.zip; pass --force to replace it")
    source = model_source(run_dir, checkpoint)
    with atomic_path(dst / "model.zip", ".zip") as staged:  # in place once evaluated
        write_weights_only(source, staged)
        evaluation = evaluate_entry(staged, episodes, parallel)
        evaluation["model_from"] = _relative(source, run_dir)
        evaluation["num_timesteps"] = int(read_sb3_zip(staged).data.get("num_timesteps", 0))
        evaluation["torch_threads"] = torch.get_num_threads()
    with atomic_path(dst / "config.json", ".json") as tmp:
        shutil.copyfile(run_dir / "config.json", tmp)
    steps = evaluation["num_timesteps"]
    copy_progress(run_dir / "progress.csv", dst / "progress.csv", steps)
    write_json(dst / "eval.json", evaluation)
    plot_curve(run_dir, dst / "curve.png", until=steps)
    card = entry_card(dst.name, read_json(run_dir / "config.json"), dst / "progress.csv",
                      evaluation, note)  # fmt: skip
    with atomic_path(dst / "README.md") as tmp:
        tmp.write_text(card)
    return [dst / name for name in ENTRY_FILES]
