"""World Models: V, M, C, CMA-ES, dream env, storage and resume, on small data."""

import csv
import math

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import agents
from agents.executor import SerialExecutor
from agents.inspectable import UnknownLayerError
from world_model.cmaes import EpisodeTask, evaluate_candidates, play_controller, train_controller
from world_model.controller import Controller
from world_model.data import FrameStream, SequenceSampler
from world_model.dream import DreamEnv
from world_model.mdn_rnn import MDNRNN, mdn_log_prob, mdn_loss, sample_next_z
from world_model.model import WeightsFileError, WorldModel, load_weights, save_weights
from world_model.rollouts import DriveActions, RandomActions, check_policy, default_policy
from world_model.run import WorldModelConfig, create_run, evaluate_run
from world_model.rundir import RunError
from world_model.training import encode_episodes, train_mdn, train_vae
from world_model.vae import ConvVAE, vae_loss

CAR_SPACE = gymnasium.spaces.Box(
    np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32), dtype=np.float32
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread: on a busy 2-core machine, two OpenMP threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_fitness(task):
    """Negative squared distance to (1, -2, 3, 0.5) plus seed-dependent noise (top level: it
    travels to worker processes)."""
    params, seed = task
    noise = np.random.default_rng(seed).normal(0, 0.01)
    return -float(np.sum((params - np.array([1.0, -2.0, 3.0, 0.5])) ** 2)) + noise


# -- V -----------------------------------------------------------------------------------
def test_vae_shapes_and_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    vae = ConvVAE()
    x = torch.rand(8, 3, 1, 1).expand(8, 3, 64, 64).clone()  # flat colours: learnable fast
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (8, 32)
    assert recon.min() >= 0 and recon.max() <= 1
    assert vae.encoder.features(x).shape == (8, 256, 2, 2)
    optim = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss, _, _ = vae_loss(x, *vae(x))
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])  # z is sampled: losses are noisy


def test_vae_kl_matches_torch_distributions_and_is_floored():
    mu, logvar = torch.randn(5, 32), torch.randn(5, 32)
    x = torch.rand(5, 3, 64, 64)
    total, recon, kl = vae_loss(x, x, mu, logvar, kl_tolerance=0.0)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert recon.item() == 0.0
    assert torch.allclose(kl, expected, atol=1e-4) and torch.allclose(total, expected, atol=1e-4)
    small = vae_loss(x, x, torch.zeros(5, 32), torch.zeros(5, 32), kl_tolerance=0.5)[0]
    assert small.item() == pytest.approx(0.5 * 32)  # the floor, not the KL (0)


# -- M -----------------------------------------------------------------------------------
def test_mdn_log_likelihood_matches_torch_distributions():
    torch.manual_seed(0)
    logpi = torch.log_softmax(torch.randn(4, 7, 32, 5), -1)
    mu, logsigma = torch.randn(4, 7, 32, 5), torch.randn(4, 7, 32, 5) * 0.5
    target = torch.randn(4, 7, 32)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logpi),
        torch.distributions.Normal(mu, logsigma.exp()),
    )
    expected = mixture.log_prob(target)
    assert torch.allclose(mdn_log_prob(target, logpi, mu, logsigma), expected, atol=1e-5)
    out = {"logpi": logpi, "mu": mu, "logsigma": logsigma}
    assert torch.allclose(mdn_loss(out, target)["z"], -expected.mean(), atol=1e-5)


