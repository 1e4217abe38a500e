"""The Game of Life imaginer's diagnostics on constructed models whose hidden states are known
functions of the true boards, so every answer is known in advance."""

import numpy as np
import pytest
import torch

from interpret.imagination.game_of_life import life_sequence
from interpret.imagination.gol_diagnostics import (
    best_threshold,
    decoder_logits,
    fit_affine,
    gol_diagnostics,
    refit_bias,
    refit_bias_scale,
    refit_decoder,
    shared_probe,
)
from interpret.imagination.gol_imaginer import GoLConfig, ImaginationNet

CONFIG = GoLConfig(steps=3, channels=2, board=8)


class OracleNet(ImaginationNet):
    """h_i = scale_i * s_i + offset_i in channel 0 (channel 1 is 0); the decoder reads channel
    0 with weight 1 and bias 0, so its logit on h_i is exactly that affine copy of s_i."""

    def __init__(self, affine: list[tuple[float, float]]) -> None:
        super().__init__(channels=2, rnn_steps=len(affine) - 1)
        self.affine = affine
        with torch.no_grad():
            self.decoder.weight.zero_()
            self.decoder.weight[0, 0] = 1.0
            self.decoder.bias.zero_()

    def hidden_states(self, boards: torch.Tensor) -> list[torch.Tensor]:
        states = life_sequence(boards[:, 0], self.rnn_steps)  # (N, T + 1, H, W)
        return [
            torch.stack([a * states[:, i] + b, torch.zeros_like(states[:, i])], dim=1)
            for i, (a, b) in enumerate(self.affine)
        ]


# h_0 and h_3 decode right; h_1 is squashed below 0 (its bias is off); h_2 is inverted (its
# scale is off: no bias alone can fix it)
DRIFTING = [(4.0, -2.0), (0.1, -0.5), (-3.0, 1.0), (4.0, -2.0)]
TRUE = [(4.0, -2.0)] * 4


def test_decoder_logits_report_each_steps_live_and_dead_values():
    stats = decoder_logits(OracleNet(DRIFTING), CONFIG, sequences=50)
    np.testing.assert_allclose(stats.live_mean, [2.0, -0.4, -2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(stats.dead_mean, [-2.0, -0.5, 1.0, -2.0], atol=1e-6)
    np.testing.assert_allclose(stats.live_std, 0.0, atol=1e-6)
    assert stats.accuracy_at_zero[0] == 1.0 and stats.accuracy_at_zero[3] == 1.0
    assert stats.balanced_at_zero[1] == 0.5  # everything called dead: live recall 0
    assert stats.balanced_at_zero[2] == 0.0  # everything called wrong
    np.testing.assert_allclose(stats.auc, [1.0, 1.0, 0.0, 1.0])  # h_2 separates, inverted


def test_refits_find_the_offset_and_the_sign_that_separate_live_from_dead():
    z = torch.tensor([0.0, 0.1, 0.0, 0.0] * 25)
    y = torch.tensor([0.0, 1.0, 0.0, 0.0] * 25)
    assert best_threshold(z, y) == (pytest.approx(0.05), 1.0)
    assert refit_bias(z, y) == (1.0, pytest.approx(-0.05))  # z - 0.05 > 0 on live cells only
    a, b = refit_bias_scale(-z, y)
    assert a < 0 and (torch.sigmoid(a * -z + b) > 0.5).float().equal(y)
    assert fit_affine(z, y)[0] > 10  # the logistic fit stretches the 0.1 gap
    assert best_threshold(torch.zeros(8), torch.tensor([0.0, 1.0] * 4))[1] == 0.5  # no cut


def test_bias_and_scale_refit_recovers_the_metric_the_raw_decoder_misses():
    refit = refit_decoder(OracleNet(DRIFTING), CONFIG, fit_sequences=100, test_sequences=200)
    assert refit.metric_raw < 0.2
    assert 0.3 < refit.metric_bias < 0.7  # h_1 fixed by its offset, h_2 (inverted) not
    assert refit.metric_bias_scale >= 0.95
    assert refit.accuracy_bias[1] == 1.0 and refit.accuracy_bias[2] < 0.9  # at best: all dead
    assert refit.accuracy_bias_scale.min() == 1.0 and refit.scale[2] < 0
    assert refit.accuracy_raw[1] < 1.0


def test_refit_cannot_restore_a_state_that_is_not_there():
    noise = OracleNet(DRIFTING)
    noise.affine = [(4.0, -2.0), (0.0, 0.3), (0.0, 0.3), (4.0, -2.0)]  # h_1, h_2 constant
    refit = refit_decoder(noise, CONFIG, fit_sequences=100, test_sequences=200)
    assert refit.metric_bias_scale < 0.2
    assert refit.accuracy_bias_scale[1] < 0.95


def test_shared_probe_reads_codes_equal_to_the_boards_and_not_drifting_ones():
    exact = shared_probe(OracleNet([(1.0, 0.0)] * 4), CONFIG, sequences=60)
    np.testing.assert_allclose(exact.shared_accuracy, 1.0)
    np.testing.assert_allclose(exact.per_step_accuracy, 1.0)
    assert exact.metric >= 0.95
    drifting = shared_probe(OracleNet(DRIFTING), CONFIG, sequences=60)
    np.testing.assert_allclose(drifting.per_step_accuracy, 1.0)  # each step alone is readable
    assert drifting.shared_accuracy.min() < 0.95  # one direction cannot read them all


def test_gol_diagnostics_as_dict_is_json_ready():
    diagnostics = gol_diagnostics(OracleNet(TRUE), CONFIG, fit_sequences=40, test_sequences=40)
    result = diagnostics.as_dict()
    assert set(result) == {"decoder_logits", "decoder_refit", "shared_probe"}
    assert len(result["decoder_logits"]["live_mean"]) == 4
    assert result["decoder_refit"]["metric_raw"] == pytest.approx(
        diagnostics.refit.metric_raw
    ) and isinstance(result["decoder_refit"]["scale"], list)
