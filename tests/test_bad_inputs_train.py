"""Bad input to ``train.py`` (PPO, DQN, World Models) as a table, like ``test_bad_inputs.py``:
unknown ids and options, bad values, unwritable and file outputs, a resumed run's broken files
(config.json, latest.json, checkpoints with pickle payloads or corrupt streams, normalization
with object arrays), interrupted runs and concurrent writers. Then the real thing, in
subprocesses: two writers on one run, Ctrl-C in train.py and in a parallel audit."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import Case, check, corrupt_deflate, payload_pth, rewrite_zip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parent.parent
T = "train"
CARTPOLE = ["ppo", "--env", "CartPole-v1", "--timesteps", "64", "--n-envs", "2", "--n-steps", "16",
            "--batch-size", "32", "--eval-episodes", "0", "--no-progress"]  # fmt: skip
DQN = ["dqn", "--env", "CartPole-v1", "--timesteps", "64", "--no-progress"]
COINRUN_WM = ["worldmodel", "--env", "procgen:coinrun", "--no-progress"]


def ppo(*extra, out="{out}"):
    return [*CARTPOLE, *extra, "--out", out]


def dqn(*extra):
    return [*DQN, *extra, "--out", "{out}"]


def wm(*extra):
    return [*COINRUN_WM, *extra, "--out", "{out}"]


SETTINGS = [
    ("unknown algorithm", ["a2c", "--env", "CartPole-v1", "--timesteps", "9"], "invalid choice"),
    ("unknown option", ppo("--colour", "red"), "unrecognized arguments"),
    ("unknown game", ["ppo", "--env", "procgen:coinrn", "--timesteps", "9", "--out", "{out}"],
     "coinrun"),
    ("unknown env id", ["ppo", "--env", "nosuchenv-v0", "--timesteps", "9", "--out", "{out}"],
     "procgen:<game>"),
    ("no --env", ["ppo", "--timesteps", "9", "--out", "{out}"], "--env is required"),
    ("unknown arch", ppo("--arch", "resnet"), "invalid choice"),
    ("unknown preset", ppo("--preset", "fast"), "invalid choice"),
    ("a DQN preset for PPO", ppo("--preset", "atari-dqn"), "not for ppo"),
    ("--timesteps -5", [*CARTPOLE, "--timesteps", "-5", "--out", "{out}"], "positive"),
    ("--timesteps 0", [*CARTPOLE, "--timesteps", "0", "--out", "{out}"], "positive"),
    ("--timesteps abc", [*CARTPOLE, "--timesteps", "abc", "--out", "{out}"], "invalid int"),
    ("--n-envs 0", [*CARTPOLE, "--n-envs", "0", "--out", "{out}"], "--n-envs must be positive"),
    ("--lr abc", ppo("--lr", "abc"), "learning_rate (--learning-rate) must be a number > 0"),
    ("--lr -1", ppo("--lr", "-1"), "learning_rate"),
    ("--lr lin_x", ppo("--lr", "lin_x"), "lin_<x>"),
    ("--batch-size 0", ppo("--batch-size", "0"), "batch_size (--batch-size) must be"),
    ("--batch-size 1 (PPO needs 2)", ppo("--batch-size", "1"), ">= 2 for PPO"),
    ("--batch-size 2.5", ppo("--batch-size", "2.5"), "batch_size"),
    ("--n-steps -3", ppo("--n-steps", "-3"), "n_steps (--n-steps) must be an integer >= 1"),
    ("--n-steps 1 with 1 env", [*CARTPOLE, "--n-envs", "1", "--n-steps", "1", "--out", "{out}"],
     "n_steps x n_envs"),
    ("--n-epochs 0", ppo("--n-epochs", "0"), "n_epochs"),
    ("--gamma 1.5", ppo("--gamma", "1.5"), "gamma (--gamma) must be a number in [0, 1]"),
    ("--gae-lambda -0.1", ppo("--gae-lambda", "-0.1"), "gae_lambda"),
    ("--clip-range 0", ppo("--clip-range", "0"), "clip_range"),
    ("--clip-range-vf -1", ppo("--clip-range-vf", "-1"), "clip_range_vf"),
    ("--ent-coef -1", ppo("--ent-coef", "-1"), "ent_coef"),
    ("--vf-coef nan", ppo("--vf-coef", "nan"), "vf_coef"),
    ("--max-grad-norm 0", ppo("--max-grad-norm", "0"), "max_grad_norm"),
    ("--normalize-reward maybe", ppo("--normalize-reward", "maybe"), "true or false"),
    ("--hp n_steps=abc", ppo("--hp", "n_steps=abc"), "n_steps"),
    ("--hp unknown keyword", ppo("--hp", "warp=9"), "'warp' is not a PPO setting"),
    ("--hp without =", ppo("--hp", "warp"), "warp"),
    ("--hp separate_value_trunk=2", ppo("--hp", "separate_value_trunk=2"), "true or false"),
    ("--micro-batch-size 0", ppo("--micro-batch-size", "0"),
     "micro_batch_size (--micro-batch-size) must be an integer >= 1 or None, got 0"),
    ("--micro-batch-size -8", ppo("--micro-batch-size", "-8"), "must be an integer >= 1"),
    ("--micro-batch-size 2.5", ppo("--micro-batch-size", "2.5"), "micro_batch_size"),
    ("--micro-batch-size over --batch-size", ppo("--micro-batch-size", "64"),
     "micro_batch_size (--micro-batch-size) must be at most batch_size (32), got 64"),
    ("--hp micro_batch_size=33 over --batch-size", ppo("--hp", "micro_batch_size=33"),
     "at most batch_size (32)"),
    ("--seed -1", ppo("--seed", "-1"), "seed must be an integer in [0, 2^31)"),
    ("--precision fp8", ppo("--precision", "fp8"), "invalid choice"),
    ("--precision bf16 on an MLP policy", ppo("--precision", "bf16"), "image policies only"),
    ("--piece-minutes 0", ppo("--piece-minutes", "0"), "--piece-minutes must be positive"),
    ("--piece-minutes abc", ppo("--piece-minutes", "abc"), "invalid float"),
    ("--piece-eval -1", ppo("--piece-eval", "-1"), "--piece-eval must be >= 0"),
    ("--checkpoint-minutes -1", ppo("--checkpoint-minutes", "-1"), "--checkpoint-minutes"),
    ("--checkpoint-minutes abc", ppo("--checkpoint-minutes", "abc"), "invalid float"),
    ("--eval-episodes -1", ppo("--eval-episodes", "-1"), ">= 0"),
    ("--eval-parallel 0", ppo("--eval-parallel", "0"), "--eval-parallel must be positive"),
    ("--device unknown", ppo("--device", "tpu"), "invalid choice"),
    ("--env-kwargs unknown option",
     ["ppo", "--env", "procgen:coinrun", "--timesteps", "9", "--n-envs", "2",
      "--env-kwargs", "colour=red", "--out", "{out}"], "num_levels"),
    ("worldmodel options for PPO", ppo("--generations", "3"), "--generations: worldmodel"),
    ("DQN --buffer-size -1", dqn("--buffer-size", "-1"), "buffer_size (--buffer-size)"),
    ("DQN separate_value_trunk", dqn("--hp", "separate_value_trunk=true"), "PPO only"),
    ("DQN --micro-batch-size", dqn("--micro-batch-size", "8"), "'micro_batch_size' is not a DQN"),
    ("DQN --learning-starts -1", dqn("--learning-starts", "-1"), "learning_starts"),
    ("DQN --train-freq 0", dqn("--train-freq", "0"), "train_freq"),
    ("DQN --gradient-steps 0", dqn("--gradient-steps", "0"), "gradient_steps"),
    ("DQN --target-update-interval 0", dqn("--target-update-interval", "0"),
     "target_update_interval"),
    ("DQN --exploration-fraction 2", dqn("--exploration-fraction", "2"), "exploration_fraction"),
    ("DQN --exploration-final-eps -1", dqn("--exploration-final-eps", "-1"),
     "exploration_final_eps"),
    ("DQN --n-epochs 5 (a PPO setting)", dqn("--n-epochs", "5"), "'n_epochs' is not a DQN"),
    ("DQN --batch-size 0", dqn("--batch-size", "0"), "batch_size"),
    ("worldmodel --rollouts 0", wm("--rollouts", "0"), "--rollouts must be > 0"),
    ("worldmodel --sigma0 -1", wm("--sigma0", "-1"), "--sigma0 must be > 0"),
    ("worldmodel --workers 0", wm("--workers", "0"), "--workers must be positive"),
    ("worldmodel --threads -1", wm("--threads", "-1"), "--threads must be >= 0"),
    ("worldmodel --train-in dream without --predict-reward", wm("--train-in", "dream"),
     "--predict-reward"),
    ("worldmodel --rollout-policy unknown", wm("--rollout-policy", "clever"), "--rollout-policy"),
    ("worldmodel with a PPO option", wm("--arch", "nature"), "--arch: not a worldmodel option"),
    ("worldmodel on a non-image env", ["worldmodel", "--env", "CartPole-v1", "--out", "{out}"],
     "needs RGB image observations"),
]  # fmt: skip
if not torch.cuda.is_available():
    SETTINGS.append(("--device cuda without a GPU", ppo("--device", "cuda"), "CUDA"))


def _file(tmp, _ws):
    (tmp / "out").write_text("notes\n")


def _non_empty(tmp, _ws):
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("mine\n")


def _a_run(tmp, _ws):
    (tmp / "out").mkdir()
    (tmp / "out" / "config.json").write_text("{}")


OUTPUTS = [
    ("--out is an existing file", ppo(), "is an existing file", _file),
    ("--out under a regular file", ppo(out="{ws.file}/run"), "cannot be created", None),
    ("--out in /proc", ppo(out="/proc/rlinterp-run"), "cannot be", None),
    ("--out is a non-empty directory", ppo(), "exists and is not empty", _non_empty),
    ("--out holds a run, no --resume", ppo(), "pass --resume", _a_run),
    ("worldmodel --out is an existing file", wm(), "is an existing file", _file),
    ("worldmodel --out under a regular file",
     [*COINRUN_WM, "--out", "{ws.file}/run"], "cannot be created", None),
    ("worldmodel --out is a non-empty directory", wm(), "exists and is not empty", _non_empty),
]  # fmt: skip


# -- a resumed run's files, broken one at a time ----------------------------------------------
def _copy_run(tmp, ws):
    """The workspace's run as a killed run leaves it: checkpoints, no model.zip yet."""
    shutil.copytree(ws.run, tmp / "run")
    (tmp / "run" / "model.zip").unlink()
    return tmp / "run"