def test_temperature_scales_mixture_weights_and_spread():
    n = 20000
    logpi = torch.log(torch.tensor([0.8, 0.2])).expand(n, 1, 2)
    mu = torch.tensor([0.0, 10.0]).expand(n, 1, 2)
    logsigma = torch.log(torch.tensor([1.0, 1.0])).expand(n, 1, 2)
    gen = torch.Generator().manual_seed(0)

    def share_of_second(tau):
        z = sample_next_z(logpi, mu, logsigma, tau, gen)
        return (z > 5).float().mean().item(), z

    share1, z1 = share_of_second(1.0)
    assert share1 == pytest.approx(0.2, abs=0.015)
    share_hot, _ = share_of_second(4.0)  # weights 0.8^(1/4) : 0.2^(1/4) -> 0.414 for the second
    assert share_hot == pytest.approx(0.2**0.25 / (0.8**0.25 + 0.2**0.25), abs=0.015)
    share_cold, z_cold = share_of_second(0.1)
    assert share_cold < 0.001
    first = z_cold[z_cold < 5]
    assert first.std().item() == pytest.approx(math.sqrt(0.1), rel=0.05)  # sigma * sqrt(tau)
    assert z1[z1 < 5].std().item() == pytest.approx(1.0, rel=0.05)
    mode = sample_next_z(logpi[:2], mu[:2], logsigma[:2], 0.0)
    assert torch.equal(mode, torch.zeros(2, 1))  # tau 0: the likeliest component's mean


def test_mdn_forward_shapes_and_step_equals_sequence():
    torch.manual_seed(0)
    mdn = MDNRNN(z_size=32, action_size=3, predict_reward=True, predict_done=True)
    z, a = torch.randn(2, 6, 32), torch.randn(2, 6, 3)
    out = mdn(z, a)
    assert out["mu"].shape == (2, 6, 32, 5) and out["reward"].shape == (2, 6)
    assert out["done"].shape == (2, 6) and out["h"].shape == (2, 6, 256)
    assert torch.allclose(out["logpi"].exp().sum(-1), torch.ones(2, 6, 32), atol=1e-5)
    state = mdn.initial_state(2)
    for t in range(6):
        h, state = mdn.step(z[:, t], a[:, t], state)
    assert torch.allclose(h, out["h"][:, -1], atol=1e-5)


# -- C -----------------------------------------------------------------------------------
def test_controller_has_867_parameters_for_car_racing_and_maps_actions():
    ctrl = Controller(32, 256, CAR_SPACE, "carracing")
    assert ctrl.n_params == (32 + 256) * 3 + 3 == 867
    flat = np.random.default_rng(0).normal(size=867)
    ctrl.set_flat(flat)
    weights = torch.cat([ctrl.linear.weight.flatten(), ctrl.linear.bias]).detach().numpy()
    assert np.allclose(weights, flat, atol=1e-6)  # weights row-major, then bias
    actions = ctrl.to_action(ctrl(torch.randn(100, 288) * 10))
    assert CAR_SPACE.contains(actions[0].detach().numpy())
    assert (actions[:, 1:] >= 0).all() and (actions.abs() <= 1).all()
    zero = ctrl.to_action(torch.zeros(1, 3))[0]
    assert torch.allclose(zero, torch.tensor([0.0, 0.5, 0.0]))  # the original's half gas
    bounds = Controller(32, 256, CAR_SPACE).to_action(torch.zeros(1, 3))[0]
    assert torch.allclose(bounds, torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="expected 867"):
        ctrl.set_flat(np.zeros(10))


def test_discrete_controller_takes_the_argmax():
    ctrl = Controller(4, 8, gymnasium.spaces.Discrete(5))
    out = torch.randn(10, 5)
    assert torch.equal(ctrl.to_action(out), out.argmax(1))
    onehot = ctrl.encode_action(torch.tensor([2, 4]))
    assert onehot.tolist() == [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]


def test_z_only_controller_has_99_parameters_and_ignores_h():
    ctrl = Controller(32, 256, CAR_SPACE, "carracing", inputs="z")
    assert ctrl.n_params == 32 * 3 + 3 == 99  # the paper's V-only agent
    ctrl.set_flat(np.random.default_rng(0).normal(size=99))
    z, h = torch.randn(5, 32), torch.randn(5, 256)
    assert torch.equal(ctrl.decide(z, h), ctrl.decide(z, torch.zeros(5, 256)))
    w, b = ctrl.linear.weight, ctrl.linear.bias
    assert torch.allclose(ctrl.decide(z, h), z @ w.T + b)  # W z + b, by hand
    full = Controller(32, 256, CAR_SPACE, "carracing")
    full.set_flat(np.random.default_rng(0).normal(size=867))
    assert not torch.equal(full.decide(z, h), full.decide(z, torch.zeros(5, 256)))
    with pytest.raises(ValueError, match="unknown controller inputs"):
        Controller(32, 256, CAR_SPACE, inputs="h")


