"""``occlude``: the policy's reaction when the game draws a frame without one object class,
checked against the same quantities computed independently from the rendered frames, and a
blind policy (its first convolutions zeroed) that must score exactly 0."""

import json

import numpy as np
import pytest
import torch
from tiny_models import COINRUN
from torch import nn

import agents
from interpret.attribution.object_masks import CLASS_EDITS, rendered_frames, state_edit
from interpret.cli import main
from interpret.core.errors import InterpretError
from interpret.core.trajectory import record_trajectories
from interpret.occlusion import occlusion_sensitivity


@pytest.fixture(scope="module")
def states(separate_trunk_model):
    view = agents.load(separate_trunk_model)
    played = record_trajectories(
        view, COINRUN, n_envs=3, n_steps=24, seed=5, record_states=True,
        distribution_mode="easy", paint_vel_info=True,
    )  # fmt: skip
    return [s for t in played for s in t.states[::2]]


def test_rows_match_the_rendered_frames(separate_trunk_model, states):
    view = agents.load(separate_trunk_model)
    classes = ["buzzsaw", "coin", "wall", "velocity panel"]
    rows = occlusion_sensitivity(view, states, classes, batch_size=10, examples=2)  # 8 batches
    frames = rendered_frames(states, [state_edit(CLASS_EDITS[c]) for c in classes])
    with torch.no_grad():
        real = view.outputs(view.preprocess(frames[:, 0]))
    for i, row in enumerate(rows):
        drawn = (frames[:, 1 + i] != frames[:, 0]).any(axis=(1, 2, 3))
        assert row.name == classes[i] and row.frames == int(drawn.sum())
        if not drawn.any():
            assert np.isnan(row.kl)
            continue
        with torch.no_grad():
            removed = view.outputs(view.preprocess(frames[drawn, 1 + i]))
        kl = torch.distributions.kl_divergence(
            torch.distributions.Categorical(logits=real["logits"][drawn]),
            torch.distributions.Categorical(logits=removed["logits"]),
        )
        assert row.kl == pytest.approx(float(kl.mean()), rel=1e-4, abs=1e-6)  # float32
        assert row.kl_ci[0] <= row.kl <= row.kl_ci[1]
        tops = row.examples  # the frames of largest KL over all batches, largest first
        assert len(tops) == min(2, int(drawn.sum())) and tops[0].kl >= tops[-1].kl
        assert tops[0].kl == pytest.approx(float(kl.max()), rel=1e-4, abs=1e-6)
        assert all((e.frame != e.frame_without).any() for e in tops)
        changed = real["logits"][drawn].argmax(1) != removed["logits"].argmax(1)
        assert row.greedy_changed == pytest.approx(float(changed.float().mean()))
        change = removed["value"].reshape(-1) - real["value"].reshape(-1)[drawn]
        assert row.value_change == pytest.approx(float(change.mean()), rel=1e-4, abs=1e-6)
        assert row.value_abs_change == pytest.approx(float(change.abs().mean()), rel=1e-4, abs=1e-6)
    by_name = {r.name: r for r in rows}
    assert by_name["wall"].frames == by_name["velocity panel"].frames == len(states)
    assert by_name["wall"].kl > 0  # an untrained net still reacts to most of the frame changing


def test_a_policy_blind_to_the_frame_scores_zero(separate_trunk_model, states):
    view = agents.load(separate_trunk_model)
    with torch.no_grad():  # the convolutions that read the image: their output is now constant
        for module in view.module.modules():
            if isinstance(module, nn.Conv2d) and module.in_channels == 3:
                module.weight.zero_()
    rows = occlusion_sensitivity(view, states, ["wall", "velocity panel", "agent"])
    assert all(r.frames > 0 for r in rows)
    for r in rows:
        assert (r.kl, r.greedy_changed, r.value_abs_change) == (0.0, 0.0, 0.0)


def test_unknown_class_and_other_games_are_refused(separate_trunk_model, tmp_path, capsys):
    with pytest.raises(InterpretError, match="object classes must be among"):
        occlusion_sensitivity(agents.load(separate_trunk_model), [], ["dragon"])
    out = tmp_path / "pong"
    model = str(separate_trunk_model)
    assert main(["occlude", model, "--env", "atari:Pong", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CoinRun" in err and not out.exists()


def test_occlude_writes_its_table(separate_trunk_model, tmp_path, capsys):
    out = tmp_path / "occlusion"
    assert main([
        "occlude", str(separate_trunk_model), "--env", COINRUN,
        "--env-kwargs", "distribution_mode=easy", "--sample-envs", "2", "--sample-steps", "8",
        "--classes", "wall", "coin",
        "--out", str(out),
    ]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 8 and [r["name"] for r in summary["rows"]] == ["wall", "coin"]
    assert summary["rows"][0]["frames"] == 8 and "wall" in printed
    page = (out / "index.html").read_text()
    shown = sum(min(3, row["frames"]) for row in summary["rows"])  # 3 per class drawn
    assert "KL(pi || pi without)" in page and page.count("<figure>") == shown >= 3
    assert [len(row["examples"]) for row in summary["rows"]] == [
        min(3, row["frames"]) for row in summary["rows"]
    ]