def _edit_config(change):
    def setup(tmp, ws):
        run = _copy_run(tmp, ws)
        path = run / "config.json"
        data = json.loads(path.read_text())
        result = change(data)
        path.write_text(result if isinstance(result, str) else json.dumps(data))

    return setup


def _latest_zip(run: Path) -> Path:
    return (
        run / "checkpoints" / json.loads((run / "checkpoints" / "latest.json").read_text())["model"]
    )


def _edit_checkpoint(change):
    def setup(tmp, ws):
        run = _copy_run(tmp, ws)
        change(run, _latest_zip(run), tmp)

    return setup


def _write_latest(text):
    return _edit_checkpoint(
        lambda run, zip_, tmp: (run / "checkpoints/latest.json").write_text(text)
    )


def _replace_zip(run, zip_, replace):
    copy = zip_.with_suffix(".orig")
    zip_.rename(copy)
    rewrite_zip(copy, zip_, replace)
    copy.unlink()


def _payload_in(member):
    def change(run, zip_, tmp):
        _replace_zip(run, zip_, {member: payload_pth(tmp / "PWNED")})

    return _edit_checkpoint(change)


def _deflated(member):
    def change(run, zip_, tmp):
        copy = zip_.with_suffix(".orig")
        zip_.rename(copy)
        corrupt_deflate(copy, zip_, member)
        copy.unlink()

    return change


