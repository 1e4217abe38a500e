"""Game of Life rules on known patterns, the imagination metric on the paper's appendix B
examples, and the imagination model's training (shapes, resuming after a crash)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from interpret.imagination.game_of_life import (
    LifeBoards,
    imagination_metric,
    life_sequence,
    life_step,
)
from interpret.imagination.gol_diagnostics import linear_probe_accuracy
from interpret.imagination.gol_imaginer import (
    GoLConfig,
    ImaginationNet,
    checkpoint_key,
    decoded_fakes,
    evaluate_gol,
    main_training_config,
    real_states,
    train_gol,
    validation_loss,
)


def board(cells, size=8):
    b = torch.zeros(size, size)
    for y, x in cells:
        b[y, x] = 1
    return b


BLINKER_H = board([(3, 2), (3, 3), (3, 4)])
BLINKER_V = board([(2, 3), (3, 3), (4, 3)])
GLIDER = board([(0, 1), (1, 2), (2, 0), (2, 1), (2, 2)])


def test_blinker_oscillates_and_block_is_still():
    assert torch.equal(life_step(BLINKER_H), BLINKER_V)
    assert torch.equal(life_step(BLINKER_V), BLINKER_H)
    block = board([(1, 1), (1, 2), (2, 1), (2, 2)])
    assert torch.equal(life_step(block), block)
    assert torch.equal(life_step(board([(4, 4)])), torch.zeros(8, 8))  # a lone cell dies


def test_glider_moves_one_cell_diagonally_every_four_steps_and_wraps():
    seq = life_sequence(GLIDER[None], 4)[0]
    assert torch.equal(seq[4], torch.roll(GLIDER, shifts=(1, 1), dims=(0, 1)))
    assert not torch.equal(seq[1], GLIDER) and seq[1].sum() == 5
    # 32 steps carry it 8 cells: once around the 8x8 torus, back where it started
    assert torch.equal(life_sequence(GLIDER[None], 32)[0, -1], GLIDER)


def test_boards_follow_the_rules_and_are_seeded():
    boards = LifeBoards(size=10, steps=3)
    seq = boards.sample(16, torch.Generator().manual_seed(0))
    assert seq.shape == (16, 4, 10, 10)
    for t in range(3):
        assert torch.equal(life_step(seq[:, t]), seq[:, t + 1])
    assert torch.equal(seq, boards.sample(16, torch.Generator().manual_seed(0)))


def glider_states(m):
    return life_sequence(GLIDER[None], m - 1)  # (1, m, 8, 8)


def corrupt(b, pixels):
    b = b.clone()
    flat = b.view(-1)
    flat[-pixels:] = 1 - flat[-pixels:]
    return b


def test_metric_on_appendix_b_examples():
    # Figure 2: 3 GoL and 3 model timesteps; h_2 (3rd predicted) matches s_3, h_1 nothing: 0.5
    s = glider_states(4)
    wrong = torch.ones(8, 8)
    assert imagination_metric(torch.stack([wrong, s[0, 2]])[None], s).item() == 0.5
    # Figure 3: both predictions match the same GoL state: (1 + 0.5) / 2 = 0.75
    assert imagination_metric(torch.stack([s[0, 1], s[0, 1]])[None], s).item() == 0.75
    # Figure 4: 2 GoL and 3 model timesteps; h_1 matches s_2, h_2 matches s_3, which is the
    # trained final state and so ignored; denominator min(2, 3 - 2) = 1: 1.0
    s3 = glider_states(3)
    assert imagination_metric(torch.stack([s3[0, 1], s3[0, 2]])[None], s3).item() == 1.0
    # Figure 5: both model states match the one intermediate GoL state: 1 + 0.5 = 1.5
    assert imagination_metric(torch.stack([s3[0, 1], s3[0, 1]])[None], s3).item() == 1.5


def test_metric_threshold_and_95_percent_match():
    s = glider_states(3)  # m = 3, one intermediate state; 64 pixels per board
    target = s[0, 1]
    soft = target * 0.9 + 0.05  # probabilities: thresholded at 0.5 they equal the target
    assert imagination_metric(soft[None, None], s).item() == 1.0
    assert imagination_metric(corrupt(target, 3)[None, None], s).item() == 1.0  # 61/64 >= 95%
    assert imagination_metric(corrupt(target, 4)[None, None], s).item() == 0.0  # 60/64 < 95%
    with pytest.raises(ValueError):
        imagination_metric(torch.zeros(1, 2, 8, 8), s[:, :2])  # no intermediate state


def test_imagination_net_shapes():
    net = ImaginationNet(channels=6, rnn_steps=4, rnn=False)
    boards = torch.zeros(5, 1, 12, 12)
    assert [h.shape for h in net.hidden_states(boards)] == [(5, 6, 12, 12)] * 5
    assert net.imagine(boards).shape == (5, 5, 12, 12)
    assert len(net.cells) == 4 and len(ImaginationNet(6, 4, rnn=True).cells) == 1
    torch.manual_seed(0)
    noise = torch.randn(5, 1, 12, 12)
    assert all((h >= 0).all() for h in net.hidden_states(noise))
    linear = ImaginationNet(channels=6, rnn_steps=2, linear_output=True)
    assert (linear.hidden_states(noise)[-1] < 0).any()  # no ReLU after the cell's 1x1 conv
    assert set(linear.state_dict()) == set(ImaginationNet(6, 2).state_dict())


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_each_switch_changes_the_modules_as_described():
    c = 4
    base = ImaginationNet(c, 3)
    conv3, conv1 = 9 * c * c + c, c * c + c  # the cell's 3x3 and 1x1 convolutions
    assert n_params(base.cells) == conv3 + conv1
    assert n_params(base.encoder) == c + c and n_params(base.decoder) == c + 1
    single = ImaginationNet(c, 3, single_conv=True)
    assert n_params(single.cells) == conv3 and len(single.cells[0].net) == 2  # conv, ReLU
    wide = ImaginationNet(c, 3, codec_kernel=3)
    assert n_params(wide.encoder) == 9 * c + c and n_params(wide.decoder) == 9 * c + 1
    assert n_params(wide.cells) == n_params(base.cells)
    torch.manual_seed(0)
    noise = 3 * torch.randn(5, 1, 8, 8)
    for output, low, high in (("tanh", -1, 1), ("sigmoid", 0, 1)):
        net = ImaginationNet(c, 3, cell_output=output)
        assert n_params(net) == n_params(base)
        assert isinstance(net.cells[0].net[-1], torch.nn.Tanh | torch.nn.Sigmoid)
        for h in net.hidden_states(noise)[1:]:
            assert low < h.min() and h.max() < high
    assert (ImaginationNet(c, 3, cell_output="tanh").hidden_states(noise)[-1] < 0).any()
    config = GoLConfig(channels=c, cell_output="sigmoid", single_conv=True, codec_kernel=3)
    net = ImaginationNet.from_config(config)
    assert n_params(net.cells) == conv3 and isinstance(net.cells[0].net[-1], torch.nn.Sigmoid)
    assert n_params(net.decoder) == 9 * c + 1
    with pytest.raises(ValueError):
        ImaginationNet(c, 3, cell_output="gelu")
    with pytest.raises(ValueError):
        ImaginationNet(c, 3, codec_kernel=5)


class Crash(Exception):
    pass


def _whole_and_resumed(config: GoLConfig, checkpoint, crash_at: int):
    """One uninterrupted training and one crashed at step ``crash_at`` then resumed; both
    trained models must be equal bit for bit."""
    torch.set_num_threads(1)
    whole = train_gol(config, log_every=2)

    def crash(done, _total):
        if done == crash_at:
            raise Crash

    with pytest.raises(Crash):
        train_gol(config, checkpoint, log_every=2, progress=crash)
    resumed = train_gol(config, checkpoint, log_every=2)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    return whole, resumed


def test_training_resumes_exactly_after_a_crash(tmp_path):
    config = GoLConfig(steps=2, channels=4, board=6, train_steps=6, batch=8, adversarial_steps=3)
    _, resumed = _whole_and_resumed(config, tmp_path / "ckpt.pt", crash_at=5)
    assert [h["step"] for h in resumed.history] == [2, 4, 6]
    assert resumed.decoder_before_adversarial is not None
    result = evaluate_gol(resumed.model, config, sequences=50)
    assert (
        0.0 <= result["all_dead_metric"] <= 1.0
        and 0.0 <= result["metric"] <= 1.0
        and 0.0 <= result["final_pixel_accuracy"] <= 1.0
    )


@pytest.mark.parametrize(
    "switch",
    [
        {"cell_output": "tanh"},
        {"cell_output": "sigmoid"},
        {"single_conv": True},
        {"codec_kernel": 3},
    ],
)
def test_training_with_each_switch_runs_and_resumes(switch, tmp_path):
    config = GoLConfig(steps=2, channels=3, board=6, train_steps=4, batch=4, **switch)
    _, resumed = _whole_and_resumed(config, tmp_path / "ckpt.pt", crash_at=3)
    assert set(resumed.model.state_dict()) == set(ImaginationNet.from_config(config).state_dict())


# The config strings of checkpoints written before a group of fields existed.
BEFORE_THE_REALS_SWITCH = [", adversarial_reals='all'"]
BEFORE_THE_ADVERSARIAL_SWITCHES = [
    *BEFORE_THE_REALS_SWITCH,
    ", adversarial_weight=0.1, adversarial_fakes='soft'",
]
BEFORE_THE_CELL_SWITCHES = [
    *BEFORE_THE_ADVERSARIAL_SWITCHES,
    ", cell_output='relu', single_conv=False, codec_kernel=1",
]


@pytest.mark.parametrize(
    "missing", [BEFORE_THE_REALS_SWITCH, BEFORE_THE_ADVERSARIAL_SWITCHES, BEFORE_THE_CELL_SWITCHES]
)
def test_a_checkpoint_written_before_the_switches_existed_resumes(missing, tmp_path):
    config = GoLConfig(steps=2, channels=3, board=6, train_steps=4, batch=4)
    torch.set_num_threads(1)
    checkpoint = tmp_path / "ckpt.pt"

    def crash_at_3(done, _total):
        if done == 3:
            raise Crash

    with pytest.raises(Crash):
        train_gol(config, checkpoint, log_every=2, progress=crash_at_3)
    state = torch.load(checkpoint, weights_only=True)
    old = state["config"]
    for fields in missing:
        assert fields in old
        old = old.replace(fields, "")
    torch.save(state | {"config": old}, checkpoint)
    steps = []
    train_gol(config, checkpoint, log_every=2, progress=lambda done, _total: steps.append(done))
    assert steps == [3, 4]  # resumed after step 2, not restarted
    # a non-default switch cannot come from a checkpoint that lacked it
    assert steps_trained(dataclasses.replace(config, codec_kernel=3), checkpoint) == [1, 2, 3, 4]


def steps_trained(config: GoLConfig, checkpoint) -> list[int]:
    """The main training steps that ``train_gol`` runs from ``checkpoint``."""
    steps: list[int] = []
    train_gol(config, checkpoint, log_every=2, progress=lambda done, _total: steps.append(done))
    return steps


def test_the_checkpoint_key_leaves_out_what_later_versions_add_at_their_defaults():
    plain, tanh = GoLConfig(), GoLConfig(cell_output="tanh", seed=3)
    later = ("adversarial_weight", "adversarial_reals", "cell_output", "codec_kernel")
    for name in later:
        assert f", {name}=" not in checkpoint_key(plain)  # groups added later, at defaults
    assert "adversarial_steps=0" in checkpoint_key(plain)  # at 0: the main training's key
    assert "cell_output='tanh'" in checkpoint_key(tanh)
    assert "adversarial_reals" not in checkpoint_key(tanh)
    assert "seed=3" in checkpoint_key(tanh)
    binary = dataclasses.replace(tanh, adversarial_fakes="binary", adversarial_reals="evolved")
    assert checkpoint_key(binary) == checkpoint_key(tanh)
    assert checkpoint_key(dataclasses.replace(tanh, lr=0.01)) != checkpoint_key(tanh)


def test_a_finished_checkpoint_goes_straight_to_another_adversarial_phase(tmp_path):
    torch.set_num_threads(1)
    soft = GoLConfig(steps=2, channels=3, board=6, train_steps=4, batch=4, adversarial_steps=2)
    binary = dataclasses.replace(
        soft, adversarial_steps=5, adversarial_weight=2.0, adversarial_fakes="binary"
    )
    assert main_training_config(soft) == main_training_config(binary)
    checkpoint = tmp_path / "ckpt.pt"
    train_gol(soft, checkpoint, log_every=2)
    steps = []
    reused = train_gol(
        binary, checkpoint, log_every=2, progress=lambda done, _total: steps.append(done)
    )
    assert steps == []  # no main training step ran again
    fresh = train_gol(binary, log_every=2)  # the same model trained from scratch
    assert reused.best_step == fresh.best_step and reused.history == fresh.history
    for key, value in fresh.model.state_dict().items():
        assert torch.equal(value, reused.model.state_dict()[key]), key
    # a setting of the main training trains again
    assert steps_trained(dataclasses.replace(binary, lr=0.01), checkpoint) == [1, 2, 3, 4]


def test_binary_fakes_are_thresholded_boards_with_the_gradient_passed_straight_through():
    probabilities = torch.tensor([0.1, 0.49, 0.51, 0.9], requires_grad=True)
    fakes = decoded_fakes(probabilities, "binary")
    assert fakes.tolist() == [0.0, 0.0, 1.0, 1.0]
    (fakes * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert probabilities.grad is not None
    assert probabilities.grad.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert decoded_fakes(probabilities, "soft") is probabilities
    with pytest.raises(ValueError, match="adversarial fakes"):
        decoded_fakes(probabilities, "hard")
    with pytest.raises(ValueError, match="adversarial fakes"):  # before any training
        train_gol(GoLConfig(adversarial_fakes="hard"))


def test_evolved_reals_are_never_the_random_start_board():
    seq = torch.arange(4.0).view(1, 4, 1, 1).expand(2, 4, 3, 3)  # state i is all i
    data = torch.Generator().manual_seed(0)
    drawn = {int(real_states(seq, "evolved", data)[0, 0, 0]) for _ in range(200)}
    assert drawn == {1, 2, 3}
    drawn = {int(real_states(seq, "all", data)[0, 0, 0]) for _ in range(200)}
    assert drawn == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="adversarial reals"):
        real_states(seq, "first", data)
    with pytest.raises(ValueError, match="adversarial reals"):  # before any training
        train_gol(GoLConfig(adversarial_reals="first"))


@pytest.mark.parametrize(
    ("fakes", "reals"), [("soft", "all"), ("binary", "all"), ("soft", "evolved")]
)
def test_the_adversarial_phase_trains_the_decoder_alone(fakes, reals):
    torch.set_num_threads(1)
    config = GoLConfig(steps=2, channels=3, board=6, train_steps=4, batch=4, lr=0.05)
    plain = train_gol(config, log_every=2)
    adversarial = train_gol(
        dataclasses.replace(
            config,
            adversarial_steps=5,
            adversarial_weight=10.0,
            adversarial_fakes=fakes,
            adversarial_reals=reals,
        ),
        log_every=2,
    )
    before = adversarial.decoder_before_adversarial
    assert before is not None
    for key, value in plain.model.state_dict().items():
        after = adversarial.model.state_dict()[key]
        if key.startswith("decoder."):
            assert torch.equal(value, before[key.removeprefix("decoder.")])
            assert not torch.equal(value, after), key  # the GAN phase moved the decoder
        else:
            assert torch.equal(value, after), key  # encoder and RNN frozen


def test_training_ends_on_the_weights_with_the_lowest_validation_loss():
    config = GoLConfig(steps=2, channels=4, board=6, train_steps=40, batch=8, lr=0.05)
    torch.set_num_threads(1)
    trained = train_gol(config, log_every=4)
    losses = [h["validation_loss"] for h in trained.history]
    assert trained.best_step == trained.history[losses.index(min(losses))]["step"]
    probe = config.boards().sample(512, torch.Generator().manual_seed(10_000 + config.seed))
    assert validation_loss(trained.model, probe, config.loss) == pytest.approx(
        min(losses), abs=1e-6
    )
    last = train_gol(dataclasses.replace(config, keep_best=False), log_every=4)
    assert validation_loss(last.model, probe, config.loss) == pytest.approx(losses[-1], abs=1e-6)


def test_linear_probe_reads_a_state_the_hidden_state_holds_and_not_one_it_lacks():
    config = GoLConfig(steps=2, channels=3, board=8)
    net = ImaginationNet(3, 2)
    with torch.no_grad():  # channel 0 of the encoder's output is the board itself
        net.encoder[0].weight.zero_()
        net.encoder[0].bias.zero_()
        net.encoder[0].weight[0] = 1.0
    table = linear_probe_accuracy(net, config, sequences=60)
    assert len(table) == 3 and all(len(row) == 3 for row in table)
    assert table[0][0] == 1.0  # s_1 is in h_0
    assert table[0][1] < 0.95  # s_2 depends on the neighbours, which a 1x1 probe of h_0 lacks


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "interpret", "imagine", *map(str, args)],
        capture_output=True,
        text=True,
    )


def test_imagine_world_models_run_is_a_one_line_error(tmp_path):
    result = run_cli("runs/some-world-model", "--out", tmp_path / "r")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not a World Models run directory" in result.stderr
    result = run_cli("--gol", "--steps", "1", "--out", tmp_path / "r")
    assert result.returncode == 2 and "--steps" in result.stderr


def test_imagine_gol_writes_a_report(tmp_path):
    out = tmp_path / "gol"
    result = run_cli(
        "--gol",
        "--steps",
        "2",
        "--model-steps",
        "3",
        "--train-steps",
        "10",
        "--board",
        "6",
        "--channels",
        "4",
        "--adversarial-steps",
        "2",
        "--runs",
        "2",
        "--sequences",
        "100",
        "--diagnostic-sequences",
        "20",
        "--cell-output",
        "tanh",
        "--adversarial-fakes",
        "binary",
        "--adversarial-weight",
        "0.5",
        "--no-progress",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 2 and [r["seed"] for r in summary["per_run"]] == [0, 1]
    assert summary["paper"]["metric"] == 0.73  # Table 2: 2 GoL steps, 3 model steps
    assert summary["config"]["cell_output"] == "tanh" and summary["config"]["codec_kernel"] == 1
    assert summary["config"]["adversarial_fakes"] == "binary"
    assert summary["config"]["adversarial_weight"] == 0.5
    groups = summary["over_runs"]
    assert groups["all"]["runs"] == 2 and groups["all"]["metric"]["n"] == 2
    assert groups["all"]["metric"]["mean"] == pytest.approx(summary["mean_metric"])
    kept = groups["kept"]
    assert kept["runs"] == summary["runs_meeting_accuracy_criterion"] == kept["metric"]["n"]
    for r in summary["per_run"]:
        assert r["metric"] == max(r["metric_with_adversarial"], r["metric_without_adversarial"])
        probes = np.array(r["linear_probe_accuracy"])  # 4 hidden states x 3 GoL states
        assert probes.shape == (4, 3) and probes[0, 0] >= 0.99  # the autoencoded first state
        diagnostics = r["diagnostics"]  # 3 steps pair a hidden state with a GoL state
        assert len(diagnostics["decoder_logits"]["auc"]) == 3
        assert len(diagnostics["decoder_refit"]["accuracy_bias_scale"]) == 3
        assert len(diagnostics["shared_probe"]["shared_accuracy"]) == 3
        assert 0 <= diagnostics["decoder_refit"]["metric_bias_scale"] <= 1.5
    assert (out / "model_run1.pt").exists() and not list(tmp_path.glob(".gol.run*.pt"))
    state = torch.load(out / "model_run0.pt", weights_only=True)
    ImaginationNet(4, 3, cell_output="tanh").load_state_dict(state)
    with np.load(out / "arrays.npz") as arrays:
        assert arrays["example_states"].shape == (8, 3, 6, 6)
        assert arrays["example_decoded"].shape == (8, 4, 6, 6)
    page = (out / "index.html").read_text()
    assert "Game of Life imagination" in page and "Over runs" in page and "bias refit" in page


def test_kept_checkpoints_train_each_model_once_across_adversarial_settings(tmp_path):
    kept = tmp_path / "checkpoints"
    common = ["--gol", "--steps", "2", "--train-steps", "6", "--board", "6", "--channels", "3"]
    common += ["--runs", "2", "--sequences", "50", "--diagnostic-sequences", "10"]
    common += ["--no-progress", "--checkpoints", kept]
    first = run_cli(*common, "--out", tmp_path / "soft")
    assert first.returncode == 0, first.stderr
    files = sorted(kept.iterdir())
    assert len(files) == 2  # one per seed, kept after the report
    stamps = [f.stat().st_mtime_ns for f in files]
    second = run_cli(
        *common,
        *("--adversarial-steps", "3", "--adversarial-fakes", "binary"),
        *("--adversarial-reals", "evolved", "--out", tmp_path / "b"),
    )
    assert second.returncode == 0, second.stderr
    assert sorted(kept.iterdir()) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read, not trained and written again
    for run in (0, 1):
        soft = torch.load(tmp_path / "soft" / f"model_run{run}.pt", weights_only=True)
        binary = torch.load(tmp_path / "b" / f"model_run{run}.pt", weights_only=True)
        assert all(torch.equal(soft[k], binary[k]) for k in soft if not k.startswith("decoder."))
        assert not torch.equal(soft["decoder.weight"], binary["decoder.weight"])
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["config"]["adversarial_fakes"] == "binary"
    assert summary["config"]["adversarial_reals"] == "evolved"
    assert all(r["metric_with_adversarial"] is not None for r in summary["per_run"])
