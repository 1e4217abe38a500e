"""Why a CoinRun episode ended without the coin: buzzsaw, enemy (by direction), lava, timeout.

Decided from the game state read before the fatal step and the action taken there, with the
game's own rules (procgen 0.10.7, basic-abstract-game.cpp and games/coinrun.cpp). Within one
step the game first moves every entity (the agent included), then tests each entity e against
the agent with ``|e.x - a.x| < e.rx + a.rx + e.collision_margin`` and the same in y (strict,
float32), ending the episode on a buzzsaw or an enemy; the agent's cells
``int(a.x -/+ (a.rx - 0.001))`` x ``int(a.y -/+ (a.ry - 0.001))`` are then tested for lava; last,
``cur_time >= timeout`` ends it.

The motion is the game's, not re-implemented: the pre-step state is played one step in a
scratch game with every hazard made harmless (entity `collision_margin` set hugely negative,
which only the agent test reads, and lava cells emptied, which nothing that moves reads), so
the step does not end and the moved positions can be read back. The overlap rule is then
applied to them with the hazards' real margins and the real grid. An enemy's direction is the
sign of its velocity before the step (what the agent saw).

Written by hand because procgen reports only that an episode ended, not what ended it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import envs
from envs.coinrun_state import ENEMY, GOAL, LAVA, SAW, CoinRunState
from envs.procgen_state import SPACE, Entity

BUZZSAW = "buzzsaw"
ENEMY_LEFT = "enemy moving left"
ENEMY_RIGHT = "enemy moving right"
LAVA_CAUSE = "lava"
TIMEOUT = "timeout"
CAUSES = (BUZZSAW, ENEMY_LEFT, ENEMY_RIGHT, LAVA_CAUSE, TIMEOUT)
# The paper's table: buzzsaw / enemy moving left / enemy moving right / multiple or other.
TABLE_COLUMNS = (BUZZSAW, ENEMY_LEFT, ENEMY_RIGHT, "multiple or other")

POS_EPS = np.float32(-0.001)  # basic-abstract-game.cpp: margin of the agent's grid test
_HARMLESS = -1.0e6  # a collision margin no overlap can beat
_TAG_OFFSET = 1.0  # hazards are tagged through `climber_spawn_x`, a field only Climber reads


@dataclass(frozen=True)
class FailureCause:
    """What ended one episode.

    Attributes:
        causes: sorted names from `CAUSES` that all struck on the fatal step (empty: none found,
            i.e. the step did not end the episode by a hazard or the time limit).
        entities: indices (in the pre-step state's entity list) of the hazards touched.
    """

    causes: tuple[str, ...]
    entities: tuple[int, ...] = ()

    @property
    def category(self) -> str:
        """The paper's column: the single hazard touched, else "multiple or other"."""
        if len(self.causes) == 1 and self.causes[0] in TABLE_COLUMNS:
            return self.causes[0]
        return TABLE_COLUMNS[-1]

    @property
    def label(self) -> str:
        return " + ".join(self.causes) if self.causes else "none"


def has_collision(e1: Entity, e2: Entity, margin: float) -> bool:
    """`BasicAbstractGame::has_collision` in float32: strict box overlap, widened by margin."""
    f = np.float32
    threshold_x = (f(e1.rx) + f(e2.rx)) + f(margin)
    threshold_y = (f(e1.ry) + f(e2.ry)) + f(margin)
    return bool(abs(f(e1.x) - f(e2.x)) < threshold_x and abs(f(e1.y) - f(e2.y)) < threshold_y)


def touched_cells(state: CoinRunState, entity: Entity) -> list[tuple[int, int, int]]:
    """[(x, y, object id)] of the non-empty cells `check_grid_collisions` reports for `entity`."""
    f = np.float32
    x, y, rx, ry = f(entity.x), f(entity.y), f(entity.rx), f(entity.ry)
    min_x, max_x = int(x - (rx + POS_EPS)), int(x + (rx + POS_EPS))
    min_y, max_y = int(y - (ry + POS_EPS)), int(y + (ry + POS_EPS))
    cells = []
    for cx in range(min_x, max_x + 1):
        for cy in range(min_y, max_y + 1):
            obj = state.game.cell(cx, cy)  # out of the grid: the game's out-of-bounds object
            if obj != SPACE:
                cells.append((cx, cy, obj))
    return cells


class FailureLabeler:
    """Labels fatal steps of CoinRun. Holds one scratch CoinRun game (a few seconds to create),
    so make one and reuse it; `close()` (or a `with` block) frees it.
    """

    def __init__(self) -> None:
        self._env = envs.make_env("procgen:coinrun", seed=0)
        self._env.reset()

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> FailureLabeler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def moved(self, state: bytes, action: int) -> CoinRunState:
        """The state after one step of `action` from `state`, played with hazards harmless and
        no time limit, so the game does not end or reset; hazards keep their tags."""
        probe = CoinRunState.from_bytes(state)
        for i, entity in enumerate(probe.entities):
            if entity.type in (SAW, ENEMY):
                entity.collision_margin = _HARMLESS
                entity.climber_spawn_x = float(i) + _TAG_OFFSET
        grid = probe.game.grid
        grid[np.isin(grid, (*LAVA, GOAL))] = SPACE
        probe.game.header.timeout = 2**31 - 1
        self._env.set_state(probe.to_bytes())
        self._env.step(int(action))
        after = CoinRunState.from_bytes(self._env.get_state())
        if after.cur_time != probe.cur_time + 1:
            raise RuntimeError("the probe step ended the episode; cannot read the moved state")
        return after

    def cause(self, state: bytes, action: int) -> FailureCause:
        """The cause(s) of the episode's end if `action` is taken in `state` (empty if it
        would not end it, or ends it only by reaching the coin). Call it for failed episodes:
        a step that reaches the coin completes the level even if it also touches a hazard."""
        before = CoinRunState.from_bytes(state)
        after = self.moved(state, action)
        agent = after.agent
        causes: set[str] = set()
        touched = []
        for entity in after.entities:
            if entity.type not in (SAW, ENEMY) or entity.climber_spawn_x < _TAG_OFFSET:
                continue
            index = round(entity.climber_spawn_x - _TAG_OFFSET)
            original = before.entities[index]
            if not has_collision(entity, agent, original.collision_margin):
                continue
            touched.append(index)
            if original.type == SAW:
                causes.add(BUZZSAW)
            else:
                causes.add(ENEMY_LEFT if original.vx < 0 else ENEMY_RIGHT)
        after.game.grid[:] = before.grid  # the real cells (the probe emptied lava)
        if any(obj in LAVA for _, _, obj in touched_cells(after, agent)):
            causes.add(LAVA_CAUSE)
        if before.cur_time + 1 >= before.timeout:
            causes.add(TIMEOUT)
        return FailureCause(tuple(sorted(causes, key=CAUSES.index)), tuple(sorted(touched)))