def _normalization(**arrays):
    def change(run, zip_, tmp):
        np.savez(zip_.with_name(zip_.stem + ".normalization.npz"), **arrays)

    return change


def _state_of(zip_: Path) -> Path:
    """The resume state beside a checkpoint zip (named by latest.json)."""
    latest = json.loads((zip_.parent / "latest.json").read_text())
    return zip_.parent / latest["state"]


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _set(key, value):
    def change(data):
        data[key] = value

    return change


def _set_hp(key, value):
    def change(data):
        data["hyperparams"][key] = value

    return change


RESUME = ["ppo", "--resume", "--out", "{tmp}/run", "--no-progress"]
RESUMES = [
    ("--resume without --out", ["ppo", "--resume"], "--resume needs --out", None),
    ("--resume of a missing directory", ["ppo", "--resume", "--out", "{tmp}/none"],
     "nothing to resume", None),
    ("--resume of a directory without config.json",
     ["ppo", "--resume", "--out", "{tmp}/run"], "nothing to resume",
     lambda tmp, ws: (tmp / "run").mkdir()),
    ("config.json is not JSON", RESUME, "not a readable run config", _edit_config(lambda d: "{x")),
    ("config.json is a list", RESUME, "not a JSON object but a list", _edit_config(lambda d: "[]")),
    ("config.json is not UTF-8", RESUME, "not a readable run config",
     lambda tmp, ws: (_copy_run(tmp, ws) / "config.json").write_bytes(b"\xff\xfe{}")),
    ("config.json timesteps is a string", RESUME, "timesteps must be of type int",
     _edit_config(_set("timesteps", "abc"))),
    ("config.json seed is a float", RESUME, "seed must be of type int",
     _edit_config(_set("seed", 1.5))),
    ("config.json timesteps is true", RESUME, "timesteps must be of type int",
     _edit_config(_set("timesteps", True))),
    ("config.json env_kwargs is a list", RESUME, "env_kwargs must be of type dict",
     _edit_config(_set("env_kwargs", []))),
    ("config.json lacks env_id", RESUME, "lacks 'env_id'",
     _edit_config(lambda d: d.__delitem__("env_id"))),
    ("config.json names an unknown env", RESUME, "procgen:<game>",
     _edit_config(_set("env_id", "nosuchenv-v0"))),
    ("config.json names an unknown arch", RESUME, "arch must be one of",
     _edit_config(_set("arch", "resnet"))),
    ("config.json checkpoint_minutes -1", RESUME, "--checkpoint-minutes",
     _edit_config(_set("checkpoint_minutes", -1))),
    ("config.json hyperparams is a list", RESUME, "hyperparams must be of type dict",
     _edit_config(_set("hyperparams", [1]))),
    ("config.json n_steps is a string", RESUME, "n_steps (--n-steps) must be",
     _edit_config(_set_hp("n_steps", "x"))),
    ("config.json batch_size 0", RESUME, "batch_size", _edit_config(_set_hp("batch_size", 0))),
    ("config.json of another algorithm", ["dqn", "--resume", "--out", "{tmp}/run"],
     "is a ppo run", _copy_run),
    ("config.json of a World Models run", RESUME, "World Models run",
     _edit_config(_set("algo", "worldmodel"))),
    ("latest.json is not JSON", RESUME, "not a readable checkpoint index", _write_latest("{")),
    ("latest.json is a list", RESUME, "not a JSON object", _write_latest("[1]")),
    ("latest.json names a missing checkpoint", RESUME, "does not exist",
     _write_latest('{"num_timesteps": 64, "model": "step_000000999999.zip"}')),
    ("latest.json names a path outside checkpoints/", RESUME, "must name a file",
     _write_latest('{"num_timesteps": 64, "model": "../config.json"}')),
    ("latest.json num_timesteps is a string", RESUME, "num_timesteps",
     _write_latest('{"num_timesteps": "64", "model": "x.zip"}')),
    ("truncated checkpoint", RESUME, "not a zip file",
     _edit_checkpoint(lambda run, z, tmp: z.write_bytes(z.read_bytes()[:300]))),
    ("empty checkpoint", RESUME, "not a zip file",
     _edit_checkpoint(lambda run, z, tmp: z.write_bytes(b""))),
    ("checkpoint with a pickle payload in policy.pth", RESUME, "cannot load policy.pth",
     _payload_in("policy.pth")),
    ("checkpoint with a pickle payload in pytorch_variables.pth", RESUME,
     "cannot load pytorch_variables.pth", _payload_in("pytorch_variables.pth")),
    ("checkpoint with a pickle payload in the optimizer", RESUME,
     "cannot load policy.optimizer.pth", _payload_in("policy.optimizer.pth")),
    ("checkpoint with a corrupt deflate stream (zlib.error)", RESUME, "corrupt",
     _edit_checkpoint(_deflated("policy.pth"))),
    ("checkpoint with a corrupt _stable_baselines3_version", RESUME, "corrupt",
     _edit_checkpoint(_deflated("_stable_baselines3_version"))),
    ("checkpoint without data", RESUME, "missing data",
     _edit_checkpoint(lambda run, z, tmp: _replace_zip(run, z, {"data": None}))),
    ("normalization.npz with an object array", RESUME, "not a readable normalization file",
     _edit_checkpoint(_normalization(ret_mean=np.zeros(1), ret_var=np.ones(1),
                                     ret_count=np.array(1.0), returns=np.zeros(2),
                                     obj=np.array([{}], dtype=object)))),
    ("normalization.npz without ret_var", RESUME, "'ret_var' is missing",
     _edit_checkpoint(_normalization(ret_mean=np.zeros(1)))),
    ("--resume with a changed --gamma", [*RESUME, "--gamma", "0.9"], "drop --gamma", _copy_run),
    ("--resume with --batch-size 1", [*RESUME, "--batch-size", "1"], ">= 2 for PPO", _copy_run),
    ("--resume with --micro-batch-size over the batch", [*RESUME, "--micro-batch-size", "64"],
     "at most batch_size (32)", _copy_run),
    ("--resume with --batch-size under the run's micro-batches", [*RESUME, "--batch-size", "8"],
     "at most batch_size (8), got 16", _edit_config(_set_hp("micro_batch_size", 16))),
    ("config.json micro_batch_size 0", RESUME, "micro_batch_size (--micro-batch-size) must be",
     _edit_config(_set_hp("micro_batch_size", 0))),
    ("--resume with a changed --env", [*RESUME, "--env", "CartPole-v0"], "drop --env", _copy_run),
    ("--resume with --timesteps 0", [*RESUME, "--timesteps", "0"], "--timesteps must be",
     _copy_run),
    ("truncated resume state", RESUME, "not a readable resume state",
     _edit_checkpoint(lambda run, z, tmp: _truncate(_state_of(z), 99))),
    ("resume state that is not an npz", RESUME, "not a readable resume state",
     _edit_checkpoint(lambda run, z, tmp: _state_of(z).write_text("hello"))),
    ("resume state with an object array", RESUME, "not a readable resume state",
     _edit_checkpoint(lambda run, z, tmp: np.savez(_state_of(z), record=np.array([{}], object)))),
    ("latest.json names a missing resume state", RESUME, "not a readable resume state",
     _edit_checkpoint(lambda run, z, tmp: _state_of(z).unlink())),
    ("progress.csv is not text", RESUME, "not a readable CSV",
     lambda tmp, ws: (_copy_run(tmp, ws) / "progress.csv").write_bytes(b"\xff\xfe\x00bad")),
]  # fmt: skip


