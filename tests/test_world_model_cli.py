"""``train.py worldmodel``: bad input, real image envs, and tiny end-to-end runs with resume."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import agents
import train
from agents.fileio import read_json
from world_model.frames import make_frame_env

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--rollouts", "2", "--rollout-steps", "40", "--vae-epochs", "1", "--vae-batch-size", "16",
    "--mdn-epochs", "1", "--mdn-steps", "2", "--mdn-seq-len", "8", "--generations", "2",
    "--population", "4", "--rollouts-per-candidate", "1", "--controller-steps", "30",
    "--eval-episodes", "2", "--eval-steps", "30", "--threads", "1",
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worldmodel"], "--env is required"),
        (["worldmodel", "--env", "CartPole-v1"], "needs RGB image observations"),
        (["worldmodel", "--env", "procgen:coinrn"], "coinrun"),
        (["worldmodel", "--env", "procgen:coinrun", "--rollouts", "0"], "--rollouts must be > 0"),
        (["worldmodel", "--env", "procgen:coinrun", "--executor", "threads"], "invalid choice"),
        (["worldmodel", "--env", "procgen:coinrun", "--workers", "0"], "--workers must be"),
        (["worldmodel", "--env", "procgen:coinrun", "--train-in", "dream"], "--predict-reward"),
        (["worldmodel", "--env", "procgen:coinrun", "--rollout-policy", "x"], "--rollout-policy"),
        (["worldmodel", "--env", "procgen:coinrun", "--rollout-policy", "drive"], "'drive' needs"),
        (["worldmodel", "--env", "procgen:coinrun", "--controller-input", "h"], "invalid choice"),
        (["worldmodel", "--resume", "--out", "NOWHERE"], "not a World Models run directory"),
        (["worldmodel", "--env", "procgen:coinrun", "--timesteps", "9"], "--timesteps: not a"),
        (["worldmodel", "--env", "procgen:coinrun", "--ent-coef", "0.1"], "--ent-coef: not a"),
        (["ppo", "--env", "CartPole-v1", "--generations", "3"], "--generations: worldmodel"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    args = [a.replace("NOWHERE", str(tmp_path / "none")) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    try:
        status = train.main(args)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run" / "config.json").exists()  # nothing half-created


def test_resume_refuses_a_changed_setting_and_accepts_the_same_one(tmp_path, capsys):
    from world_model.run import WorldModelConfig, create_run

    out = tmp_path / "car"
    config = WorldModelConfig(env_id="box2d:CarRacing-v3", rollouts=1, rollout_steps=5)
    create_run(config, out)
    before = (out / "config.json").read_bytes()
    resume = ["worldmodel", "--resume", "--out", str(out), "--executor", "serial"]
    for extra, message in [
        (["--controller-input", "z"], "drop --controller-input (the run has --controller-input zh"),
        (["--rollouts", "4", "--generations", "3"], "drop --rollouts"),
        (["--rollout-policy", "brownian"], "drop --rollout-policy"),
    ]:
        assert train.main([*resume, *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert (out / "config.json").read_bytes() == before  # nothing rewritten
    assert not (out / "rollouts").exists()  # nothing played
    same = ["--controller-input", "zh", "--rollout-policy", "drive", "--stage", "rollouts"]
    assert train.main([*resume, *same, "--rollouts", "1"]) == 0
    with np.load(out / "rollouts" / "ep_00000.npz") as data:
        assert np.all(data["actions"] == [0, 1, 0])  # drive: full gas, straight, at the start


@pytest.mark.parametrize(
    ("env_id", "n_actions"),
    [("box2d:CarRacing-v3", None), ("procgen:coinrun", 15), ("atari:Pong", 6)],
)
def test_every_image_family_gives_64x64_rgb_frames(env_id, n_actions):
    env = make_frame_env(env_id, seed=0)
    frame, _ = env.reset()
    frame2, *_ = env.step(env.action_space.sample())
    assert frame.shape == frame2.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # colour content, not a blank frame
    assert getattr(env.action_space, "n", None) == n_actions
    env.close()


def test_car_racing_frames_drop_the_dashboard():
    from world_model.frames import to_frame

    raw = np.zeros((96, 96, 3), np.uint8)
    raw[84:] = 255  # dashboard rows only
    assert to_frame(raw, 84).max() == 0
    assert to_frame(raw).max() > 0


def test_rollouts_resume_by_replaying_only_missing_episodes_identically(tmp_path):
    from agents.executor import SerialExecutor
    from world_model.rollouts import collect

    with SerialExecutor() as executor:
        first = collect(executor, "box2d:CarRacing-v3", tmp_path, 2, 25, seed=3, policy="brownian")
        before = {p.name: dict(np.load(p)) for p in tmp_path.glob("ep_*.npz")}
        (tmp_path / "ep_00001.npz").unlink()
        stamp = (tmp_path / "ep_00000.npz").stat().st_mtime_ns
        again = collect(executor, "box2d:CarRacing-v3", tmp_path, 2, 25, seed=3, policy="brownian")
    assert first == again
    assert (tmp_path / "ep_00000.npz").stat().st_mtime_ns == stamp  # kept, not replayed
    replayed = dict(np.load(tmp_path / "ep_00001.npz"))
    for key, value in before["ep_00001.npz"].items():
        assert np.array_equal(replayed[key], value), key
    assert replayed["frames"].shape == (26, 64, 64, 3) and replayed["actions"].shape == (25, 3)


@pytest.mark.slow
def test_tiny_car_racing_run_through_the_cli_and_resume(tmp_path):
    out = tmp_path / "car"
    cmd = [sys.executable, str(ROOT / "train.py"), "worldmodel", "--env", "box2d:CarRacing-v3"]
    result = subprocess.run(
        [*cmd, *TINY, "--out", str(out)], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "evaluation (best controller): mean return" in result.stdout
    for name in ("vae.safetensors", "mdn.safetensors", "controller_best.safetensors",
                 "controller_mean.safetensors", "eval.json", "cmaes/state.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert len(list((out / "rollouts").glob("ep_*.npz"))) == 2
    with np.load(out / "rollouts" / "ep_00000.npz") as data:
        assert data["frames"].shape[1:] == (64, 64, 3) and data["frames"].dtype == np.uint8
        assert len(data["frames"]) == len(data["actions"]) + 1 == 41
    evaluation = read_json(out / "eval.json")
    assert evaluation["best"]["episodes"] == evaluation["mean"]["episodes"] == 2
    assert evaluation["mean_return"] == evaluation["best"]["mean_return"]
    view = agents.load(out)
    assert view.module.controller.n_params == (32 + 256) * 3 + 3

    vae_mtime = (out / "vae.safetensors").stat().st_mtime_ns
    more = ["worldmodel", "--resume", "--out", str(out), "--generations", "3", "--workers", "1"]
    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *more],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = list(csv.DictReader((out / "controller_progress.csv").open()))
    assert [r["generation"] for r in rows] == ["1", "2", "3"]
    assert (out / "vae.safetensors").stat().st_mtime_ns == vae_mtime  # skipped, not retrained
    assert read_json(out / "eval.json")["generation"] == 3
    assert "V epoch" not in resumed.stdout and "C generation 3/3" in resumed.stdout


@pytest.mark.slow
def test_tiny_procgen_run_trains_its_controller_in_the_dream(tmp_path, capsys):
    out = tmp_path / "coinrun"
    args = ["worldmodel", "--env", "procgen:coinrun", *TINY, "--executor", "serial"]
    args += ["--predict-reward", "--predict-done", "--train-in", "dream", "--out", str(out)]
    assert train.main(args) == 0
    assert "evaluation (best controller): mean return" in capsys.readouterr().out
    config = read_json(out / "config.json")
    assert config["action_space"] == {"discrete": 15} and config["train_in"] == "dream"
    view = agents.load(out)
    obs = np.zeros((3, 64, 64, 3), np.uint8)
    actions = view.act(obs)
    assert actions.shape == (3,) and actions.dtype == np.int64
    out_ = view.outputs(view.preprocess(obs))
    assert torch.equal(out_["scores"].argmax(1), out_["action"])
    env = view.dream_env(temperature=1.2, max_steps=5)
    first, _ = env.reset(seed=0)
    assert first.shape == (32 + 256,)
    assert env.step(int(actions[0]))[0].shape == first.shape


@pytest.mark.slow
def test_tiny_car_racing_run_with_a_z_only_controller_in_the_dream(tmp_path, capsys):
    out = tmp_path / "car-z"
    args = ["worldmodel", "--env", "box2d:CarRacing-v3", *TINY, "--executor", "serial"]
    args += ["--controller-input", "z", "--predict-reward", "--train-in", "dream"]
    assert train.main([*args, "--out", str(out)]) == 0
    assert "evaluation (best controller): mean return" in capsys.readouterr().out
    config = read_json(out / "config.json")
    assert config["controller_input"] == "z" and config["rollout_policy"] == "drive"
    with np.load(out / "cmaes" / "state.npz") as data:
        assert data["best"].shape == (32 * 3 + 3,)
    view = agents.load(out)
    assert view.module.controller.n_params == 99
    assert view.act(np.zeros((2, 96, 96, 3), np.uint8)).shape == (2, 3)

    resume = ["worldmodel", "--resume", "--out", str(out), "--executor", "serial"]
    assert train.main([*resume, "--controller-input", "zh", "--generations", "3"]) == 2
    assert "drop --controller-input" in capsys.readouterr().err
    assert train.main([*resume, "--controller-input", "z", "--generations", "3"]) == 0
    assert read_json(out / "eval.json")["generation"] == 3
    assert read_json(out / "config.json")["controller_input"] == "z"