# -- rollout policies ----------------------------------------------------------------------
def drive_actions(seed, steps=5000):
    policy = DriveActions(CAR_SPACE, seed)
    return np.stack([policy(None) for _ in range(steps)])


def test_drive_policy_mostly_accelerates_rarely_brakes_and_holds_its_actions():
    actions = drive_actions(0)
    assert all(CAR_SPACE.contains(a) for a in actions[::97])
    steer, gas, brake = actions.T
    assert gas.mean() > 0.5  # mostly on the gas
    assert 0 < (brake > 0).mean() < 0.1  # brakes, but rarely
    assert not ((gas > 0) & (brake > 0)).any()  # never both
    assert np.all(actions[:50] == [0, 1, 0])  # straight at full gas while the track zooms in
    changes = np.flatnonzero(np.any(np.diff(actions, axis=0) != 0, axis=1))
    assert np.diff(changes).min() >= 4 and len(changes) < len(actions) / 5  # held 4..12 steps
    assert abs(steer.mean()) < 0.1 and 0.3 < steer.std() < 0.7  # turns both ways
    jumps = np.abs(np.diff(steer[changes + 1]))  # steering changes between held actions
    assert np.median(jumps) < 0.5  # smooth-ish: a random walk, not a fresh uniform draw (0.67)


def test_drive_policy_is_deterministic_given_the_seed():
    assert np.array_equal(drive_actions(3, 500), drive_actions(3, 500))
    assert not np.array_equal(drive_actions(3, 500), drive_actions(4, 500))


def test_default_rollout_policy_drives_on_car_racing_only(tmp_path):
    assert default_policy(CAR_SPACE, "box2d:CarRacing-v3") == "drive"
    assert default_policy(CAR_SPACE, "MountainCarContinuous-v0") == "brownian"
    assert default_policy(gymnasium.spaces.Discrete(5), "box2d:CarRacing-v3") == "random"
    with pytest.raises(ValueError, match="'drive' needs CarRacing"):
        check_policy("drive", gymnasium.spaces.Discrete(5))
    with pytest.raises(ValueError, match="'brownian' needs a Box"):
        RandomActions(gymnasium.spaces.Discrete(5), "brownian", 0)
    config = create_run(WorldModelConfig(env_id="box2d:CarRacing-v3"), tmp_path / "car")
    assert config.rollout_policy == "drive"
    config = WorldModelConfig(env_id="procgen:coinrun", rollout_policy="drive")
    with pytest.raises(RunError, match="'drive' needs CarRacing"):
        create_run(config, tmp_path / "coinrun")
    assert not (tmp_path / "coinrun" / "config.json").exists()


# -- CMA-ES --------------------------------------------------------------------------------
def test_cmaes_improves_a_toy_objective_through_the_executor():
    import cma

    es = cma.CMAEvolutionStrategy(np.zeros(4), 0.5, {"popsize": 8, "seed": 1, "verbose": -9})
    first = None
    with SerialExecutor() as executor:
        for generation in range(40):
            candidates = es.ask()
            fitness = evaluate_candidates(
                executor,
                candidates,
                [generation, 100 + generation],
                lambda c, s: (c, s),
                toy_fitness,
            )
            es.tell(candidates, list(-fitness))
            first = fitness.mean() if first is None else first
    assert first < -10  # start: distance^2 of the origin is 14.25
    assert toy_fitness((np.asarray(es.mean), 0)) > -0.05
    assert np.allclose(es.mean, [1, -2, 3, 0.5], atol=0.15)


# -- dream env -----------------------------------------------------------------------------
def tiny_model(space=CAR_SPACE, **mdn):
    torch.manual_seed(0)
    return WorldModel(space, z_size=32, hidden=16, action_map="bounds", **mdn).eval()


