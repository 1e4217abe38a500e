"""Bad input to every ``python -m interpret`` verb, as a table: unknown verbs and options, bad
values, missing, empty, truncated, foreign and corrupt files, models of another game,
out-of-range indices and counts, unwritable and file outputs, interrupted runs and concurrent
writers. Each case must exit with its status, print one line on stderr (no traceback), and
write or replace nothing (see ``bad_inputs.check``). train.py's table is in
``test_bad_inputs_train.py``."""

import json

import numpy as np
import pytest
from bad_inputs import Case, check

pytestmark = pytest.mark.usefixtures("one_torch_thread")

I = "interpret"  # noqa: E741
COINRUN = "procgen:coinrun"

# A valid command per verb (up to the fault each case puts in): {model} is the model argument.
BASE = {
    "attribute": ["attribute", "{model}", "--layer", "2b", "--features", "2", "--out", "{out}"],
    "audit": ["audit", "{model}", "--levels", "2", "--executor", "serial", "--no-attribution",
              "--out", "{out}"],
    "compare": ["compare", "{model}", "{ws.coinrun}", "--levels", "2", "--executor", "serial",
                "--out", "{out}"],
    "compare-b": ["compare", "{ws.coinrun}", "{model}", "--levels", "2", "--executor", "serial",
                  "--out", "{out}"],
    "edit": ["edit", "{model}", "--features", "{ws.report}", "--feature", "0", "--out", "{out}"],
    "dissect": ["dissect", "{model}", "--layer", "2b", "--out", "{out}"],
    "occlude": ["occlude", "{model}", "--sample-envs", "1", "--sample-steps", "4",
                "--out", "{out}"],
    "synthesize": ["synthesize", "{model}", "--frames", "8", "--out", "{out}"],
    "imagine": ["imagine", "--gol", "--train-steps", "10", "--out", "{out}"],
}  # fmt: skip
MODEL_VERBS = (
    "attribute", "audit", "compare", "compare-b", "edit", "dissect", "occlude", "synthesize"
)  # fmt: skip


def cmd(verb: str, *extra: str, model: str = "{ws.coinrun}") -> list[str]:
    return [a.replace("{model}", model) for a in BASE[verb]] + list(extra)


def cases_for(verb: str, rows: list[tuple]) -> list[Case]:
    """(id, extra argv, expected text) rows of one verb; a row may end with a dict of Case
    fields, and name another model with ``model=``."""
    out = []
    for row in rows:
        name, extra, match, *more = row
        options = dict(more[0]) if more else {}
        model = options.pop("model", "{ws.coinrun}")
        out.append(Case(f"{verb}: {name}", I, cmd(verb, *extra, model=model), match, **options))
    return out


# -- models that cannot be read, in every verb that reads one --------------------------------
MODEL_FAULTS = [
    ("missing file", "{bad:missing}", "not found"),
    ("empty file", "{bad:empty}", "not a zip file"),
    ("text file", "{bad:text}", "not a zip file"),
    ("truncated zip", "{bad:truncated}", "not a zip file"),
    ("zip without data", "{bad:no-data}", "missing data"),
    ("corrupt deflate stream (zlib.error)", "{bad:deflate}", "corrupt"),
    ("pickle payload in policy.pth", "{bad:payload}", "cannot load policy.pth"),
    ("directory without a model", "{bad:empty-dir}", "without a model.zip"),
    ("unknown zoo name", "{bad:zoo}", "no zoo model"),
]
FAULT_CASES = [
    Case(f"{verb}: model is a {name}", I, cmd(verb, model=model), match)
    for verb in MODEL_VERBS
    for name, model, match in MODEL_FAULTS
]
FAULT_CASES += [
    Case("attribute: corrupt deflate in policy.pth", I, cmd("attribute", model="{bad:deflate-pth}"),
         "corrupt"),
    Case("dissect: zip with a broken data JSON", I, cmd("dissect", model="{bad:bad-json}"),
         "corrupt JSON"),
    Case("edit: a report directory as the model", I, cmd("edit", model="{bad:report-dir}"),
         "without a model.zip"),
]  # fmt: skip


# -- outputs: refused before any work ---------------------------------------------------------
def _existing_report(tmp, ws):
    (tmp / "out").mkdir()
    (tmp / "out" / "index.html").write_text("an older report\n")


def _file_out(tmp, ws):
    (tmp / "out").write_text("my notes, not a report\n")


