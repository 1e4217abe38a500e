"""Which game object each pixel of a CoinRun frame shows, from the game's own renderer.

A recorded state is drawn as it is and once more with one object class taken out of it
(`envs.coinrun_state` edits: entities removed, grid cells emptied, the agent drawn with opacity
0, the velocity panel switched off, the background image replaced by black); the two frames
differ exactly where that class is drawn, so no camera geometry or sprite is re-implemented
here. A pixel two classes claim (the soft edge of an agent in front of a wall) goes to the one
drawn in front, in `OBJECT_CLASSES` order. The pixels no edit changes are the walls CoinRun
draws outside the level's map (its out-of-bounds cells are walls): they join "wall".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from envs.coinrun_state import (
    CRATE,
    ENEMY,
    GOAL,
    SAW,
    TRAIL,
    WALL_MID,
    WALL_TOP,
    CoinRunState,
)
from envs.procgen_state import StateFormatError
from interpret.core.errors import InterpretError

COINRUN = "procgen:coinrun"
BACKGROUND = "background"
# Front to back: a pixel claimed by two classes belongs to the first.
CLASS_EDITS: dict[str, Callable[[CoinRunState], object]] = {
    "agent": CoinRunState.hide_agent,
    "buzzsaw": lambda s: s.remove(SAW),
    "enemy": lambda s: s.remove(ENEMY, TRAIL),  # with the fading trail behind it
    "coin": lambda s: s.remove_cells(GOAL),
    "lava": CoinRunState.remove_lava,
    "crate": lambda s: s.remove(CRATE),
    "wall": lambda s: s.remove_cells(WALL_MID, WALL_TOP),  # walls, floors and platforms
    "velocity panel": CoinRunState.hide_velocity_panel,
}
OBJECT_CLASSES = (*CLASS_EDITS, BACKGROUND)
_WALL = OBJECT_CLASSES.index("wall")


def rendered_frames(
    states: Sequence[bytes], edits: Sequence[Callable[[bytes], bytes]], batch_size: int = 32
) -> np.ndarray:
    """(N, 1 + E, 64, 64, 3) uint8: the frame the game draws for each state, then the frames it
    draws for ``edit(state)``, per edit (``iter_rendered_frames``, concatenated)."""
    chunks = list(iter_rendered_frames(states, edits, batch_size))
    return np.concatenate(chunks) if chunks else np.zeros((0, 1 + len(edits), 64, 64, 3), np.uint8)


def iter_rendered_frames(
    states: Sequence[bytes], edits: Sequence[Callable[[bytes], bytes]], batch_size: int = 32
) -> Iterator[np.ndarray]:
    """``rendered_frames`` of ``batch_size`` states at a time, (n, 1 + E, 64, 64, 3) uint8 each,
    from one env: memory bounded by the batch, however many states.

    Every frame comes from the renderer (``ProcgenVecEnv.set_states`` then ``observations()``);
    a state's bytes carry its own render options (``paint_vel_info``, distribution mode).
    """
    import envs

    if len(states) == 0:
        return
    n_envs = min(batch_size, len(states))
    vec = envs.make_vec_env(COINRUN, n_envs, 0)
    try:
        vec.reset()
        for start in range(0, len(states), n_envs):
            chunk = [bytes(s) for s in states[start : start + n_envs]]
            try:  # edit first: a state of another game is refused before the env sees it
                edited = [[edit(s) for s in chunk] for edit in edits]
            except StateFormatError as err:
                raise InterpretError(f"object masks need CoinRun states: {err}") from err
            rows = list(range(len(chunk)))
            frames = []
            for version in (chunk, *edited):
                vec.set_states(version, rows)
                frames.append(vec.observations()[rows])
            yield np.stack(frames, axis=1)
    finally:
        vec.close()


def rendered_differences(
    states: Sequence[bytes], edits: Sequence[Callable[[bytes], bytes]], batch_size: int = 32
) -> np.ndarray:
    """(N, E, 64, 64) bool: where the frame the game draws for each state differs from the one
    it draws for ``edit(state)``, per edit (``rendered_frames``)."""
    frames = rendered_frames(states, edits, batch_size)
    return (frames[:, 1:] != frames[:, :1]).any(axis=-1)


def state_edit(edit: Callable[[CoinRunState], object]) -> Callable[[bytes], bytes]:
    """``state bytes -> state bytes`` applying an in-place ``CoinRunState`` edit
    (``CLASS_EDITS``)."""

    def apply(state: bytes) -> bytes:
        parsed = CoinRunState.from_bytes(state)
        edit(parsed)
        return parsed.to_bytes()

    return apply


def object_masks(states: Sequence[bytes], batch_size: int = 32) -> np.ndarray:
    """(N, M, 64, 64) bool, M = len(OBJECT_CLASSES): the pixels of each CoinRun state's frame
    that show each object class. A partition: every pixel belongs to exactly one class."""
    edits = [state_edit(edit) for edit in (*CLASS_EDITS.values(), CoinRunState.hide_background)]
    claimed = rendered_differences(states, edits, batch_size)  # (N, M, 64, 64)
    masks = np.zeros((len(states), len(OBJECT_CLASSES), 64, 64), dtype=bool)
    taken = np.zeros((len(states), 64, 64), dtype=bool)
    for i in range(claimed.shape[1]):
        masks[:, i] = claimed[:, i] & ~taken
        taken |= claimed[:, i]
    masks[:, _WALL] |= ~taken  # drawn outside the map: CoinRun's out-of-bounds cells are walls
    return masks