def _wm_run(text):
    def setup(tmp, _ws):
        (tmp / "wmrun").mkdir()
        (tmp / "wmrun" / "config.json").write_text(text)

    return setup


WM_RESUME = ["worldmodel", "--resume", "--out", "{tmp}/wmrun"]
WM_CONFIG = {"algo": "worldmodel", "env_id": "procgen:coinrun"}
RESUMES += [
    ("worldmodel --resume: config.json is not JSON", WM_RESUME, "not readable JSON",
     _wm_run("{")),
    ("worldmodel --resume: config.json is a list", WM_RESUME, "not a JSON object", _wm_run("[]")),
    ("worldmodel --resume: rollouts is a string", WM_RESUME, "rollouts must be of type int",
     _wm_run(json.dumps({**WM_CONFIG, "rollouts": "x"}))),
    ("worldmodel --resume: rollouts 0", WM_RESUME, "rollouts must be > 0",
     _wm_run(json.dumps({**WM_CONFIG, "rollouts": 0}))),
    ("worldmodel --resume: lacks env_id", WM_RESUME, "lacks 'env_id'",
     _wm_run(json.dumps({"algo": "worldmodel"}))),
    ("worldmodel --resume of a PPO run", ["worldmodel", "--resume", "--out", "{tmp}/run"],
     "not a World Models run", _copy_run),
]  # fmt: skip

