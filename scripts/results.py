"""Reproduce the papers' experiments on the zoo agents and write their pages: `make results`.

Every step is one of the project's own commands (``python -m interpret ...``), run as a
subprocess with its output logged under ``--work``; a step whose output is already there is
skipped, so an interrupted run resumes where it stopped (``--force`` redoes everything).
Each experiment ends in a page under ``--out`` (default ``docs/results/``), named by the
date (a run on a later day writes a new page), with its tables, the exact commands, the commit
and the machine.

experiments:
  editing   Hilton, Cammarata, Carter, Goh, Olah, "Understanding RL Vision" (Distill, 2020),
            "Model editing": the failure-by-cause table of the original model, the model with
            its buzzsaw feature projected out, with its enemy feature projected out, and the
            original on invisible (still lethal) buzzsaws, all on the same N unseen levels,
            with 95% intervals and p-values against the original, next to the paper's table;
            and how much the original's policy reacts to each object class taken out of the
            frame (`occlude`), which says beforehand whether an edit can blind it to one.

example:
  python scripts/results.py editing --model zoo:coinrun-ppo-nature --layer cnn.3 --levels 2000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TODAY = datetime.date.today().isoformat()  # pages are dated: a later run writes a new page
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from interpret.audit.causes import TABLE_COLUMNS  # noqa: E402
from interpret.audit.comparison import comparison_rows  # noqa: E402

# Hilton et al. (2020), "Model editing": % of 10,000 levels failed by cause.
PAPER_EDITING = {
    "original": (0.37, 0.16, 0.12, 0.08),
    "buzzsaw-blind": (12.76, 0.16, 0.08, 0.05),
    "enemy-blind": (0.36, 4.69, 0.97, 0.07),
    "invisible buzzsaws": (32.20, 0.05, 0.05, 0.05),
}
TARGET_WORDS = {"value": "value", "policy": "log-probability of the policy's greedy action"}
PAPER_ROW_NOTE = {"enemy-blind": "the paper's edit blinded its 'enemy moving left' feature"}


@dataclass
class Step:
    """One command of an experiment; done when `output` exists."""

    title: str
    argv: list[str]
    output: Path

    def shell(self) -> str:
        return shlex.join(["python", *self.argv[1:]])


@dataclass
class Runner:
    """Runs steps in order with one progress bar, logging each under `work`/logs. A step is
    skipped when its output exists and `work`/steps.json records it as done with the same
    command (with its wall time, which the pages report)."""

    work: Path
    force: bool
    commands: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, steps: list[Step], bar: tqdm) -> None:
        record = self.work / "steps.json"
        done = json.loads(record.read_text()) if record.is_file() else {}
        for step in steps:
            bar.set_postfix_str(step.title)
            self.commands.append(step.shell())
            entry = done.get(step.title, {})
            if not self.force and step.output.exists() and entry.get("argv") == step.argv[1:]:
                self.seconds[step.title] = entry["seconds"]
                bar.update(1)
                continue
            log = self.work / "logs" / f"{slug(step.title)}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with log.open("w") as handle:
                ended = subprocess.run(step.argv, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
            self.seconds[step.title] = time.perf_counter() - start
            if ended.returncode != 0:
                tail = log.read_text().strip().splitlines()[-3:]
                raise SystemExit(f"{step.title} failed ({log}): " + " / ".join(tail))
            done[step.title] = {"argv": step.argv[1:], "seconds": self.seconds[step.title]}
            write_atomic(record, json.dumps(done, indent=1))
            bar.update(1)

    def commands_section(self) -> list[str]:
        """Markdown lines: the commands run, and each step's wall time when it ran."""
        lines = ["## Commands", "", "```", *self.commands, "```", ""]
        if self.seconds:
            times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in self.seconds.items())
            lines += [f"Wall time per step (when it ran): {times}.", ""]
        return lines


