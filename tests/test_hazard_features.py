"""Hazard pixel masks from CoinRun's own renderer, and each NMF feature's score on them."""

import numpy as np
import pytest
from tiny_models import COINRUN, MODELS

import agents
import envs
from envs.coinrun_state import ENEMY, LAVA_TOP, SAW, CoinRunState
from interpret.attribution.hazards import (
    area_fractions,
    hazard_masks,
    hazard_remover,
    hazard_scores,
    measure_hazard_attribution,
)
from interpret.attribution.integrated_gradients import HiddenLayerIntegratedGradients
from interpret.attribution.nmf import NMFFeatures
from interpret.core.errors import InterpretError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def start_state():
    """The first state of an easy CoinRun level, with every hazard taken out."""
    vec = envs.make_vec_env(COINRUN, 1, 5, distribution_mode="easy")
    try:
        vec.reset()
        state = vec.get_states()[0]
    finally:
        vec.close()
    return CoinRunState.from_bytes(state).remove(SAW, ENEMY).remove_lava()


def centroid_and_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()]), (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


def test_no_hazard_no_mask(start_state):
    assert not hazard_masks([start_state.to_bytes()]).any()


def test_buzzsaw_mask_moves_with_the_saw_at_the_renderer_scale(start_state):
    agent = start_state.agent
    placed = {}
    for dx, dy in [(1.5, 1.0), (2.5, 1.0), (3.5, 1.0), (2.5, 2.0)]:
        state = start_state.copy()
        state.add_buzzsaw(agent.x + dx, agent.y + dy)
        placed[dx, dy] = state.to_bytes()
    masks = hazard_masks(list(placed.values()))
    assert masks.shape == (4, 64, 64) and masks.any(axis=(1, 2)).all()
    (c1, box1), (c2, _), (c3, _), (up, _) = (centroid_and_box(m) for m in masks)
    scale = c2[0] - c1[0]  # pixels per grid unit, read off the renderer
    assert scale > 2
    np.testing.assert_allclose(c3 - c2, [scale, 0], atol=0.6)  # one unit right: `scale` px right
    np.testing.assert_allclose(up - c2, [0, -scale], atol=0.6)  # one unit up: image y decreases
    assert abs(box1[0] - scale) <= 1  # the saw is one unit wide
    # only buzzsaws count when only buzzsaws are asked for
    assert not hazard_masks(list(placed.values()), kinds=("enemy", "lava")).any()


def test_enemy_and_lava_masks_are_their_own(start_state):
    agent = start_state.agent
    state = start_state.copy()
    state.add_enemy(agent.x + 2.5, agent.y)
    x, y = int(agent.x + 4), int(agent.y + 3)
    state.game.grid[y, x] = LAVA_TOP
    data = state.to_bytes()
    batched = hazard_masks([data] * 3, kinds=["enemy"], batch_size=2)  # batches of 2, then 1
    assert (batched == batched[0]).all()
    enemy = batched[0]
    lava = hazard_masks([data], kinds=["lava"])[0]
    both = hazard_masks([data])[0]
    assert enemy.any() and lava.any() and not (enemy & lava).any()
    np.testing.assert_array_equal(both, enemy | lava)
    assert centroid_and_box(lava)[0][0] > centroid_and_box(enemy)[0][0]  # lava further right
    assert not hazard_masks([hazard_remover()(data)]).any()  # nothing left to remove


def test_non_coinrun_state_is_refused():
    vec = envs.make_vec_env("procgen:bigfish", 1, 0)
    try:
        vec.reset()
        state = vec.get_states()[0]
    finally:
        vec.close()
    with pytest.raises(InterpretError, match="CoinRun"):
        hazard_masks([state])
    with pytest.raises(InterpretError, match="hazard kinds"):
        hazard_remover(["spikes"])


def test_area_fractions_are_block_means():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 64, 64)) < 0.3
    expected = masks.reshape(3, 32, 2, 32, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(area_fractions(masks, (32, 32)), expected, atol=1e-6)


def test_scores_weigh_negative_attribution_by_hazard_area():
    features = NMFFeatures("x", np.eye(3, 4, dtype=np.float32), "attribution", 0.0)
    attributions = np.zeros((2, 4, 2, 2), dtype=np.float32)
    attributions[0, 0, 0, 0] = -2.0  # feature 0, bad news, top-left cell
    attributions[1, 1, 1, 1] = -3.0  # feature 1, bad news, bottom-right cell
    attributions[:, 2] = 5.0  # feature 2: good news only, scores zero
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2, :2] = True  # covers all of frame 0's top-left cell
    masks[1, 2, 2:] = True  # half of frame 1's bottom-right cell
    scores, shares = hazard_scores(features, attributions, masks)
    np.testing.assert_allclose(scores, [-2.0 / 2, -3.0 * 0.5 / 2, 0.0], atol=1e-3)
    np.testing.assert_allclose(shares, [1.0, 0.5, 0.0], atol=1e-3)


def test_hazard_attribution_on_a_tiny_agent(tmp_path):
    path = tmp_path / "model.zip"
    model = MODELS["ours-ppo-interpretable"]()
    model.save(path)
    model.get_env().close()  # not left to the garbage collector (see conftest.py)
    view = agents.load(path)
    directions = np.random.default_rng(0).random((4, 32)).astype(np.float32)
    features = NMFFeatures("2b", directions, "attribution", 0.0)
    options = {"distribution_mode": "easy"}
    small = {"n_envs": 2, "steps_per_round": 24, "n_steps": 4}
    scores = measure_hazard_attribution(view, features, COINRUN, options, 6, 0, **small).scores
    assert scores.shape == (4,) and np.isfinite(scores).all() and (scores <= 0).all()
    assert scores.min() < 0

    measured = measure_hazard_attribution(view, features, COINRUN, options, 6, 0, **small)
    np.testing.assert_allclose(measured.scores, scores, rtol=1e-5)  # seeded: the same frames
    assert measured.observations.shape == (6, 64, 64, 3) and measured.masks.any(axis=(1, 2)).all()
    assert ((measured.shares > 0) & (measured.shares < 1)).all()
    # the scores are those of the sampled frames' own attributions and masks
    again = HiddenLayerIntegratedGradients(view, "2b", n_steps=4).attribute(measured.observations)
    expected, shares = hazard_scores(features, again.attributions, measured.masks)
    np.testing.assert_allclose(measured.scores, expected, rtol=1e-4)
    np.testing.assert_allclose(measured.shares, shares, rtol=1e-4)
    with pytest.raises(InterpretError, match="CoinRun"):
        measure_hazard_attribution(view, features, "procgen:bigfish", {}, 8, 0)