def test_dream_env_follows_the_gymnasium_api():
    model = tiny_model(predict_reward=True, predict_done=True)
    env = DreamEnv(
        model, np.random.default_rng(0).normal(size=(3, 32)), temperature=1.0, max_steps=20
    )
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (48,) and obs.dtype == np.float32
    trace = [env.step(env.action_space.sample())[:2] for _ in range(5)]
    again, _ = env.reset(seed=3)
    assert np.array_equal(obs, again)
    env.action_space.seed(0)
    assert env.render().shape == (64, 64, 3) and env.render().dtype == np.uint8
    truncated = False
    env.reset(seed=1)
    steps = 0
    for steps in range(1, 21):  # noqa: B007  (steps is read after the loop)
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    assert terminated or (truncated and steps == 20)
    assert all(isinstance(r, float) for _, r in trace)


def test_dream_temperature_zero_is_deterministic():
    model = tiny_model()
    env = DreamEnv(model, np.zeros((1, 32)), temperature=0.0, max_steps=5)
    runs = []
    for seed in (0, 1):
        env.reset(seed=seed)
        runs.append([env.step(np.array([0.1, 0.5, 0.0], np.float32))[0] for _ in range(4)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))
    hot = DreamEnv(model, np.zeros((1, 32)), temperature=1.0, max_steps=5)
    hot.reset(seed=0)
    first = hot.step(np.array([0.1, 0.5, 0.0], np.float32))[0]
    hot.reset(seed=1)
    assert not np.array_equal(first, hot.step(np.array([0.1, 0.5, 0.0], np.float32))[0])


# -- storage, data and resume ------------------------------------------------------------------
def test_weights_round_trip_without_pickle(tmp_path):
    model = tiny_model()
    save_weights(model.mdn, tmp_path / "mdn.safetensors")
    other = tiny_model()
    torch.nn.init.zeros_(other.mdn.head.weight)
    load_weights(other.mdn, tmp_path / "mdn.safetensors")
    for a, b in zip(model.mdn.state_dict().values(), other.mdn.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsFileError, match="cannot load"):
        load_weights(other.mdn, tmp_path / "bad.safetensors")
    with pytest.raises(WeightsFileError, match="not found"):
        load_weights(other.mdn, tmp_path / "missing.safetensors")


def fake_run(tmp_path, episodes=3, steps=20, discrete=False):
    """A run directory with synthetic rollouts (coloured squares that move)."""
    run = tmp_path / "run"
    space = gymnasium.spaces.Discrete(4) if discrete else CAR_SPACE
    rng = np.random.default_rng(0)
    (run / "rollouts").mkdir(parents=True)
    for i in range(episodes):
        frames = np.zeros((steps + 1, 64, 64, 3), np.uint8)
        for t in range(steps + 1):
            frames[t, t : t + 16, 10 + i : 26 + i] = (200, 50 + 50 * i, 20)
        actions = (
            rng.integers(0, 4, steps) if discrete else rng.uniform(0, 1, (steps, 3)).astype("f4")
        )
        np.savez_compressed(
            run / "rollouts" / f"ep_{i:05d}.npz",
            frames=frames,
            actions=actions,
            rewards=rng.normal(size=steps).astype("f4"),
            dones=np.arange(steps) == steps - 1,
        )
    return run, space


def test_frame_stream_visits_every_frame_once_per_epoch(tmp_path):
    run, _ = fake_run(tmp_path)
    stream = FrameStream(sorted((run / "rollouts").glob("*.npz")), batch_size=8, buffer_episodes=2)
    epoch1 = torch.cat(list(stream))
    assert epoch1.shape == (63, 64, 64, 3) and epoch1.dtype == torch.uint8
    epoch2 = torch.cat(list(stream))
    assert not torch.equal(epoch1, epoch2)  # reshuffled
    assert epoch1.double().sum() == epoch2.double().sum()