def slug(text: str) -> str:
    """A file name for `text`: "buzzsaw-blind", "zoo:coinrun-ppo" -> "zoo-coinrun-ppo"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def target_slug(target: str) -> str:
    """A file name for a synthesis target: "T+-" -> "t-plus-minus", "action:2" -> "action-2"."""
    return slug(target.replace("+", " plus ").replace("-", " minus "))


def interpret(*args: str) -> list[str]:
    return [sys.executable, "-m", "interpret", *args]


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def provenance() -> str:
    """Date, commit (with a note when the tree differs from it), machine and load."""
    from agents.training import machine_name

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no")
    dirty = " (with uncommitted changes)" if changed else ""
    import torch

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"Date: {TODAY}. Commit: `{commit}`{dirty}. "
        f"Machine: {machine_name()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}; load average at the end {load} (1/5/15 min)."
    )


def percent_cell(rate: dict[str, Any]) -> str:
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.2f} ({100 * lo:.2f}-{100 * hi:.2f})"


def p_cell(p: float) -> str:
    return "" if p >= 0.9995 else f"p={p:.2g}"


# ---- editing ----------------------------------------------------------------------------------


def attribution_step(args: argparse.Namespace) -> Step:
    """The attribution report whose labelled features the edits remove."""
    report = args.work / f"attribution-{args.layer}"
    return Step(
        f"attribute {args.layer}",
        interpret(
            "attribute", args.model, "--layer", args.layer, "--target", args.target,
            "--features", str(args.nmf_features), "--out", str(report), "--force",
        ),
        report / "summary.json",
    )  # fmt: skip


def editing_steps(
    args: argparse.Namespace, report: Path, features: dict[str, int | None]
) -> tuple[list[Step], dict[str, Path]]:
    """(the edit and audit steps, row -> audit report); `features`: row -> feature to remove
    (None: no such row)."""
    work = args.work
    play = ["--levels", str(args.levels), "--seed", str(args.seed)]
    play += ["--workers", str(args.workers), "--no-attribution", "--force"]
    audits: dict[str, Path] = {}
    later: list[Step] = []

    def audit(row: str, model: str, *extra: str, where: str = "") -> None:
        out = work / "audits" / slug(row + where)
        audits[row] = out
        later.append(
            Step(f"audit {row}{where}", interpret("audit", model, *play, *extra, "--out", str(out)),
                 out / "summary.json")
        )  # fmt: skip

    audit("original", args.model)
    for row, feature in features.items():
        if feature is None:
            continue
        where = f" at {args.layer}"  # each layer's edits keep their own models and audits
        edited = work / "models" / slug(row + where)
        later.append(
            Step(
                f"edit {row}{where}",
                interpret(
                    "edit", args.model, "--features", str(report), "--feature", str(feature),
                    "--out", str(edited), "--force",
                ),
                edited / "model.zip",
            )
        )  # fmt: skip
        audit(row, str(edited), where=where)
    audit("invisible buzzsaws", args.model, "--level-edit", "invisible-buzzsaws")
    return later, audits


def occlusion_step(args: argparse.Namespace) -> Step:
    """How much the original's policy and value react to each object class taken out."""
    out = args.work / "occlusion"
    return Step(
        "occlude original",
        interpret("occlude", args.model, "--seed", str(args.seed), "--out", str(out), "--force"),
        out / "summary.json",
    )


def occlusion_lines(summary: dict[str, Any]) -> list[str]:
    """Markdown rows of `occlude`'s table: class, frames, KL [95%], greedy changed, value
    change (a class drawn in no frame: its counts and dashes)."""
    lines = []
    for row in summary["rows"]:
        if not row["frames"]:
            lines.append(f"| {row['name']} | 0 | - | - | - |")
            continue
        low, high = row["kl_ci"]
        lines.append(
            f"| {row['name']} | {row['frames']} | {row['kl']:.3g} [{low:.3g}, {high:.3g}] | "
            f"{100 * row['greedy_changed']:.1f}% | {row['value_change']:+.3g} |"
        )
    return lines


