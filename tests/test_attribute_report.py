"""``python -m interpret attribute`` end to end: real agents (ours, DQN, plain SB3) in real envs,
the report's files, bad input, and the page itself driven in headless Chromium.

The browser test needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright``
package (the ``dev`` extra), which drives the system browser: nothing is downloaded. It is
skipped only outside CI when no Chromium is found; in CI (``CI`` set) it fails instead.
"""

import json
import os
import shutil

import numpy as np
import pytest
from tiny_models import COINRUN, saved_model

from interpret.attribution.features import read_features_report
from interpret.attribution.object_masks import OBJECT_CLASSES
from interpret.cli import main

pytestmark = pytest.mark.slow

SMALL = [
    "--sample-envs", "2", "--sample-steps", "24", "--sample-every", "2",
    "--trajectories", "2", "--trajectory-steps", "40", "--features", "4",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    _, path = saved_model("ours-ppo-interpretable", tmp_path_factory.mktemp("model"))
    out = tmp_path_factory.mktemp("reports") / "tiny"
    args = ["attribute", str(path), "--env", COINRUN, "--env-kwargs", "distribution_mode=easy"]
    assert main([*args, *SMALL, "--layer", "2b", "--out", str(out)]) == 0
    return out


def test_report_files(report):
    html = (report / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # opens without a network
    summary = json.loads((report / "summary.json").read_text())
    assert summary["layer"] == "2b" and summary["target"] == "value"
    assert summary["precision"] == "fp32"
    assert summary["alphas"] == pytest.approx([0.1 * i for i in range(1, 11)])
    directions = np.array(summary["directions"])
    assert directions.shape == (4, 32) and (directions >= 0).all()
    assert len(summary["labels"]) == 4
    objects = summary["object_labels"]  # CoinRun at a conv layer: labelled by the game's objects
    assert objects["classes"] == list(OBJECT_CLASSES)
    assert np.array(objects["lift"]).shape == (4, len(OBJECT_CLASSES))
    shares = np.array(objects["shares"])
    np.testing.assert_allclose(shares.sum(axis=1), 1, atol=1e-3)  # each feature's whole mass
    assert sum(objects["area"]) == pytest.approx(1, abs=1e-3)  # the masks partition the pixels
    assert summary["labels"] == objects["labels"]
    assert "Features labelled by the game" in html
    report_features = read_features_report(report)
    for i, label in enumerate(objects["labels"]):  # what `edit --feature LABEL` resolves
        if label:
            assert report_features.index(label) == i
    assert summary["completeness"]["max_abs_error"] >= 0
    for mark in summary["bookmarks"]:
        assert (mark["advantage"] < 0) == (mark["kind"] == "failure")
    episodes = [(m["trajectory"], m["episode"]) for m in summary["bookmarks"]]
    assert len(episodes) == len(set(episodes))  # at most one per episode
    with np.load(report / "arrays.npz") as arrays:
        np.testing.assert_allclose(arrays["directions"], directions, rtol=1e-6)
        assert arrays["t0_observations"].shape == (40, 64, 64, 3)
        assert arrays["t0_positive"].shape == (40, 4, 32, 32)
        assert arrays["t1_residual"].shape == (40, 32, 32)


@pytest.mark.parametrize(
    ("name", "env", "layer"),
    [
        ("ours-dqn-nature", "atari:Pong", "cnn.3"),
        ("plain-ppo-cnn", COINRUN, "features_extractor.cnn.3"),
    ],
)
def test_dqn_and_plain_sb3_models(tmp_path, name, env, layer):
    _, path = saved_model(name, tmp_path / "model")
    out = tmp_path / "report"
    args = ["attribute", str(path), "--env", env, "--layer", layer, "--out", str(out)]
    assert main([*args, *SMALL, "--trajectory-steps", "20"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == ("max-q" if "dqn" in name else "value")
    assert np.array(summary["directions"]).shape[0] == 4
    assert (summary["object_labels"] is None) == (env != COINRUN)  # object masks: CoinRun only


def test_bad_input_is_one_line(tmp_path, capsys):
    _, path = saved_model("ours-ppo-interpretable", tmp_path / "model")
    base = ["attribute", str(path), "--env", COINRUN, *SMALL, "--out", str(tmp_path / "r")]
    for extra in (["--layer", "nope"], ["--layer", "fc1"], ["--target", "q:1"]):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices
        main([*base, "--precision", "fp16"])
    assert exit_info.value.code == 2 and "precision" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _chromium() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if found is None and not os.environ.get("CI"):
        pytest.skip("no chromium (install Debian's chromium package); required in CI")
    assert found, "CI needs Debian's chromium package for the browser test"
    return found


def test_report_in_headless_chromium(report, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((report / "index.html").as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)

            def canvas(name):
                return page.evaluate(f"document.getElementById('{name}').toDataURL()")

            frame = canvas("obs")
            assert page.evaluate("window.attributionState.step") == 0
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            assert page.evaluate("window.attributionState.step") == 5
            assert canvas("obs") != frame  # the agent moved (CoinRun frames change)
            page.keyboard.press("ArrowLeft")
            assert page.evaluate("window.attributionState.step") == 4

            page.evaluate("location.hash = '#trajectory=1&step=7'")  # the audit's deep links
            page.wait_for_function("window.attributionState.traj === 1", timeout=10_000)
            assert page.evaluate("window.attributionState.step") == 7
            assert page.evaluate("document.getElementById('traj').value") == "1"

            overlay = canvas("pos") + canvas("neg")
            page.hover(".legend-item[data-feature='0']")
            assert page.evaluate("window.attributionState.isolate") == 0
            assert canvas("pos") + canvas("neg") != overlay
            page.mouse.move(0, 0)
            assert canvas("pos") + canvas("neg") == overlay

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert errors == []
