"""Object masks from CoinRun's renderer, and NMF features labelled by the objects they see."""

import numpy as np
import pytest
from tiny_models import COINRUN

import envs
from envs.coinrun_state import ENEMY, SAW, WALL_MID, WALL_TOP, CoinRunState
from interpret.attribution.hazards import area_fractions, hazard_masks
from interpret.attribution.nmf import NMFFeatures
from interpret.attribution.object_labels import (
    dominant_labels,
    feature_for_class,
    label_by_objects,
    score_objects,
)
from interpret.attribution.object_masks import OBJECT_CLASSES, object_masks
from interpret.attribution.report import _objects_table, feature_colors
from interpret.core.errors import InterpretError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def first_state(**options) -> CoinRunState:
    vec = envs.make_vec_env(COINRUN, 1, 5, distribution_mode="easy", **options)
    try:
        vec.reset()
        return CoinRunState.from_bytes(vec.get_states()[0])
    finally:
        vec.close()


@pytest.fixture(scope="module")
def states():
    """Two frames of one easy level with a buzzsaw placed right of the agent and an enemy
    further right, with and without the velocity panel."""
    out = []
    for paint in (True, False):
        state = first_state(paint_vel_info=paint).remove(SAW, ENEMY).remove_lava()
        state.add_buzzsaw(state.agent.x + 2.5, state.agent.y + 1.0)
        state.add_enemy(state.agent.x + 4.5, state.agent.y)
        out.append(state.to_bytes())
    return out


@pytest.fixture(scope="module")
def masks(states):
    return object_masks(states)


def cls(name: str) -> int:
    return OBJECT_CLASSES.index(name)


def test_masks_partition_every_frame(masks):
    assert masks.shape == (2, len(OBJECT_CLASSES), 64, 64)
    np.testing.assert_array_equal(masks.sum(axis=1), 1)  # each pixel in exactly one class
    for name in ("agent", "buzzsaw", "enemy", "wall", "background"):
        assert masks[0, cls(name)].any(), name


def test_masks_agree_with_the_hazard_masks(states, masks):
    """The buzzsaw class is the hazard mask of buzzsaws, less what is drawn in front of it."""
    saw = hazard_masks(states, kinds=["buzzsaw"])
    in_front = masks[:, : cls("buzzsaw")].any(axis=1)
    np.testing.assert_array_equal(masks[:, cls("buzzsaw")], saw & ~in_front)
    assert (masks[:, cls("buzzsaw")].sum(axis=(1, 2)) >= 6).all()  # a 1-unit saw: ~3x3 px


def test_walls_outside_the_map_are_walls(states, masks):
    """The level starts at the map's left edge, so the camera, centred on the agent, shows
    cells beyond it: CoinRun draws them with the wall texture, and they count as wall."""
    frame = drawn(states[1])
    wall = masks[1, cls("wall")]
    inside = envs_draw_without_walls(states[1])  # the map's own walls removed
    outside = wall & ~(frame != inside).any(axis=-1)  # wall pixels the wall edit leaves alone
    assert outside[:, :8].all()  # the frame's left edge lies outside the map
    texture = {tuple(c) for c in frame[wall & ~outside]}
    shared = np.mean([tuple(c) in texture for c in frame[outside]])
    assert shared > 0.9  # drawn with the walls' own colours (a few blends of the downscaling)
    assert not (masks[1, cls("background")] & outside).any()


def drawn(state: bytes) -> np.ndarray:
    """(64, 64, 3) the frame the game draws for `state`."""
    vec = envs.make_vec_env(COINRUN, 1, 0)
    try:
        vec.reset()
        vec.set_states([state], [0])
        return vec.observations()[0]
    finally:
        vec.close()


def envs_draw_without_walls(state: bytes) -> np.ndarray:
    return drawn(CoinRunState.from_bytes(state).remove_cells(WALL_MID, WALL_TOP).to_bytes())


def test_velocity_panel_only_when_painted(masks):
    panel = masks[:, cls("velocity panel")]
    assert panel[0].any() and not panel[1].any()
    ys, _ = np.nonzero(panel[0])
    assert ys.max() < 16  # the panel is drawn along the top of the frame


def one_hot_features(k: int, channels: int) -> NMFFeatures:
    return NMFFeatures("2b", np.eye(k, channels, dtype=np.float32), "attribution", 0.0)