def choose_features(
    args: argparse.Namespace, report: Path
) -> tuple[dict[str, int | None], dict[str, str]]:
    """The buzzsaw and enemy features from the report's object labels: row -> feature (None
    where there is none) and row -> why."""
    from interpret.attribution.object_labels import feature_for_class

    scores = read_json(report / "summary.json").get("object_labels")
    if not scores:
        raise SystemExit(f"{report} has no object labels (is {args.model} a CoinRun model?)")
    features: dict[str, int | None] = {}
    why: dict[str, str] = {}
    for row, name in (("buzzsaw-blind", "buzzsaw"), ("enemy-blind", "enemy")):
        features[row], why[row] = feature_for_class(scores, name)
    return features, why


def feature_lines(scores: dict[str, Any], top: int = 3) -> list[str]:
    """Markdown rows: feature, label, the classes of highest contrast (share@contrast), R²."""
    from interpret.attribution.object_labels import MIN_SHARE

    rows = []
    for f, label in enumerate(scores["labels"]):
        shares, contrast = scores["shares"][f], scores["contrast"][f]
        held = [c for c in range(len(shares)) if shares[c] >= MIN_SHARE and contrast[c] > 1]
        held.sort(key=lambda c: -contrast[c])
        top_classes = ", ".join(
            f"{scores['classes'][c]} {100 * shares[c]:.0f}%@{contrast[c]:.3g}" for c in held[:top]
        )
        rows.append(f"| {f} | {label or '-'} | {top_classes or '-'} | {scores['fit_r2'][f]:.2f} |")
    return rows


