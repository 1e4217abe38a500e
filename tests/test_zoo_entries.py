"""The published zoo entries (zoo/NAME/model.zip): each loads in plain SB3 and as ``zoo:NAME``
with the same weights, and scores what its eval.json says when measured again (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import agents
from agents.fileio import read_json
from agents.zoo_publish import evaluate_entry

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = sorted(path.parent.name for path in (ROOT / "zoo").glob("*/model.zip"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRIES)
def test_published_entry_loads_and_scores_what_its_card_says(name, one_torch_thread):
    from stable_baselines3 import DQN, PPO

    entry = ROOT / "zoo" / name
    config, evaluation = read_json(entry / "config.json"), read_json(entry / "eval.json")
    view = agents.load(f"zoo:{name}")
    plain = {"ppo": PPO, "dqn": DQN}[config["algo"]].load(entry / "model.zip", device="cpu")
    ours = view.module.state_dict()
    for key, value in plain.policy.state_dict().items():
        assert torch.equal(ours[key], value), key
    episodes = evaluation["sampled"]["episodes"]
    again = evaluate_entry(
        entry / "model.zip", episodes, evaluation.get("parallel", 32), ("sampled",)
    )
    assert again["sampled"] == evaluation["sampled"]  # the published score, measured again
    card = (entry / "README.md").read_text()
    assert f"zoo:{name}" in card and f"{evaluation['num_timesteps']:,}" in card