INTERRUPTS = [
    Case("train.py: Ctrl-C before the first checkpoint", T, ppo(),
         "interrupted; nothing written", code=130, interrupt="agents.algorithms.PPO:learn"),
    Case("train.py: Ctrl-C in a resumed run", T, RESUME, "interrupted; kept", code=130,
         interrupt="agents.algorithms.PPO:learn", setup=_copy_run,
         may_change=("progress.csv", "tb/*")),
    Case("train.py worldmodel: Ctrl-C in the first stage", T, wm(),
         "interrupted; nothing written", code=130, interrupt="world_model.run:run_pipeline"),
]  # fmt: skip
LOCKED = [
    Case("train.py --resume of a run another process is writing", T, RESUME,
         "being written by process", setup=_copy_run, locked="{tmp}/run"),
    Case("train.py: a new run in a directory another process holds", T, ppo(),
         "being written by process", locked="{out}"),
    Case("train.py worldmodel --resume of a run another process is writing", T, WM_RESUME,
         "being written by process", setup=_wm_run(json.dumps(WM_CONFIG)), locked="{tmp}/wmrun"),
]  # fmt: skip

CASES = (
    [Case(f"train.py: {name}", T, argv, match) for name, argv, match in SETTINGS]
    + [
        Case(f"train.py: {name}", T, argv, match, setup=setup)
        for name, argv, match, setup in OUTPUTS
    ]
    + [Case(f"train.py: {name}", T, argv, m, setup=setup) for name, argv, m, setup in RESUMES]
    + INTERRUPTS
    + LOCKED
)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case, bad_input_workspace, tmp_path, capfd, monkeypatch):
    check(case, tmp_path, bad_input_workspace, capfd, monkeypatch)