def test_a_feature_that_fires_on_buzzsaws_is_labelled_buzzsaw(states, masks):
    """Constructed attributions at a (16, 16) layer: channel 0 is bad news exactly on buzzsaw
    pixels, channel 1 good news on walls, channel 2 the same everywhere."""
    areas = {name: area_fractions(masks[:, cls(name)], (16, 16)) for name in OBJECT_CLASSES}
    attributions = np.zeros((2, 4, 16, 16), dtype=np.float32)
    attributions[:, 0] = -areas["buzzsaw"]
    attributions[:, 1] = areas["wall"]
    attributions[:, 2] = 0.01
    labels = score_objects(one_hot_features(3, 4), attributions, masks)
    assert labels.labels == ["buzzsaw", "wall", ""]
    # exactly on buzzsaw pixels: buzzsaws explain all of it, although they fill only part of
    # the cells they touch at the layer's resolution
    saw = cls("buzzsaw")
    np.testing.assert_allclose(labels.negative_shares[0, saw], 1.0, atol=1e-6)
    np.testing.assert_allclose(labels.fit_r2[:2], 1.0, atol=1e-6)  # a perfect fit
    assert labels.positive_shares[0].sum() == 0  # no good news at all
    np.testing.assert_allclose(labels.shares.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(labels.area.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(labels.lift[0, saw], 1 / labels.area[saw], rtol=1e-6)
    present = labels.area > 0  # coin, lava and crate are absent: lift and contrast 0
    np.testing.assert_allclose(labels.lift[2, present], 1.0, atol=1e-6)  # uniform: no preference
    np.testing.assert_allclose(labels.contrast[2, present], 1.0, atol=1e-5)
    assert (labels.lift[:, ~present] == 0).all()
    assert labels.contrast[0, saw] > 1e6 and labels.contrast[0, cls("wall")] == 0
    np.testing.assert_allclose(labels.shares[2], labels.area, atol=1e-6)
    assert "2: no class dominates</td>" in _objects_table(labels, feature_colors(3))
    assert labels.frames[cls("velocity panel")] == 1  # one of the two frames paints it
    # the same through the renderer, from the states
    again = label_by_objects(one_hot_features(3, 4), attributions, states)
    np.testing.assert_allclose(again.contrast, labels.contrast)


def contrast_of(shares: np.ndarray, area: np.ndarray) -> np.ndarray:
    return (shares / area) / ((1 - shares) / (1 - area))


def test_the_rule_and_repeated_classes_numbered_by_contrast():
    area = np.array([0.001, 0.4, 0.599])  # coin, wall, background
    shares = np.array([
        [0.04, 0.30, 0.66],    # coin: 4%, contrast 42; background 1.3
        [0.10, 0.30, 0.60],    # coin at contrast 111: the first coin feature
        [0.015, 0.95, 0.035],  # coin under MIN_SHARE is no rival: wall at contrast 28.5
        [0.0, 0.55, 0.45],     # wall at contrast 1.8: under MIN_CONTRAST
        [0.01, 0.30, 0.69],    # coin under MIN_SHARE, nothing else dense: none
    ])  # fmt: skip
    labels = dominant_labels(shares, contrast_of(shares, area), ["coin", "wall", "background"])
    assert labels == ["coin 2", "coin", "wall", "", ""]
    rivals = np.array([[0.04, 0.03, 0.93]])  # coin at 42, a small second class at 31
    small = np.array([0.001, 0.001, 0.998])
    assert dominant_labels(rivals, contrast_of(rivals, small), "abc") == [""]


def test_the_feature_for_a_class_is_its_label_else_the_densest_unlabelled_one():
    area = np.array([0.001, 0.001, 0.998])  # coin, enemy, background
    shares = np.array([
        [0.10, 0.05, 0.85],  # coin (contrast 111) leads enemy (53) by 2x: coin
        [0.00, 0.03, 0.97],  # enemy alone (31): enemy
        [0.03, 0.04, 0.93],  # enemy 42 vs coin 31, no 2x lead: unlabelled
        [0.03, 0.01, 0.96],  # coin 31, enemy under MIN_SHARE: coin 2
    ])  # fmt: skip
    contrast = contrast_of(shares, area)
    labels = dominant_labels(shares, contrast, ["coin", "enemy", "background"])
    assert labels == ["coin", "enemy", "", "coin 2"]
    scores = {"classes": ["coin", "enemy", "background"], "labels": labels}
    scores |= {"contrast": contrast.tolist(), "shares": shares.tolist()}
    assert feature_for_class(scores, "enemy")[0] == 1
    assert feature_for_class(scores, "coin")[0] == 0
    unlabelled = {**scores, "labels": ["coin", "", "", "coin 2"]}
    chosen, why = feature_for_class(unlabelled, "enemy")
    assert chosen == 2 and "highest contrast" in why  # 42 over feature 1's 31
    assert feature_for_class(unlabelled, "background")[0] is None
    with pytest.raises(InterpretError, match="no object class 'saw'"):
        feature_for_class(scores, "saw")


def test_mismatched_inputs_are_refused(masks):
    features = one_hot_features(2, 4)
    with pytest.raises(InterpretError, match="attributions for"):
        score_objects(features, np.zeros((3, 4, 16, 16), np.float32), masks)
    with pytest.raises(InterpretError, match="convolutional"):
        score_objects(features, np.zeros((2, 4), np.float32), masks)
    vec = envs.make_vec_env("procgen:bigfish", 1, 0)
    try:
        vec.reset()
        other = vec.get_states()
    finally:
        vec.close()
    with pytest.raises(InterpretError, match="CoinRun"):
        object_masks(other)
