"""Cost of reading CoinRun states and labelling failures, next to the cost of playing.

Plays `--episodes` CoinRun episodes (hard mode: buzzsaws, enemies and lava) in `--envs`
vectorized envs with a scripted policy (run right, jump half the time, a random action 20% of
the time), reading every state before each step as an audit does. Measured side by side in
this one run: seconds stepping the env, seconds in `get_states`, seconds parsing + writing the
states (`parse_state`/`write_state` round trip, checked equal), and seconds labelling each
failed episode's fatal step (`FailureLabeler.cause`). Prints the causes found and, last, a JSON
summary with the shares and the count of failures left without a cause (should be 0).

    python bench/coinrun_state.py --episodes 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envs
from envs.procgen_state import parse_state, write_state
from interpret.audit.causes import FailureLabeler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    venv = envs.make_vec_env("procgen:coinrun", args.envs, args.seed, distribution_mode="hard")
    venv.reset()
    labeler = FailureLabeler()
    rng = np.random.default_rng(args.seed)
    seconds = Counter()
    causes, episodes, complete, steps, states_read = Counter(), 0, 0, 0, 0
    while episodes < args.episodes:
        t0 = time.perf_counter()
        states = venv.get_states()
        t1 = time.perf_counter()
        for data in states:
            if write_state(parse_state(data)) != data:
                raise AssertionError("round trip changed a state")
        t2 = time.perf_counter()
        actions = np.where(rng.random(args.envs) < 0.5, 8, 7)
        actions = np.where(rng.random(args.envs) < 0.2, rng.integers(0, 15, args.envs), actions)
        _, _, dones, infos = venv.step(actions)
        t3 = time.perf_counter()
        seconds["get_states"] += t1 - t0
        seconds["parse_write"] += t2 - t1
        seconds["step"] += t3 - t2
        steps += args.envs
        states_read += len(states)
        for i in np.flatnonzero(dones):
            episodes += 1
            if infos[i]["level_complete"]:
                complete += 1
                continue
            t4 = time.perf_counter()
            causes[labeler.cause(states[i], int(actions[i])).label] += 1
            seconds["label"] += time.perf_counter() - t4
    venv.close()
    labeler.close()
    failed = episodes - complete
    for label, count in causes.most_common():
        print(f"{label:45s} {count:6d}  {100.0 * count / failed:5.1f}% of failures")
    play = seconds["step"] + seconds["get_states"]
    summary = {
        "episodes": episodes,
        "failed": failed,
        "unlabelled_failures": causes.get("none", 0),
        "causes": dict(causes),
        "env_steps": steps,
        "steps_per_s": steps / seconds["step"],
        "states_parsed_per_s": states_read / seconds["parse_write"],
        "labels_per_s": failed / max(seconds["label"], 1e-9),
        "label_share_of_play": seconds["label"] / play,
        "parse_write_share_of_play": seconds["parse_write"] / play,
        "get_states_share_of_play": seconds["get_states"] / play,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
