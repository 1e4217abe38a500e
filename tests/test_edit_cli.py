"""``python -m interpret edit`` end to end: a tiny interpretable PPO, a features report, the edited
run directory in plain SB3, blindness to the features, and one-line errors for bad input."""

import json
import re

import numpy as np
import pytest
import stable_baselines3 as sb3
import torch
from tiny_models import COINRUN, MODELS, saved_model

import agents
from interpret.attribution.features import read_features_report
from interpret.cli import main
from interpret.core.errors import InterpretError

LABELS = ["buzzsaw", "", "enemy left", "enemy right"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_report(path, directions, labels, layer="2b", layer_shape=(32, 32, 32)):
    """A features report as ``attribute`` writes one (the parts ``edit`` reads)."""
    path.mkdir(parents=True)
    summary = {
        "layer": layer,
        "target": "value",
        "n_steps": 10,
        "env_id": COINRUN,
        "env_options": {"distribution_mode": "easy"},
        "layer_shape": list(layer_shape),
        "directions": directions.tolist(),
        "labels": labels,
    }
    (path / "summary.json").write_text(json.dumps(summary))
    np.savez_compressed(path / "arrays.npz", directions=directions)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A run directory (model.zip + config.json) and a 4-feature report at 2b."""
    root = tmp_path_factory.mktemp("edit")
    run = root / "run"
    run.mkdir()
    MODELS["ours-ppo-interpretable"]().save(run / "model.zip")
    (run / "config.json").write_text(json.dumps({"algo": "ppo", "env_id": COINRUN, "seed": 7}))
    directions = np.random.default_rng(0).random((4, 32)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    report = write_report(root / "report", directions, LABELS)
    return root, run, report, directions


def edit(run, *args):
    return main(["edit", str(run), *map(str, args)])


def plain_state(path):
    return sb3.PPO.load(path, device="cpu").policy.state_dict()


def changed_weights(before, after):
    """Names of the tensors that differ, the actor's and critic's aliases of the shared
    extractor (``pi_``/``vf_features_extractor``) counted once."""
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    return sorted({re.sub(r"^(pi_|vf_)(?=features_extractor)", "", n) for n in changed})


def observations(n=4):
    return np.random.default_rng(1).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def assert_blind(view, layer, vectors, key="value"):
    """The part above `layer` gives the same outputs whatever multiples of `vectors` are added
    to the layer's activations (vectors broadcast over positions)."""
    lower, upper = view.split(layer)
    with torch.no_grad():
        a = lower(view.preprocess(observations()))
        base = upper(a)
        shape = (1, -1) + (1,) * (a.dim() - 2)
        for coefficients in ([3.0, -1.0], [-2.0, 0.5], [10.0, 4.0]):
            shift = sum(c * torch.as_tensor(v).float().reshape(shape) for c, v in
                        zip(coefficients, vectors, strict=False))  # fmt: skip
            moved = upper(a + shift)
            for name in base:
                torch.testing.assert_close(moved[name], base[name], atol=2e-4, rtol=1e-4)


def test_edit_by_label_end_to_end(setup, capsys):
    root, run, report, directions = setup
    out = root / "by-label"
    assert edit(run, "--features", report, "--feature", "BUZZ", "--out", out) == 0
    line = capsys.readouterr().out.strip().splitlines()
    assert "3a.conv.weight" in line[0] and "buzzsaw" in line[0] and line[-1] == f"wrote {out}"

    before, after = plain_state(run / "model.zip"), plain_state(out / "model.zip")
    changed = changed_weights(before, after)
    assert changed == ["features_extractor.net.3a.conv.weight"]  # the rest is bit for bit
    v = directions[0].astype(np.float64)
    p = np.eye(32) - np.outer(v, v) / (
        v @ v
    )  # Appendix A, independently of interpret.editing.projection
    w = before[changed[0]].double().numpy()
    expected = np.einsum("oc...,cd->od...", w, p)
    np.testing.assert_allclose(after[changed[0]].double().numpy(), expected, atol=1e-6)

    edited, original = agents.load(out), agents.load(run)
    assert_blind(edited, "pool2", [directions[0], directions[0]])
    lower, upper = original.split("pool2")
    with torch.no_grad():
        a = lower(original.preprocess(observations()))
        shift = 5 * torch.as_tensor(directions[0])[None, :, None, None]
        assert (upper(a + shift)["value"] - upper(a)["value"]).abs().max() > 1e-4

    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 7 and config["env_id"] == COINRUN  # the source run's config
    record = config["edit"]
    assert record == edited.metadata["edit"]  # the same record inside the zip
    assert record["layer"] == "2b" and record["rank"] == 1
    assert record["feature_indices"] == [0] and record["feature_labels"] == ["buzzsaw"]
    assert record["parameters"] == changed
    assert record["features_report"] == str(report)
    assert record["source_model"].endswith("model.zip")
    np.testing.assert_allclose(record["directions"], directions[[0]], rtol=1e-6)


def test_several_features_project_out_their_span(setup, capsys):
    root, run, report, directions = setup
    out = root / "span"
    keys = ["0", "enemy right", "buzzsaw"]  # a feature named twice (buzzsaw is 0) counts once
    assert edit(run, "--features", report, "--feature", *keys, "--out", out) == 0
    view = agents.load(out)
    record = view.metadata["edit"]
    assert record["rank"] == 2 and record["feature_indices"] == [0, 3]
    assert record["feature_labels"] == ["buzzsaw", "enemy right"]
    assert_blind(view, "pool2", [directions[0], directions[3]])
    again = root / "span-then-1"  # an edit of an edited run keeps the history
    assert edit(out, "--features", report, "--feature", "1", "--out", again) == 0
    twice = agents.load(again)
    assert twice.metadata["edit"]["previous_edit"] == record
    assert_blind(twice, "pool2", [directions[1], directions[1]])  # W P_span P_1: blind to v1


def test_direction_file_at_a_dense_layer(setup, tmp_path):
    _, run, _, _ = setup
    vectors = np.random.default_rng(2).standard_normal((2, 256))
    np.save(tmp_path / "v.npy", vectors)
    out = tmp_path / "dense"
    assert edit(run, "--direction-file", tmp_path / "v.npy", "--layer", "fc1", "--out", out) == 0
    before, after = plain_state(run / "model.zip"), plain_state(out / "model.zip")
    assert changed_weights(before, after) == ["features_extractor.net.fc2.linear.weight"]
    view = agents.load(out)
    assert view.metadata["edit"]["direction_file"] == str(tmp_path / "v.npy")
    assert view.metadata["edit"]["rank"] == 2
    assert_blind(view, "fc1", list(vectors))


def test_existing_out_needs_force_and_the_source_is_never_replaced(setup, capsys):
    root, run, report, _ = setup
    out = root / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert edit(run, "--features", report, "--feature", "1", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert (out / "keep.txt").read_text() == "mine"
    assert edit(run, "--features", report, "--feature", "1", "--out", out, "--force") == 0
    assert not (out / "keep.txt").exists() and (out / "model.zip").is_file()
    assert agents.load(out).metadata["edit"]["feature_labels"] == ["feature 1"]
    capsys.readouterr()
    assert edit(run, "--features", report, "--feature", "1", "--out", run, "--force") == 2
    assert "holds the source model" in capsys.readouterr().err
    assert (run / "model.zip").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--feature", "lava"], "no feature labelled 'lava'; valid: indices 0-3; labels: 0="),
        (["--feature", "enemy"], "matches several labels"),
        (["--feature", "4"], "out of range"),
        ([], "needs --feature"),
        (["--feature", "0", "--layer", "2a"], "at layer '2b', not '2a'"),
    ],
)
def test_bad_selection_is_one_line_exit_2(setup, capsys, args, message):
    root, run, report, _ = setup
    out = root / "never"
    assert edit(run, "--features", report, *args, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()


def test_report_of_another_architecture_is_refused(setup, capsys, tmp_path):
    _, run, _, _ = setup
    narrow = write_report(
        tmp_path / "r16", np.ones((2, 16), np.float32), ["", ""], "2b", (16, 8, 8)
    )
    assert edit(run, "--features", narrow, "--feature", "0", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another architecture" in err
    nolayer = write_report(tmp_path / "rx", np.ones((1, 32), np.float32), [""], "block9")
    assert edit(run, "--features", nolayer, "--feature", "0", "--out", tmp_path / "o") == 2
    assert "has no layer 'block9'" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.ones(31))
    assert edit(run, "--direction-file", tmp_path / "bad.npy", "--layer", "2b", "--out",
                tmp_path / "o") == 2  # fmt: skip
    assert "31 entries per direction; layer '2b' has 32 channels" in capsys.readouterr().err
    assert edit(run, "--features", tmp_path, "--feature", "0", "--out", tmp_path / "o") == 2
    assert "not an attribution report" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_real_report_hazard_feature_and_the_edited_run_in_attribute(tmp_path, capsys):
    """The real `attribute` verb makes the report; `--feature hazards` measures and records its
    choice; the edited run is a model the `attribute` verb takes."""
    _, path = saved_model("ours-ppo-interpretable", tmp_path)
    small = ["--sample-envs", "2", "--sample-steps", "16", "--trajectories", "1",
             "--trajectory-steps", "16", "--features", "3", "--steps", "4"]  # fmt: skip
    env = ["--env", COINRUN, "--env-kwargs", "distribution_mode=easy"]
    report = tmp_path / "report"
    assert main(["attribute", str(path), *env, *small, "--out", str(report)]) == 0
    out = tmp_path / "edited"
    args = ["--feature", "hazards", "--hazard-observations", "6", "--out", out]
    assert edit(path, "--features", report, *args) == 0
    printed = capsys.readouterr().out
    record = agents.load(out).metadata["edit"]
    hazard = record["hazard_attribution"]
    assert len(hazard["scores"]) == 3 and np.isfinite(hazard["scores"]).all()
    assert all(0 <= share <= 1 for share in hazard["shares"])
    assert record["feature_indices"] == [int(np.argmin(hazard["scores"]))] == [hazard["chosen"]]
    assert hazard["observations"] == 6 and hazard["n_steps"] == 4
    assert hazard["env_options"] == {"distribution_mode": "easy"}
    assert "<- most negative" in printed
    again = tmp_path / "report-edited"
    assert main(["attribute", str(out), *env, *small, "--out", str(again)]) == 0
    summary = json.loads((again / "summary.json").read_text())
    assert summary["model"] == str(out / "model.zip")


def test_label_selection_rules(tmp_path):
    directions = np.eye(4, 8, dtype=np.float32)
    path = write_report(tmp_path / "r", directions, ["enemy", "enemy left", "", "Buzzsaw"], "x")
    report = read_features_report(path)
    assert report.index("enemy") == 0  # an exact label wins over containing ones
    assert [report.index(key) for key in ["LEFT", " buzzsaw", "2", "1"]] == [1, 3, 2, 1]
    assert [report.name(i) for i in range(4)] == ["enemy", "enemy left", "feature 2", "Buzzsaw"]
    np.testing.assert_array_equal(report.features.directions, directions)
    assert report.target == "value" and report.layer_shape == (32, 32, 32)
    with pytest.raises(InterpretError, match="matches several"):
        report.index("en")
    with pytest.raises(InterpretError, match="out of range"):
        report.index("-1")