def test_vae_and_mdn_stages_resume_from_their_checkpoints(tmp_path):
    run, space = fake_run(tmp_path, episodes=2, steps=12)
    train_vae(run, epochs=1, batch_size=16, log=lambda _: None)
    first = torch.load(run / "checkpoints" / "vae.pt", weights_only=True)
    vae = train_vae(run, epochs=2, batch_size=16, log=lambda _: None)
    rows = list(csv.DictReader((run / "vae_progress.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert torch.load(run / "checkpoints" / "vae.pt", weights_only=True)["epoch"] == 2
    assert not torch.equal(first["model"]["decoder.fc.weight"], vae.decoder.fc.weight)
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])

    ctrl = Controller(32, 16, space)
    files = encode_episodes(run, vae, lambda a: ctrl.encode_action(torch.as_tensor(a)).numpy())
    with np.load(files[0]) as data:
        assert data["mu"].shape == (13, 32) and data["actions_in"].shape == (12, 3)
    mdn = MDNRNN(32, 3, hidden=16)
    train_mdn(run, mdn, epochs=1, steps_per_epoch=3, seq_len=8, log=lambda _: None)
    mdn2 = MDNRNN(32, 3, hidden=16)
    train_mdn(run, mdn2, epochs=2, steps_per_epoch=3, seq_len=8, log=lambda _: None)
    rows = list(csv.DictReader((run / "mdn_progress.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # the second call ran epoch 2 only
    assert (run / "mdn.safetensors").is_file()


def test_sequence_sampler_masks_past_short_episodes():
    series = [
        {
            "mu": np.arange(5, dtype="f4")[:, None].repeat(2, 1),
            "logvar": np.full((5, 2), -30, "f4"),
            "actions_in": np.zeros((4, 1), "f4"),
            "rewards": np.arange(4, dtype="f4"),
            "dones": np.arange(4) == 3,
        }
    ]
    batch = SequenceSampler(series, seq_len=6).batch(3)
    assert batch["mask"][0].tolist() == [1, 1, 1, 1, 0, 0]
    assert torch.allclose(batch["next_z"][0, :4, 0], torch.tensor([1.0, 2, 3, 4]), atol=1e-4)
    assert batch["dones"][0, 3] == 1


# -- the inspectable view -----------------------------------------------------------------------
@pytest.fixture
def car_view(tmp_path):
    config = create_run(WorldModelConfig(env_id="box2d:CarRacing-v3", hidden=16), tmp_path / "car")
    torch.manual_seed(0)
    model = WorldModel.from_config(config.__dict__)
    save_weights(model.vae, tmp_path / "car" / "vae.safetensors")
    save_weights(model.mdn, tmp_path / "car" / "mdn.safetensors")
    with torch.no_grad():
        model.controller.linear.weight.normal_(0, 0.5)
    save_weights(model.controller, tmp_path / "car" / "controller_best.safetensors")
    return agents.load(tmp_path / "car"), model


def test_agents_load_gives_the_world_model_view(car_view):
    view, model = car_view
    assert view.algo == "worldmodel" and "mdn.lstm" in view.layers()
    assert view.layer_module("vae.encoder.conv1") is view.module.vae.encoder.conv1
    assert set(view.layers()) >= {"vae.decoder.deconv4", "controller.linear", "mdn.head"}
    with pytest.raises(UnknownLayerError, match=r"vae\.encoder\.conv1"):
        view.layer_module("conv9")
    obs = np.random.default_rng(0).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    x = view.preprocess(obs)
    assert x.shape == (2, 3, 64, 64) and x.min() >= 0 and x.max() <= 1
    out = view.outputs(x)
    assert out["action"].shape == (2, 3) and out["z"].shape == (2, 32)
    mu, _ = model.vae.encoder(x)
    assert torch.allclose(out["z"], mu, atol=1e-5)
    for layer in ("vae.encoder.conv1", "vae.encoder.conv3", "vae.encoder.mu"):
        lower, upper = view.split(layer)
        assert torch.allclose(upper(lower(x))["action"], out["action"], atol=1e-5)
    with pytest.raises(UnknownLayerError, match="not on the path"):
        view.split("mdn.lstm")


def test_act_carries_the_recurrent_state_until_reset(car_view):
    view, _ = car_view
    obs = np.random.default_rng(1).integers(0, 255, (1, 96, 96, 3), dtype=np.uint8)
    first = view.act(obs)
    second = view.act(obs)
    assert not np.allclose(first, second)  # same frame, but h has moved on
    view.reset()
    assert np.allclose(view.act(obs), first)
    state = view._state
    assert torch.allclose(view.outputs(view.preprocess(obs), state)["h"], state[0][0])


def test_view_save_round_trip(car_view, tmp_path):
    view, _ = car_view
    with torch.no_grad():
        view.layer_module("controller.linear").bias.fill_(0.3)  # an edit
    view.save(tmp_path / "edited", metadata={"edit": "bias"})
    again = agents.load(tmp_path / "edited")
    x = torch.rand(3, 3, 64, 64)
    assert torch.allclose(again.outputs(x)["action"], view.outputs(x)["action"])
    assert again.metadata["edit"] == "bias"


# -- a z-only controller through training, evaluation, the view and resume ----------------------
@pytest.fixture
def z_only_run(tmp_path):
    """A CarRacing run directory with random V and M (hidden 16, reward head), C reading z."""
    config = WorldModelConfig(
        env_id="box2d:CarRacing-v3", hidden=16, controller_input="z", predict_reward=True
    )
    config = create_run(config, tmp_path / "car")
    torch.manual_seed(0)
    model = WorldModel.from_config(config.__dict__)
    save_weights(model.vae, tmp_path / "car" / "vae.safetensors")
    save_weights(model.mdn, tmp_path / "car" / "mdn.safetensors")
    (tmp_path / "car" / "series").mkdir()
    np.save(tmp_path / "car" / "series" / "initial_z.npy", np.zeros((2, 32), np.float32))
    return tmp_path / "car", config, model


def test_z_only_controller_trains_in_the_dream_evaluates_and_loads(z_only_run):
    run, config, model = z_only_run
    assert agents.load(run).config["controller_input"] == "z"
    assert model.controller.n_params == 99
    with SerialExecutor() as executor:
        state = train_controller(
            run, executor, model, 1, population=4, max_steps=5, dream=True, log=lambda _: None
        )
        assert state["generation"] == 1 and state["evaluations"] == 8
        with np.load(run / "cmaes" / "state.npz") as data:
            assert data["mean"].shape == data["best"].shape == (99,)
        state = train_controller(  # resumed: one more generation from the saved 99-vector
            run, executor, model, 2, population=4, max_steps=5, dream=True, log=lambda _: None
        )
        assert state["generation"] == 2
        config.eval_episodes, config.eval_steps = 1, 5
        result = evaluate_run(config, run, executor, log=lambda _: None)
    assert result["best"]["episodes"] == result["mean"]["episodes"] == 1
    real = play_controller(EpisodeTask(str(run), np.zeros(99), seed=0, max_steps=5))
    assert isinstance(real, float)
    with pytest.raises(ValueError, match="expected 99"):
        play_controller(EpisodeTask(str(run), np.zeros(867), seed=0, max_steps=5))

    view = agents.load(run)
    assert view.module.controller.n_params == 99
    assert view.module.controller.inputs == "z"
    x = torch.rand(2, 3, 64, 64)
    h = torch.randn(1, 2, 16)
    moved = view.outputs(x, (h, torch.zeros_like(h)))
    assert torch.equal(moved["action"], view.outputs(x)["action"])  # h does not reach C
    assert not torch.equal(moved["next_z"], view.outputs(x)["next_z"])  # but M still runs
    obs = np.random.default_rng(0).integers(0, 255, (1, 96, 96, 3), dtype=np.uint8)
    assert np.allclose(view.act(obs), view.act(obs))  # C's action ignores M's moving state

    view.save(run.parent / "saved")
    again = agents.load(run.parent / "saved")
    assert again.module.controller.n_params == 99
    assert torch.equal(again.outputs(x)["action"], view.outputs(x)["action"])


def test_runs_without_controller_input_read_as_zh(tmp_path):
    config = create_run(WorldModelConfig(env_id="box2d:CarRacing-v3", hidden=16), tmp_path / "r")
    data = dict(config.__dict__)
    del data["controller_input"]  # a run written before the option existed
    assert WorldModel.from_config(data).controller.n_params == (32 + 16) * 3 + 3