def editing_table(summaries: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Markdown rows of the failure table (ours with p against the original, then the
    paper's) and the verdict of the paper's success test on the buzzsaw edit."""
    reference = summaries["original"]
    lines = []
    verdict: dict[str, Any] = {}
    for row, summary in summaries.items():
        compared = {r["row"]: r for r in comparison_rows(reference, summary)}
        cells = [percent_cell(compared["completed"]["b"])]
        for column in TABLE_COLUMNS:
            r = compared[column]
            p = "" if row == "original" else p_cell(r["p_value"])
            cells.append(f"{percent_cell(r['b'])} {p}".strip())
        paper = " / ".join(f"{x:.2f}" for x in PAPER_EDITING[row])
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {paper} |")
        if row == "buzzsaw-blind":
            saw = compared[TABLE_COLUMNS[0]]
            others = {
                column: {
                    "difference": compared[column]["difference"],
                    "p_value": compared[column]["p_value"],
                    "inside": bool(
                        reference["failure_table"][column]["ci95"][0]
                        <= compared[column]["b"]["rate"]
                        <= reference["failure_table"][column]["ci95"][1]
                    ),
                }
                for column in TABLE_COLUMNS[1:]
            }
            verdict = {
                "buzzsaw_p": saw["p_value"],
                "buzzsaw_difference": saw["difference"],
                "others": others,
                "success": bool(
                    saw["p_value"] < 0.01
                    and saw["difference"] > 0
                    and all(o["inside"] for o in others.values())
                ),
            }
    return lines, verdict


def editing_conclusion(verdict: dict[str, Any]) -> str:
    """The paper's success test in one sentence: what the buzzsaw edit did to each column."""
    if not verdict:
        return "No buzzsaw feature was found, so there is no buzzsaw edit to test."
    saw = f"{100 * verdict['buzzsaw_difference']:+.2f} points (p={verdict['buzzsaw_p']:.2g})"
    moved = [
        f"{column} ({100 * o['difference']:+.2f} points, p={o['p_value']:.2g})"
        for column, o in verdict["others"].items()
        if not o["inside"]
    ]
    if verdict["success"]:
        return (
            f"The buzzsaw edit raised buzzsaw failures by {saw} and left the other columns "
            "inside the original's 95% intervals: the paper's test is met."
        )
    raised = verdict["buzzsaw_p"] < 0.01 and verdict["buzzsaw_difference"] > 0
    head = (
        f"The buzzsaw edit raised buzzsaw failures by {saw}"
        if raised
        else f"The buzzsaw edit changed buzzsaw failures by {saw}, short of an increase at p < 0.01"
    )
    tail = f", but moved {', '.join(moved)} outside the original's interval" if moved else ""
    smallest = min(o["p_value"] for o in verdict["others"].values())
    reading = (
        f" Read as a significance test instead, no other column differs from the original at "
        f"p < 0.01 (smallest p={smallest:.2g})."
        if raised and smallest >= 0.01
        else ""
    )
    return f"{head}{tail}: the paper's test is not met.{reading}"


def cause_lines(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: failures of each row by exact cause (counts)."""
    causes = sorted(
        {
            c
            for s in summaries.values()
            for c in s["cause_breakdown"]
            if not c.startswith("involving")
        }
    )
    lines = ["| row | " + " | ".join(causes) + " |", "|---" * (len(causes) + 1) + "|"]
    for row, summary in summaries.items():
        counts = [str(summary["cause_breakdown"].get(c, {"count": 0})["count"]) for c in causes]
        lines.append(f"| {row} | " + " | ".join(counts) + " |")
    return lines


def editing(args: argparse.Namespace, runner: Runner) -> Path:
    attribute = attribution_step(args)
    report = attribute.output.parent
    with tqdm(total=1, desc="editing", unit="step") as bar:
        runner.run([attribute], bar)
        features, why = choose_features(args, report)
        later, audits = editing_steps(args, report, features)
        occlude = occlusion_step(args)
        bar.total = 2 + len(later)
        bar.refresh()
        runner.run([*later, occlude], bar)
    summaries = {row: read_json(path / "summary.json") for row, path in audits.items()}
    occlusion = read_json(occlude.output)
    scores = read_json(report / "summary.json")["object_labels"]
    table, verdict = editing_table(summaries)
    name = args.model.removeprefix("zoo:")
    n = summaries["original"]["levels"]
    first_level = summaries["original"]["first_level"]
    conclusion = editing_conclusion(verdict)
    page = [
        f"# The editing experiment on `{args.model}` (layer `{args.layer}`)",
        "",
        provenance(),
        "",
        "Reproduce with `make results` or "
        f"`python scripts/results.py editing --model {args.model} --layer {args.layer} "
        f"--target {args.target} --levels {args.levels}`.",
        "",
        "Following Hilton, Cammarata, Carter, Goh, Olah, *Understanding RL Vision* (Distill, "
        '2020), "Model editing": the NMF feature of the attribution (of the '
        f"{TARGET_WORDS.get(args.target, args.target)}) at the layer that the game labels "
        "buzzsaw (or enemy) is projected out of the next layer's kernel, and each model "
        f"plays the same {n} unseen levels ({first_level} onwards, sampled actions, seed "
        f"{args.seed}); the last row is the original on levels whose buzzsaws are invisible but "
        "still lethal.",
        "",
        "## Failure rates by cause",
        "",
        f"% of {n} levels (95% Wilson interval); p: two-proportion z-test against the original "
        "(blank where the counts are equal). The paper's columns are % of 10,000 levels.",
        "",
        "| row | completed | buzzsaw | enemy moving left | enemy moving right | multiple or "
        "other | paper: buzzsaw / enemy left / enemy right / other |",
        "|---|---|---|---|---|---|---|",
        *table,
        "",
        conclusion,
        "",
        'Failures by exact cause (counts; "multiple or other" is lava, several hazards at '
        "once and timeouts):",
        "",
        *cause_lines(summaries),
        "",
        "Which feature each edit removed:",
        "",
        *[
            f"- {row}: {text}" + ("" if row in summaries else " (row not played)")
            for row, text in why.items()
        ],
        *[f"- {row} (paper): {text}" for row, text in PAPER_ROW_NOTE.items()],
        "",
        "Procgen's easy mode puts enemies only in pits, unlike the original CoinRun the paper "
        "used, so enemies are rarely in view and rarely kill the agent.",
        "",
        "## Which objects the original's policy reacts to",
        "",
        f"`occlude` ([occlude.md](../occlude.md)): {occlusion['frames']} frames of the original "
        "playing; for each class, over the frames where the game draws it, the frame is drawn "
        "again without it and the policy compared: mean KL(pi || pi without) in nats (95% "
        "interval), the share of frames whose greedy action changes, and the value's mean "
        "change. An edit can only blind a policy to a class whose KL is well above 0; a value "
        "change without a KL means the critic sees the class and the actor does not.",
        "",
        "| class taken out | frames | KL (nats) | greedy action changed | value change |",
        "|---|---|---|---|---|",
        *occlusion_lines(occlusion),
        "",
        f"## The features at `{args.layer}`, labelled by the game",
        "",
        "Per feature: its label, the classes of highest contrast with the share of its "
        "attribution on each (`share@contrast`), and R² of its map's fit on the classes "
        "([attribute.md](../attribute.md#features-labelled-by-the-games-objects)).",
        "",
        "| feature | label | top classes | R² |",
        "|---|---|---|---|",
        *feature_lines(scores),
        "",
        *runner.commands_section(),
    ]
    out = args.out / f"{TODAY}-editing-{slug(name)}-{slug(args.layer)}.md"
    write_atomic(out, "\n".join(page))
    write_atomic(
        args.work / "editing.json",
        json.dumps(
            {
                "verdict": verdict,
                "features": why,
                "occlusion": occlusion["rows"],
                "commands": runner.commands,
            },
            indent=1,
        ),
    )
    return out


# ---- goggles and critical states ---------------------------------------------------------------

# Rupprecht, Ibrahim, Pal (2020), Table 1, Pong: the agent's score seeing the real frames /
# a plain VAE's reconstructions / the reconstruction-only generator's / the full generator's.
PAPER_GOGGLES = {"agent": 14, "vae": -8, "recon": 4, "full": 14}
GOGGLES_ROWS = {
    "agent": "the real frames",
    "vae": "a plain VAE's reconstructions",
    "recon": "the reconstruction-only generator's",
    "full": "the full generator's (saliency-weighted, agent-perception loss)",
}


def synthesis_steps(args: argparse.Namespace) -> list[Step]:
    """One `synthesize` per target; the first trains the generators (cached for the rest) and
    plays the goggles episodes."""
    steps = []
    for i, target in enumerate(args.targets):
        out = args.work / f"synthesis-{target_slug(target)}"
        goggles = str(args.goggles_episodes if i == 0 else 0)
        argv = interpret(
            "synthesize", args.model, "--target", target, "--samples", str(args.samples),
            "--frames", str(args.frames), "--epochs", str(args.epochs),
            "--goggles-episodes", goggles, "--threads", str(args.threads),
            "--seed", str(args.seed), "--no-progress", "--out", str(out), "--force",
        )  # fmt: skip
        steps.append(Step(f"synthesize {target_slug(target)}", argv, out / "summary.json"))
    return steps


def goggles_lines(goggles: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: what the agent sees, its mean score ± s.e. (episodes), the paper's."""
    return [
        f"| {GOGGLES_ROWS[name]} | {r['mean_return']:+.2f} ± {r['return_stderr']:.2f} "
        f"| {r['episodes']} | {PAPER_GOGGLES[name]:+d} |"
        for name, r in ((n, goggles[n]) for n in GOGGLES_ROWS if n in goggles)
    ]


GENERATOR_NAMES = {"vae": "plain VAE", "recon": "reconstruction only", "full": "full"}


def loss_lines(histories: dict[str, list[dict[str, float]]]) -> list[str]:
    """Markdown rows: each generator's last-epoch losses."""
    return [
        f"| {GENERATOR_NAMES.get(name, name)} | {h[-1]['reconstruction']:.4g} | "
        f"{h[-1]['perception']:.4g} | {h[-1]['kl']:.4g} |"
        for name, h in histories.items()
        if h
    ]


def gallery_png(report: Path, figure: Path, columns: int = 8) -> int:
    """The report's synthesized states (lowest energy first), 2x, in one row; how many."""
    import numpy as np

    with np.load(report / "arrays.npz") as arrays:
        images = arrays["synthesized"][:columns]  # (n, H, W, 3) uint8, as the report shows
    strip = np.concatenate(
        [np.pad(im, ((2, 2), (2, 2), (0, 0)), constant_values=255) for im in images], axis=1
    )
    write_png(strip, figure)
    return len(images)


def reconstruction_png(report: Path, figure: Path) -> list[str]:
    """The report's recorded frames over each generator's reconstructions of them, 2x; the
    rows' names, top to bottom."""
    import numpy as np

    names = ["frames", *(n for n in GENERATOR_NAMES if n != "frames")]
    with np.load(report / "arrays.npz") as arrays:
        rows = [
            (n, arrays[f"reconstructions_{n}"]) for n in names if f"reconstructions_{n}" in arrays
        ]
    grid = np.concatenate([np.concatenate(list(images), axis=1) for _, images in rows], axis=0)
    write_png(grid, figure)
    return ["recorded frames" if n == "frames" else GENERATOR_NAMES[n] for n, _ in rows]


def write_png(image: object, figure: Path) -> None:
    """(H, W, 3) uint8 at 2x, atomically."""
    from PIL import Image

    figure.parent.mkdir(parents=True, exist_ok=True)
    tmp = figure.with_name(f".{figure.name}.tmp.png")
    picture = Image.fromarray(image)  # type: ignore[arg-type]
    picture.resize((picture.width * 2, picture.height * 2), Image.NEAREST).save(tmp)
    tmp.replace(figure)


def goggles(args: argparse.Namespace, runner: Runner) -> Path:
    steps = synthesis_steps(args)
    with tqdm(total=len(steps), desc="goggles", unit="step") as bar:
        runner.run(steps, bar)
    name = slug(args.model.removeprefix("zoo:"))
    summaries = {t: read_json(s.output) for t, s in zip(args.targets, steps, strict=True)}
    first = summaries[args.targets[0]]
    table = goggles_lines(first["goggles"] or {})
    recon_figure = args.out / "figures" / f"{TODAY}-reconstructions-{name}.png"
    recon_rows = reconstruction_png(steps[0].output.parent, recon_figure)
    names = action_names(args.model, first["env_id"])
    actions = ", ".join(f"{k}: {v}" for k, v in enumerate(names))
    galleries = []
    for target, step in zip(args.targets, steps, strict=True):
        figure = args.out / "figures" / f"{TODAY}-synthesis-{name}-{target_slug(target)}.png"
        shown = gallery_png(step.output.parent, figure)
        energy = summaries[target]["energy"][:shown]
        recorded = summaries[target]["recorded_frames_target_energy"]
        galleries += [
            f"### `{target}`",
            "",
            f"![{target}: {shown} synthesized states](figures/{figure.name})",
            "",
            f"Target energy of these states: {', '.join(f'{e:.3g}' for e in energy)} (on the "
            f"recorded frames: mean {recorded['mean']:.3g}, lowest {recorded['min']:.3g}).",
            "",
        ]
    page = [
        f"# Generator goggles and critical states on `{args.model}`",
        "",
        provenance(),
        "",
        f"Reproduce with `make results` or `python scripts/results.py goggles --model "
        f"{args.model}`.",
        "",
        "Following Rupprecht, Ibrahim, Pal, *Finding and Visualizing Weaknesses of Deep "
        "Reinforcement Learning Agents* (ICLR, 2020): a generator of the agent's observations is "
        f"trained on {first['frames']} recorded frames ({args.epochs} epochs); the agent then "
        'plays while seeing each generator\'s reconstruction of every frame (the "goggles"), '
        "and latent vectors are optimized for states where its outputs meet a target.",
        "",
        "## The agent with generator goggles",
        "",
        "| the agent sees | mean score ± s.e. | episodes | paper |",
        "|---|---|---|---|",
        *table,
        "",
        f"![recorded frames and reconstructions](figures/{recon_figure.name})",
        "",
        f"Rows, top to bottom: {', '.join(recon_rows)}.",
        "",
        "The generators' losses at their last epoch, as their training logs them (the "
        "perception loss: the agent's outputs on the reconstruction against those on the "
        "frame, squared):",
        "",
        "| generator | reconstruction | agent perception | KL |",
        "|---|---|---|---|",
        *loss_lines(first["loss_history"]),
        "",
        "## Synthesized states",
        "",
        "T+: high value whatever the agent does; T-: even the best action is bad; T+-: the "
        "largest spread between the best and the worst action; action:K: action K "
        f"({actions}). "
        "Each row: the synthesized states, lowest energy first.",
        "",
        *galleries,
        *runner.commands_section(),
    ]
    out = args.out / f"{TODAY}-goggles-{name}.md"
    write_atomic(out, "\n".join(page))
    return out


def action_names(model: str, env_id: str) -> list[str]:
    import agents
    from envs.action_names import action_names as names

    return names(env_id, int(agents.load(model).action_space.n))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


EXPERIMENTS = {"editing": editing, "goggles": goggles}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--model", default="zoo:coinrun-ppo", help="zoo:NAME, run or .zip")
    parser.add_argument("--layer", default="2b", help="the layer whose feature is edited")
    parser.add_argument(
        "--target", default="value",
        help="what the features are attributed to: value (one trunk) or policy (separate "
        "policy and value trunks: the policy's own trunk, which the edit must blind)",
    )  # fmt: skip
    parser.add_argument("--nmf-features", type=int, default=8, help="NMF features (8)")
    parser.add_argument("--levels", type=int, default=2000, help="levels per row (2000)")
    parser.add_argument("--seed", type=int, default=0, help="action sampling seed (0)")
    parser.add_argument("--workers", type=int, default=2, help="audit worker processes (2)")
    synthesis = parser.add_argument_group("goggles")
    synthesis.add_argument(
        "--targets", nargs="+", default=["T-", "T+", "T+-", "action:2", "action:3"]
    )
    synthesis.add_argument("--samples", type=int, default=8, help="states per target (8)")
    synthesis.add_argument("--frames", type=int, default=4096, help="recorded frames (4096)")
    synthesis.add_argument("--epochs", type=int, default=10, help="generator epochs (10)")
    synthesis.add_argument("--goggles-episodes", type=int, default=16, help="per row (16)")
    synthesis.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--work", type=Path, help="outputs (default runs/results/MODEL)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="pages")
    parser.add_argument("--force", action="store_true", help="redo steps already done")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.levels < 1 or args.nmf_features < 1 or args.workers < 1:
        parser.error("--levels, --nmf-features and --workers must be positive")
    if (
        args.model.startswith("zoo:")
        and not (ROOT / "zoo" / args.model[4:] / "model.zip").is_file()
    ):
        parser.error(f"{args.model}: no zoo/{args.model[4:]}/model.zip in this checkout")
    os.chdir(ROOT)  # relative paths, as the page's commands show them, are the repository's
    if args.work is None:
        args.work = Path("runs/results") / slug(args.model.removeprefix("zoo:"))
    args.work.mkdir(parents=True, exist_ok=True)
    page = EXPERIMENTS[args.experiment](args, Runner(args.work, args.force))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