OUTPUTS = [
    ("--out is an existing file", "{out}", "is an existing file", _file_out),
    ("--out under a regular file", "{ws.file}/sub/out", "cannot be created", None),
    ("--out in /proc (not writable, even by root)", "/proc/rlinterp-test/out", "cannot be", None),
    ("--out exists, no --force", "{out}", "pass --force", _existing_report),
]
OUTPUT_CASES = []
for verb in ("attribute", "audit", "compare", "edit", "dissect", "occlude", "synthesize",
             "imagine"):  # fmt: skip
    for name, out, match, setup in OUTPUTS:
        argv = [out if a == "{out}" else a for a in cmd(verb)]
        OUTPUT_CASES.append(Case(f"{verb}: {name}", I, argv, match, setup=setup))


# -- values: ranges, types, counts against the model ------------------------------------------
def _features_report_with(tmp, ws, summary=None, arrays=None):
    path = tmp / "rep"
    path.mkdir()
    base = json.loads((ws.report / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps(summary if summary is not None else base))
    if arrays is not None:
        np.savez(path / "arrays.npz", **arrays)


PONG = {"model": "{ws.pong}"}
VALUE_CASES = [
    Case("no verb", I, [], "required"),
    Case("unknown verb", I, ["explain", "{ws.coinrun}"], "invalid choice"),
]
VALUE_CASES += cases_for("attribute", [
    ("unknown option", ["--colour", "red"], "unrecognized arguments"),
    ("--features abc", ["--features", "abc"], "invalid int value"),
    ("--features 0", ["--features", "0"], "must be positive"),
    ("--features 10000 (layer has 32 channels)", ["--features", "10000"], "at most 32"),
    ("--steps 0", ["--steps", "0"], "must be positive"),
    ("--smooth -1", ["--smooth", "-1"], ">= 0"),
    ("--batch-size 0", ["--batch-size", "0"], "must be positive"),
    ("--target logit:99 (15 actions)", ["--target", "logit:99"], "out of range"),
    ("--target q:1 on an actor-critic", ["--target", "q:1"], "needs a 'q' output"),
    ("--target actions:HOP (no such button)", ["--target", "actions:HOP"], "presses 'HOP'"),
    ("--target actions:99 (15 actions)", ["--target", "actions:5,99"], "out of range"),
    ("--layer unknown", ["--layer", "nope"], "unknown layer"),
    ("--layer fc1 (not convolutional)", ["--layer", "fc1"], "convolutional layer"),
    ("--env unknown", ["--env", "nosuchenv-v0"], "procgen:<game>"),
    ("--env-kwargs unknown option", ["--env-kwargs", "colour=red"], "colour"),
    ("Pong model played on CoinRun", ["--env", COINRUN, "--layer", "cnn.3"], "does not fit",
     PONG),
    ("Ctrl-C while playing", [], "interrupted; nothing written",
     {"code": 130, "interrupt": "interpret.core.trajectory:record_trajectories"}),
])  # fmt: skip
VALUE_CASES += cases_for("audit", [
    ("--levels 0", ["--levels", "0"], "--levels must be positive"),
    ("--levels abc", ["--levels", "abc"], "invalid int value"),
    ("--workers 0", ["--workers", "0"], "--workers must be positive"),
    ("--n-envs 0", ["--n-envs", "0"], "--n-envs must be positive"),
    ("--start-level -1", ["--start-level", "-1"], "--start-level must be >= 0"),
    ("--show 0", ["--show", "0"], "--show must be positive"),
    ("--context 0", ["--context", "0"], "--context must be positive"),
    ("--extremes -1", ["--extremes", "-1"], "--extremes must be >= 0"),
    ("--level-edit unknown", ["--level-edit", "no-coins"], "invalid choice"),
    ("--executor unknown", ["--executor", "threads"], "invalid choice"),
    ("another game", ["--env", "procgen:bigfish"], "procgen:coinrun only"),
    ("--features not a report", ["--features", "{tmp}/nowhere"], "not an attribution report"),
    ("--features report with a corrupt arrays.npz", ["--features", "{tmp}/rep"], "not a readable",
     {"setup": lambda tmp, ws: _corrupt_report(tmp, ws)}),
    ("Pong model played on CoinRun", ["--env", COINRUN], "does not fit", PONG),
    ("Ctrl-C while playing", [], "interrupted; nothing written",
     {"code": 130, "interrupt": "interpret.audit.engine:run_audit"}),
])  # fmt: skip
VALUE_CASES += [
    Case("audit: --features at another layer", I,
         ["audit", "{ws.coinrun}", "--features", "{ws.report}", "--layer", "1a", "--out", "{out}"],
         "--features are at layer"),
    Case("audit: --layer unknown", I,
         ["audit", "{ws.coinrun}", "--layer", "nope", "--out", "{out}"], "unknown layer"),
    Case("edit: --features without --feature", I,
         ["edit", "{ws.coinrun}", "--features", "{ws.report}", "--out", "{out}"],
         "needs --feature"),
]  # fmt: skip
VALUE_CASES += cases_for("compare", [
    ("--levels 0", ["--levels", "0"], "--levels must be positive"),
    ("another game", ["--env", "procgen:bigfish"], "procgen:coinrun only"),
    ("Ctrl-C while playing A", [], "interrupted; nothing written",
     {"code": 130, "interrupt": "interpret.audit.engine:run_audit"}),
])  # fmt: skip
VALUE_CASES += [
    Case("compare: Pong model as B on CoinRun", I, cmd("compare-b", model="{ws.pong}"),
         "does not fit"),
    Case("compare: model B missing", I, ["compare", "{ws.coinrun}"], "required"),
]  # fmt: skip
VALUE_CASES += cases_for("edit", [
    ("--feature 99 (4 features)", ["--feature", "99"], "out of range"),
    ("--feature unknown label", ["--feature", "lava"], "no feature labelled"),
    ("--feature without a value", ["--feature"], "expected at least one argument"),
    ("report for another architecture (16 channels)", ["--features", "{ws.report16}"],
     "another architecture"),
    ("report summary is a list", ["--features", "{tmp}/rep"], "not an attribution report",
     {"setup": lambda tmp, ws: _features_report_with(tmp, ws, summary=[1, 2])}),
    ("report labels of the wrong type", ["--features", "{tmp}/rep"], "labels",
     {"setup": lambda tmp, ws: _bad_labels(tmp, ws)}),
    ("--out holds the source model", ["--out", "{ws.coinrun}", "--force"],
     "holds the source model"),
    ("Pong model with a CoinRun 2b report", [], "no layer '2b'", PONG),
    ("--feature hazards, --hazard-observations 0",
     ["--feature", "hazards", "--hazard-observations", "0"],
     "--hazard-observations must be positive"),
    ("Ctrl-C while editing", [], "interrupted; nothing written",
     {"code": 130, "interrupt": "interpret.editing.projection:project_out"}),
])  # fmt: skip
DIRECTION = ["edit", "{ws.coinrun}", "--out", "{out}", "--direction-file"]
VALUE_CASES += [
    Case("edit: no --features or --direction-file", I, ["edit", "{ws.coinrun}", "--out", "{out}"],
         "required"),
    Case("edit: --direction-file missing", I, [*DIRECTION, "{tmp}/v.npy", "--layer", "2b"],
         "not found"),
    Case("edit: --direction-file of 16 channels at 2b (32)", I,
         [*DIRECTION, "{tmp}/v.npy", "--layer", "2b"], "32 channels",
         setup=lambda tmp, ws: np.save(tmp / "v.npy", np.ones(16))),
    Case("edit: --direction-file holding a pickled object array", I,
         [*DIRECTION, "{tmp}/v.npy", "--layer", "2b"], "cannot read",
         setup=lambda tmp, ws: np.save(tmp / "v.npy", np.array([{}], dtype=object))),
    Case("edit: --direction-file that is text", I, [*DIRECTION, "{bad:text}", "--layer", "2b"],
         "cannot read"),
    Case("edit: --direction-file without --layer", I, [*DIRECTION, "{tmp}/v.npy"],
         "needs --layer", setup=lambda tmp, ws: np.save(tmp / "v.npy", np.ones(32))),
    Case("edit: --direction-file at an unknown layer", I,
         [*DIRECTION, "{tmp}/v.npy", "--layer", "9z"], "unknown layer",
         setup=lambda tmp, ws: np.save(tmp / "v.npy", np.ones(32))),
]  # fmt: skip
VALUE_CASES += cases_for("dissect", [
    ("--layer unknown", ["--layer", "nope"], "unknown layer"),
    ("--quantile 0.7", ["--quantile", "0.7"], "--quantile must be in (0, 0.5)"),
    ("--n-envs 0", ["--n-envs", "0"], "must be positive"),
    ("--top 0", ["--top", "0"], "must be positive"),
    ("--spacing -1", ["--spacing", "-1"], "--spacing must be >= 0"),
    ("--effect-obs -1", ["--effect-obs", "-1"], "--effect-obs must be >= 0"),
    ("--batch-size 0", ["--batch-size", "0"], "must be positive"),
    ("--trajectory missing", ["--trajectory", "{tmp}/none.npz"], "not found"),
    ("--trajectory a text file", ["--trajectory", "{bad:text-npz}"], "not a readable"),
    ("--trajectory a model zip", ["--trajectory", "{ws.coinrun_zip}"], "not a trajectory file"),
    ("--trajectory other arrays", ["--trajectory", "{bad:other-npz}"], "not a trajectory file"),
    ("--trajectory object arrays", ["--trajectory", "{bad:object-npz}"], "not a readable"),
    ("--trajectory corrupt deflate", ["--trajectory", "{bad:deflate-npz}"], "not a readable"),
    ("--trajectory without steps", ["--trajectory", "{bad:empty-traj}"], "length >= 1"),
    ("--trajectory of Pong frames", ["--trajectory", "{ws.pong_traj}"], "does not fit"),
    ("Pong model played on CoinRun", ["--env", COINRUN, "--layer", "cnn.3"], "does not fit",
     PONG),
    ("Ctrl-C while playing", [], "interrupted; nothing written",
     {"code": 130, "interrupt": "interpret.dissection.command:record_trajectories"}),
])  # fmt: skip
VALUE_CASES += cases_for("occlude", [
    ("--sample-envs 0", ["--sample-envs", "0"], "--sample-envs must be positive"),
    ("--sample-every 0", ["--sample-every", "0"], "--sample-every must be positive"),
    ("--classes dragon", ["--classes", "dragon"], "invalid choice"),
    ("--examples -1", ["--examples", "-1"], "--examples must be >= 0"),
    ("--env atari:Pong", ["--env", "atari:Pong"], "draws CoinRun's objects"),
    ("Pong model played on CoinRun", ["--env", COINRUN], "does not fit", PONG),
    ("Ctrl-C while playing", [], "interrupted; nothing written",
     {"code": 130, "interrupt": "interpret.core.trajectory:record_trajectories"}),
])  # fmt: skip
GOL = ["imagine", "--gol", "--out", "{out}"]
WM = ["imagine", "{ws.wm}", "--out", "{out}"]
VALUE_CASES += [
    Case("imagine: neither MODEL nor --gol", I, ["imagine", "--out", "{out}"],
         "nothing to imagine"),
    Case("imagine: --gol --steps 1", I, [*GOL, "--steps", "1"], ">= 2"),
    Case("imagine: --gol --model-steps 1", I, [*GOL, "--model-steps", "1"], ">= 2"),
    Case("imagine: --gol --board 2", I, [*GOL, "--board", "2"], "at least 3"),
    Case("imagine: --gol --runs 0", I, [*GOL, "--runs", "0"], "--runs must be positive"),
    Case("imagine: --gol --lr 0", I, [*GOL, "--lr", "0"], "--lr must be positive"),
    Case("imagine: --gol --clip -1", I, [*GOL, "--clip", "-1"], ">= 0"),
    Case("imagine: --gol --sequences 0", I, [*GOL, "--sequences", "0"], "must be positive"),
    Case("imagine: --gol --loss unknown", I, [*GOL, "--loss", "l1"], "invalid choice"),
    Case("imagine: --gol --cell-output unknown", I, [*GOL, "--cell-output", "gelu"],
         "invalid choice"),
    Case("imagine: --gol --codec-kernel 5", I, [*GOL, "--codec-kernel", "5"], "invalid choice"),
    Case("imagine: --gol --adversarial-weight -1", I, [*GOL, "--adversarial-weight", "-1"],
         "--adversarial-weight"),
    Case("imagine: --gol --adversarial-fakes unknown", I, [*GOL, "--adversarial-fakes", "hard"],
         "invalid choice"),
    Case("imagine: --gol --linear-cell-output --cell-output tanh", I,
         [*GOL, "--linear-cell-output", "--cell-output", "tanh"], "exclude each other"),
    Case("imagine: --gol --adversarial-reals unknown", I, [*GOL, "--adversarial-reals", "first"],
         "invalid choice"),
    Case("imagine: --gol --checkpoints FILE", I, [*GOL, "--checkpoints", "{ws.file}"],
         "is a file, not a folder"),
    Case("imagine: --gol --diagnostic-sequences 1", I, [*GOL, "--diagnostic-sequences", "1"],
         "at least 2"),
    Case("imagine: MODEL is a PPO run", I, ["imagine", "{ws.coinrun}", "--out", "{out}"],
         "not a World Models run"),
    Case("imagine: MODEL missing", I, ["imagine", "{tmp}/none", "--out", "{out}"],
         "not a World Models run"),
    Case("imagine: MODEL and --gol", I, [*WM, "--gol"], "not both"),
    Case("imagine: MODEL --steps 0", I, [*WM, "--steps", "0"], "--steps must be positive"),
    Case("imagine: MODEL --temperature -1", I, [*WM, "--temperature", "-1"], ">= 0"),
    Case("imagine: MODEL whose config.json is a list", I,
         ["imagine", "{tmp}/wm", "--out", "{out}"], "not a World Models run",
         setup=lambda tmp, ws: _wm_config(tmp, "[1, 2]")),
    Case("imagine: Ctrl-C while training", I, [*GOL, "--train-steps", "10"],
         "interrupted; nothing written", code=130,
         interrupt="interpret.imagination.gol_experiment:train_gol"),
    Case("imagine: Ctrl-C while loading MODEL", I, WM, "interrupted; nothing written", code=130,
         interrupt="agents:load"),
]  # fmt: skip
VALUE_CASES += cases_for("synthesize", [
    ("--target action:99 (15 actions)", ["--target", "action:99"], "out of range"),
    ("--target action:x", ["--target", "action:x"], "expected action:K"),
    ("--target unknown", ["--target", "T++"], "unknown target"),
    ("--target module that does not exist", ["--target", "nosuchmodule:energy"],
     "cannot import"),
    ("--target function that fails", ["--target", "os:getcwd"], "fails on the agent's outputs"),
    ("--samples 0", ["--samples", "0"], "must be positive"),
    ("--epsilon 2", ["--epsilon", "2"], "[0, 1]"),
    ("--saliency-kernel 4", ["--saliency-kernel", "4"], "odd"),
    ("--variants unknown", ["--variants", "full,gan"], "unknown variant"),
    ("--beta 0", ["--beta", "0"], "--beta must be positive"),
    ("--steps -1", ["--steps", "-1"], "non-negative"),
    ("--cache-dir is a file", ["--cache-dir", "{ws.file}"], "is an existing file"),
    ("Pong model played on CoinRun", ["--env", COINRUN], "does not fit", PONG),
    ("Ctrl-C while recording", [], "interrupted",
     {"code": 130, "interrupt": "interpret.synthesis.pipeline:record_frames"}),
])  # fmt: skip


def _corrupt_report(tmp, ws):
    from bad_inputs import corrupt_deflate

    report = tmp / "rep"
    report.mkdir()
    (report / "summary.json").write_bytes((ws.report / "summary.json").read_bytes())
    corrupt_deflate(ws.report / "arrays.npz", report / "arrays.npz", "directions.npy")


def _bad_labels(tmp, ws):
    summary = json.loads((ws.report / "summary.json").read_text())
    _features_report_with(tmp, ws, summary={**summary, "labels": 7})


def _wm_config(tmp, text):
    (tmp / "wm").mkdir()
    (tmp / "wm" / "config.json").write_text(text)


# -- concurrent writers: the output is locked by another process ------------------------------
def _run_dir_out(tmp, ws):
    (tmp / "out").mkdir()
    (tmp / "out" / "config.json").write_text("{}")


LOCKED_CASES = [
    Case("edit --force onto a run another process is writing", I, cmd("edit", "--force"),
         "being written by process", setup=_run_dir_out, locked="{out}"),
    Case("attribute --force onto a directory another process is writing", I,
         cmd("attribute", "--force"), "being written by process", setup=_run_dir_out,
         locked="{out}"),
    Case("dissect --force onto a directory another process is writing", I,
         cmd("dissect", "--force"), "being written by process", setup=_run_dir_out,
         locked="{out}"),
]  # fmt: skip

CASES = FAULT_CASES + OUTPUT_CASES + VALUE_CASES + LOCKED_CASES


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case, bad_input_workspace, tmp_path, capfd, monkeypatch):
    check(case, tmp_path, bad_input_workspace, capfd, monkeypatch)


def test_the_table_is_large_enough():
    from test_bad_inputs_train import CASES as TRAIN_CASES
    from test_bad_inputs_train import SUBPROCESS_CASES

    assert len(CASES) + len(TRAIN_CASES) + len(SUBPROCESS_CASES) >= 130
