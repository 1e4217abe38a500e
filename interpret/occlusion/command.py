"""Occlude CoinRun's objects one class at a time and measure how much the policy reacts.

Plays the agent (8 envs x 128 steps, every 2nd frame kept: 512 frames), then for each object
class the game draws each recorded state without that class (its renderer, so only that
class's pixels change) and prints, over the frames where the class is drawn, the mean
KL(pi || pi without it) with a 95% interval, the share of frames whose greedy action changes,
and the value's change. A policy blind to a class scores 0 on it; comparing the KL with the
value's change shows whether the actor and the critic see the same things.

example:
  python -m interpret occlude zoo:coinrun-ppo-nature --env procgen:coinrun \\
      --env-kwargs distribution_mode=easy paint_vel_info=true --out reports/occlusion

With --out, writes the table to OUT/summary.json and OUT/index.html as well.
"""

from __future__ import annotations

import argparse
import html
import time
from pathlib import Path

from interpret.core.errors import InterpretError, check_counts
from interpret.occlusion.measure import OCCLUDABLE, ClassOcclusion


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory, SB3 .zip or zoo:NAME")
    parser.add_argument("--env", help="env id (default: the model's; must be procgen:coinrun)")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE")
    parser.add_argument(
        "--classes", nargs="+", default=list(OCCLUDABLE), choices=OCCLUDABLE, metavar="CLASS",
        help=f"object classes to take out, one at a time ({', '.join(OCCLUDABLE)})",
    )  # fmt: skip
    parser.add_argument("--sample-envs", type=int, default=8, help="envs played (8)")
    parser.add_argument("--sample-steps", type=int, default=128, help="steps per env (128)")
    parser.add_argument("--sample-every", type=int, default=2, help="keep every Nth step (2)")
    parser.add_argument("--deterministic", action="store_true", help="play greedy actions")
    parser.add_argument(
        "--examples", type=int, default=3, help="frames of largest KL shown per class (3)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the levels played (0)")
    parser.add_argument("--trust-pickle", action="store_true", help="load with SB3's unpickler")
    parser.add_argument("--out", help="also write the table as a report directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> Path | None:
    import agents
    import envs
    from envs.action_names import action_names, discrete_actions
    from interpret.core.model_env import check_fits, resolve_env
    from interpret.core.report import page, write_report
    from interpret.core.trajectory import record_trajectories
    from interpret.occlusion.measure import format_table, occlusion_sensitivity

    check_counts(args, ("sample_envs", "sample_steps", "sample_every", "batch_size"), ("examples",))
    if args.env and envs.parse_env_id(args.env) != ("procgen", "coinrun"):
        raise InterpretError(f"occlude draws CoinRun's objects; --env is {args.env}")
    view = agents.load(args.model, trust_pickle=args.trust_pickle)
    env_id, options = resolve_env(view, args.env, args.env_kwargs)
    if envs.parse_env_id(env_id) != ("procgen", "coinrun"):
        raise InterpretError(f"occlude draws CoinRun's objects; the model plays {env_id}")
    check_fits(view, env_id, options)
    if view.recurrent:
        raise InterpretError("occlude measures a memoryless policy frame by frame")
    clock = time.perf_counter()
    played = record_trajectories(
        view, env_id, n_envs=args.sample_envs, n_steps=args.sample_steps, seed=args.seed + 1000,
        deterministic=args.deterministic, record_states=True, **options,
    )  # fmt: skip
    states = [s for t in played for s in (t.states or [])[:: args.sample_every]]
    rows = occlusion_sensitivity(view, states, args.classes, args.batch_size, args.examples)
    text = format_table(rows, len(states))
    print(text)
    if not args.out:
        return None
    summary = {
        "model": str(view.source),
        "env_id": env_id,
        "env_options": options,
        "frames": len(states),
        "played": {
            "envs": args.sample_envs,
            "steps": args.sample_steps,
            "every": args.sample_every,
            "deterministic": args.deterministic,
            "seed": args.seed,
        },
        "rows": [r.as_dict() for r in rows],
        "meaning": "per object class, over the frames where the game draws it: kl = mean "
        "KL(pi(frame) || pi(frame drawn without the class)) in nats, with a normal 95% interval; "
        "greedy_changed = share of frames whose greedy action changes; value_change = mean "
        "V(without) - V(frame) and value_abs_change its mean absolute value (model units)",
        "wall_s": round(time.perf_counter() - clock, 2),
    }
    names = action_names(env_id, discrete_actions(view.action_space))
    title = f"Object occlusion: {view.source}"
    table = f"<h1>{html.escape(title)}</h1>\n<pre>{html.escape(text)}</pre>\n"
    index = page("Object occlusion", table + _examples_html(rows, names), css=CSS)
    return write_report(args.out, index, summary, replace=args.force)


CSS = (
    "figure{display:inline-block;margin:0 1.5em 1em 0}"
    "figure img{width:128px;image-rendering:pixelated;margin-right:2px}"
    "figcaption{font-size:0.85em}"
)


def _examples_html(rows: list[ClassOcclusion], names: list[str]) -> str:
    """Per class, its frames of largest KL: as drawn and without the class, with the greedy
    action of each."""
    from interpret.core.report import png_data_uri

    parts = []
    for row in rows:
        if not row.examples:
            continue
        parts.append(f"<h2>Without {html.escape(row.name)}: the frames of largest KL</h2>")
        for e in row.examples:
            parts.append(
                f"<figure><img src='{png_data_uri(e.frame)}' alt='as drawn'>"
                f"<img src='{png_data_uri(e.frame_without)}' alt='without {row.name}'>"
                f"<figcaption>KL {e.kl:.3f} nats; greedy {html.escape(names[e.greedy])} &rarr; "
                f"{html.escape(names[e.greedy_without])}</figcaption></figure>"
            )
    return "\n".join(parts)
