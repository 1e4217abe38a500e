"""Separate policy and value trunks (``separate_value_trunk``, as the zoo's CoinRun run trains):
a trunk layer's own name (``2b``) picks the copy that computes the attributed output, the
``policy`` target attributes the greedy action's log-probability, and an edit the policy
cannot feel (in the value's trunk) is refused before any work."""

import json

import numpy as np
import pytest
import stable_baselines3 as sb3
import torch
from tiny_models import COINRUN, untrained_model

import agents
from agents.inspectable import UnknownLayerError
from interpret.attribution.hazards import counts_bad_news, hazard_scores
from interpret.attribution.integrated_gradients import (
    HiddenLayerIntegratedGradients,
    target_output,
)
from interpret.attribution.nmf import NMFFeatures
from interpret.cli import main

PI, VF = "pi_features_extractor", "vf_features_extractor"


def observations(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_a_trunk_layer_name_picks_the_copy_of_the_output_read(separate_trunk_model, tmp_path):
    view = agents.load(separate_trunk_model)
    assert view.layer_for("2b", "value") == f"{VF}.2b"
    assert view.layer_for("2b", "logits") == f"{PI}.2b"
    assert view.layer_for(f"{PI}.3a", "value") == f"{PI}.3a"  # a listed name stays itself
    assert view.default_layer() == f"{VF}.2b"  # the default target is the value
    assert view.default_layer("logits") == f"{PI}.2b"
    with pytest.raises(UnknownLayerError, match=f"{PI}.2b, {VF}.2b"):
        view.layer_for("2b")  # in both trunks: which one is not guessed
    with pytest.raises(UnknownLayerError, match="unknown layer '9z'"):
        view.layer_for("9z", "value")
    assert (target_output(view, "policy"), target_output(view, "logit:2")) == ("logits", "logits")
    assert target_output(view, None) == target_output(view, "value") == "value"

    shared = agents.load(untrained_model("ours-ppo-interpretable", tmp_path))
    assert shared.layer_for("2b", "logits") == shared.layer_for("2b") == "2b"
    assert shared.default_layer("logits") == shared.default_layer() == "2b"


@pytest.mark.parametrize("layer", ["2a", "2b"])  # 2b: integrated through L2 pooling
def test_policy_target_integrates_the_greedy_actions_log_probability(separate_trunk_model, layer):
    view = agents.load(separate_trunk_model)
    layer = view.layer_for(layer, "logits")
    obs = observations(5)
    steps = 8
    ig = HiddenLayerIntegratedGradients(view, layer, target="policy", n_steps=steps)
    result = ig.attribute(obs, batch_size=2)  # three batches: each chooses its own actions
    assert result.target == "policy"
    rows = torch.arange(len(obs))
    with torch.no_grad():
        logits = view.outputs(view.preprocess(obs))["logits"]
    greedy = logits.argmax(dim=1)
    log_prob = torch.log_softmax(logits, dim=1)[rows, greedy]
    np.testing.assert_allclose(result.outputs, log_prob.numpy(), rtol=1e-5, atol=1e-6)

    # the same integral by plain autograd, point by point, each action held fixed
    lower, upper = view.split(layer)
    with torch.no_grad():
        activations = lower(view.preprocess(obs))
        start = torch.log_softmax(upper(torch.zeros_like(activations))["logits"], 1)[rows, greedy]
    total = torch.zeros_like(activations)
    for alpha in [(i + 1) / steps for i in range(steps)]:
        point = (alpha * activations).requires_grad_(True)
        chosen = torch.log_softmax(upper(point)["logits"], dim=1)[rows, greedy]
        (gradient,) = torch.autograd.grad(chosen.sum(), point)
        total += gradient / steps
    expected = (total * activations).numpy()
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(result.baseline_outputs, start.numpy(), rtol=1e-5, atol=1e-6)
    sums = result.attributions.reshape(len(obs), -1).sum(axis=1)
    np.testing.assert_allclose(sums - (result.outputs - result.baseline_outputs),
                               result.completeness_error, atol=1e-5)  # fmt: skip


def test_an_edit_the_policy_cannot_feel_is_refused(separate_trunk_model, tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.ones(32, dtype=np.float32))
    edit = ["edit", str(separate_trunk_model), "--direction-file", str(tmp_path / "v.npy")]
    assert main([*edit, "--layer", f"{VF}.2b", "--out", str(tmp_path / "vf")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "changes no action" in err
    assert not (tmp_path / "vf").exists()

    report = tmp_path / "report"  # a value attribution report, as `attribute` writes one
    report.mkdir()
    directions = np.eye(4, 32, dtype=np.float32)
    summary = {
        "layer": f"{VF}.2b", "target": "value", "n_steps": 10, "env_id": COINRUN,
        "env_options": {"distribution_mode": "easy"}, "layer_shape": [32, 32, 32],
        "directions": directions.tolist(), "labels": ["a", "b", "c", "d"],
    }  # fmt: skip
    (report / "summary.json").write_text(json.dumps(summary))
    np.savez_compressed(report / "arrays.npz", directions=directions)
    out = tmp_path / "from-report"
    assert main(["edit", str(separate_trunk_model), "--features", str(report), "--feature", "a",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{VF}.2b" in err and "attribute --target policy" in err

    out = tmp_path / "pi"  # "2b" for an edit: the policy's copy, the only one it can blind
    assert main([*edit, "--layer", "2b", "--out", str(out)]) == 0
    record = json.loads((out / "config.json").read_text())["edit"]
    assert record["layer"] == f"{PI}.2b" and record["parameters"] == [f"{PI}.net.3a.conv.weight"]
    before = sb3.PPO.load(separate_trunk_model, device="cpu").policy.state_dict()
    after = sb3.PPO.load(out / "model.zip", device="cpu").policy.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    # SB3 keeps the policy's extractor under two names; the value's trunk is untouched
    assert changed == {f"{PI}.net.3a.conv.weight", "features_extractor.net.3a.conv.weight"}


def test_hazard_scores_count_both_signs_for_a_policy_target():
    assert counts_bad_news("value") and counts_bad_news("max-q") and counts_bad_news("q:1")
    assert not counts_bad_news("policy") and not counts_bad_news("logit:3")
    features = NMFFeatures("x", np.eye(2, 3, dtype=np.float32), "attribution", 0.0)
    attributions = np.zeros((1, 3, 2, 2), dtype=np.float32)
    attributions[0, 0, 0, 0] = 4.0  # feature 0: evidence for the action, on the hazard
    attributions[0, 1, 0, 0] = -1.0  # feature 1: a little against it, on the hazard
    masks = np.zeros((1, 2, 2), dtype=bool)
    masks[0, 0, 0] = True
    bad_news, _ = hazard_scores(features, attributions, masks)
    either_sign, shares = hazard_scores(features, attributions, masks, bad_news=False)
    assert np.argmin(bad_news) == 1 and np.argmin(either_sign) == 0
    np.testing.assert_allclose(either_sign, [-4.0, -1.0], atol=1e-5)
    np.testing.assert_allclose(shares, [1.0, 1.0], atol=1e-5)


@pytest.mark.slow
def test_attribute_then_edit_reach_the_policys_own_trunk(separate_trunk_model, tmp_path):
    """The demo's path on a separate-trunk agent: attribute the policy at 2b, edit a feature."""
    report = tmp_path / "report"
    assert main([
        "attribute", str(separate_trunk_model), "--env", COINRUN,
        "--env-kwargs", "distribution_mode=easy", "--sample-envs", "2", "--sample-steps", "16",
        "--sample-every", "2", "--trajectories", "1", "--trajectory-steps", "12",
        "--features", "3", "--steps", "4", "--no-object-labels", "--layer", "2b",
        "--target", "policy", "--out", str(report),
    ]) == 0  # fmt: skip
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["layer"], summary["target"]) == (f"{PI}.2b", "policy")
    out = tmp_path / "edited"
    assert main(["edit", str(separate_trunk_model), "--features", str(report), "--feature", "0",
                 "--out", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "config.json").read_text())["edit"]["layer"] == f"{PI}.2b"
    audit = tmp_path / "audit"  # its failures attributed with the report's target and features
    assert main(["audit", str(separate_trunk_model), "--env", COINRUN, "--env-kwargs",
                 "distribution_mode=easy", "--levels", "16", "--workers", "1", "--features",
                 str(report), "--out", str(audit)]) == 0  # fmt: skip
    assert json.loads((audit / "summary.json").read_text())["failures"]  # 8 of these 16 levels
    attributed = json.loads((audit / "attribution" / "summary.json").read_text())
    assert (attributed["layer"], attributed["target"]) == (f"{PI}.2b", "policy")