# -- in real processes: two writers, Ctrl-C ---------------------------------------------------
SUBPROCESS_CASES = [
    "train.py --resume while another train.py writes the run: refused, exit 2",
    "train.py interrupted by Ctrl-C: one line, exit 130, the run kept at its checkpoint",
    "audit interrupted by Ctrl-C with 2 worker processes: one line, exit 130, no worker left",
]
QUIET = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}


def _group(pgid: int) -> list[int]:
    """Processes in the process group `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action, so that Python turns SIGINT into
    KeyboardInterrupt even when this suite runs as a background job (which ignores SIGINT,
    and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_second_writer_refused_then_ctrl_c_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, str(ROOT / "train.py"), "ppo", "--env", "CartPole-v1", "--timesteps",
            "100000000", "--n-envs", "2", "--n-steps", "64", "--batch-size", "64", "--n-epochs",
            "1", "--checkpoint-minutes", "0", "--eval-episodes", "0", "--no-progress", "--out",
            str(out)]  # fmt: skip
    first = subprocess.Popen(argv, env=QUIET, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, start_new_session=True,
                             preexec_fn=_default_sigint)  # fmt: skip
    try:
        latest = out / "checkpoints" / "latest.json"
        _wait_for(lambda: latest.exists() or first.poll() is not None, 120, "a checkpoint")
        assert first.poll() is None, first.stderr.read()
        second = subprocess.run(
            [*argv[:3], "--resume", "--out", str(out), "--no-progress"],
            env=QUIET, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        assert f"being written by process {first.pid}" in _one_line(second.stderr)
        os.killpg(first.pid, signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 130
    line = _one_line(stderr)
    assert "interrupted; kept" in line and "--resume" in line
    assert not (out / ".lock").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "staging files left"
    steps = json.loads(latest.read_text())["num_timesteps"]
    assert f"at step {steps}" in line
    with zipfile.ZipFile(out / "checkpoints" / f"step_{steps:012d}.zip") as z:
        assert z.testzip() is None
    rows = (out / "progress.csv").read_text().splitlines()
    assert len({len(r.split(",")) for r in rows}) == 1, "progress.csv rows of different widths"


def test_ctrl_c_in_a_parallel_audit_leaves_nothing(bad_input_workspace, tmp_path):
    out = tmp_path / "audit"
    argv = [sys.executable, "-m", "interpret", "audit", str(bad_input_workspace.coinrun),
            "--levels", "2000", "--workers", "2", "--n-envs", "2", "--no-attribution", "--out",
            str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=tmp_path, env=QUIET, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)  # fmt: skip
    try:  # the parent, the forkserver, 2 workers (and the resource tracker) in its group
        _wait_for(lambda: len(_group(proc.pid)) >= 4 or proc.poll() is not None, 120, "workers")
        time.sleep(3)  # the workers are playing levels
        assert proc.poll() is None, proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        _wait_for(lambda: not _group(proc.pid), 20, "the workers to exit")
    finally:
        if _group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 130
    assert _one_line(stderr).endswith("audit: interrupted; nothing written")
    assert not out.exists() and not list(tmp_path.glob(".audit*")), "a staging directory is left"


@pytest.mark.parametrize("command", [["train.py", "ppo", "--help"], ["-m", "interpret", "--help"]])
def test_ctrl_c_while_the_libraries_load_is_one_line(command):
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=QUIET, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)  # fmt: skip
    maps = Path(f"/proc/{proc.pid}/maps")  # torch's library mapped: past Python's own startup
    _wait_for(lambda: proc.poll() is not None or "libtorch" in maps.read_text(), 60, "torch")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert _one_line(stderr).endswith("interrupted; nothing written")
