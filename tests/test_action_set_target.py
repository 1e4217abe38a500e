"""The ``actions:K,L,...`` target: the log-probability that the policy picks any action of a set
(CoinRun's jumps: ``actions:UP``), attributed at the policy's own trunk."""

import json

import numpy as np
import pytest
import torch
from tiny_models import COINRUN

import agents
from envs.action_names import action_names
from interpret.attribution.integrated_gradients import (
    HiddenLayerIntegratedGradients,
    expand_action_names,
    target_function,
    target_output,
)
from interpret.cli import main
from interpret.core.errors import InterpretError

PI = "pi_features_extractor"
PROCGEN = action_names(COINRUN, 15)


def observations(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_names_become_the_actions_that_press_them():
    assert PROCGEN[2] == "LEFT+UP" and PROCGEN[5] == "UP" and PROCGEN[8] == "RIGHT+UP"
    assert expand_action_names("actions:UP", PROCGEN) == "actions:2,5,8"
    assert expand_action_names("actions:up", PROCGEN) == "actions:2,5,8"  # any case
    assert expand_action_names("actions:right+up,NOOP", PROCGEN) == "actions:4,8"  # whole names
    assert expand_action_names("actions:LEFT,7", PROCGEN) == "actions:0,1,2,7"
    assert expand_action_names("actions:8,2,8", PROCGEN) == "actions:2,8"  # sorted, once
    for unchanged in ("value", "policy", "logit:3", None):
        assert expand_action_names(unchanged, PROCGEN) == unchanged
    with pytest.raises(InterpretError, match=r"no action is named or presses 'JUMP'.*5 UP"):
        expand_action_names("actions:JUMP", PROCGEN)


def test_an_action_set_reads_the_policys_logits(separate_trunk_model):
    view = agents.load(separate_trunk_model)
    assert target_output(view, "actions:2,5,8") == "logits"
    assert view.default_layer(target_output(view, "actions:5")) == f"{PI}.2b"
    outputs = view.outputs(view.preprocess(observations(1)))
    for bad in ("actions:", "actions:2,x", "actions:1,,2"):
        with pytest.raises(InterpretError, match="unknown target"):
            target_function(view, bad, outputs)
    with pytest.raises(InterpretError, match=r"index out of range .*15 actions"):
        target_function(view, "actions:5,15", outputs)


def test_action_set_target_integrates_the_probability_of_any_of_them(separate_trunk_model):
    view = agents.load(separate_trunk_model)
    layer = view.layer_for("2b", "logits")
    obs, chosen, steps = observations(4), [2, 5, 8], 6
    ig = HiddenLayerIntegratedGradients(view, layer, target="actions:2,5,8", n_steps=steps)
    result = ig.attribute(obs, batch_size=3)
    with torch.no_grad():
        probabilities = torch.softmax(view.outputs(view.preprocess(obs))["logits"], dim=1)
    jump = probabilities[:, chosen].sum(dim=1).log()  # log P(LEFT+UP or UP or RIGHT+UP)
    np.testing.assert_allclose(result.outputs, jump.numpy(), rtol=1e-5, atol=1e-6)

    lower, upper = view.split(layer)  # the integral by plain autograd, point by point
    with torch.no_grad():
        activations = lower(view.preprocess(obs))
    total = torch.zeros_like(activations)
    for alpha in [(i + 1) / steps for i in range(steps)]:
        point = (alpha * activations).requires_grad_(True)
        p = torch.softmax(upper(point)["logits"], dim=1)[:, chosen].sum(dim=1).log()
        (gradient,) = torch.autograd.grad(p.sum(), point)
        total += gradient / steps
    np.testing.assert_allclose(
        result.attributions, (total * activations).numpy(), rtol=1e-3, atol=1e-7
    )
    sums = result.attributions.reshape(len(obs), -1).sum(axis=1)
    np.testing.assert_allclose(sums - (result.outputs - result.baseline_outputs),
                               result.completeness_error, atol=1e-5)  # fmt: skip

    every = HiddenLayerIntegratedGradients(view, layer, target="actions:" + ",".join(
        str(k) for k in range(15)), n_steps=2).attribute(obs)  # fmt: skip
    np.testing.assert_allclose(every.outputs, 0.0, atol=1e-5)  # log P(any action) = 0
    np.testing.assert_allclose(every.attributions, 0.0, atol=1e-5)


def test_attribute_names_the_jumps_and_refuses_an_unknown_name(
    separate_trunk_model, tmp_path, capsys
):
    base = ["attribute", str(separate_trunk_model), "--env", COINRUN,
            "--env-kwargs", "distribution_mode=easy", "--sample-envs", "1", "--sample-steps", "8",
            "--sample-every", "2",
            "--trajectories", "1", "--trajectory-steps", "4", "--features", "2", "--steps", "2",
            "--no-object-labels"]  # fmt: skip
    out = tmp_path / "jump"
    assert main([*base, "--target", "actions:UP", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["layer"], summary["target"]) == (f"{PI}.2b", "actions:2,5,8")

    assert main([*base, "--target", "actions:HOP", "--out", str(tmp_path / "hop")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'HOP'" in err
    assert not (tmp_path / "hop").exists()
