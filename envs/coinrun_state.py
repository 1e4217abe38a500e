"""CoinRun's game state: its object ids, its trailing fields, and counterfactual level edits.

CoinRun (procgen 0.10.7, games/coinrun.cpp) keeps hazards in two places: buzzsaws (`SAW`) and
walking enemies (`ENEMY`) are entities; lava (`LAVA_TOP`, `LAVA_MID`) and the coin (`GOAL`) are
grid cells. Coordinates are grid units, y up, the agent a box of half-sizes (0.5, 0.5787).

`CoinRunState.from_bytes(get_state())` reads a state; its edit methods (`remove`, `move`,
`make_invisible`, `remove_lava`, `remove_cells`, `hide_agent`, `hide_velocity_panel`) change
it in place; `to_bytes()` gives what `set_state` takes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from envs.procgen_state import (
    PLAYER,
    SPACE,
    BufferReader,
    Entity,
    ProcgenState,
    Record,
    StateFormatError,
    new_entity,
    parse_state,
    write_state,
)

# Object ids (games/coinrun.cpp; PLAYER, SPACE and TRAIL from object-ids.h).
GOAL = 1  # the coin, a grid cell
SAW = 2  # buzzsaw entity (drawn as SAW or SAW2, alternating every step)
SAW2 = 3
ENEMY = 5  # walking enemy entity (drawn as ENEMY1 / ENEMY2)
ENEMY1 = 6
ENEMY2 = 7
PLAYER_JUMP = 9
PLAYER_RIGHT1 = 12
PLAYER_RIGHT2 = 13
WALL_MID = 15
WALL_TOP = 16
LAVA_MID = 17
LAVA_TOP = 18
ENEMY_BARRIER = 19  # invisible cell that turns enemies around
CRATE = 20
TRAIL = 59  # the fading dots behind enemies

ENTITY_NAMES = {PLAYER: "player", GOAL: "coin", SAW: "buzzsaw", ENEMY: "enemy", CRATE: "crate"}
ENTITY_NAMES[TRAIL] = "trail"
CELL_NAMES = {
    SPACE: "space",
    GOAL: "coin",
    WALL_MID: "wall",
    WALL_TOP: "wall top",
    LAVA_MID: "lava",
    LAVA_TOP: "lava top",
    ENEMY_BARRIER: "enemy barrier",
}
HAZARD_ENTITIES = (SAW, ENEMY)  # CoinRun::handle_agent_collision ends the episode on these
LAVA = (LAVA_MID, LAVA_TOP)  # CoinRun::handle_grid_collision ends the episode on these


@dataclass
class CoinRunFields(Record):
    """`CoinRun::serialize`'s own fields, after the grid."""

    last_agent_y: float
    wall_theme: int
    has_support: bool
    facing_right: bool
    is_on_crate: bool
    gravity: float
    air_control: float


@dataclass
class CoinRunState:
    """A parsed CoinRun state: the generic part (`game`) and CoinRun's fields (`coinrun`)."""

    game: ProcgenState
    coinrun: CoinRunFields

    @classmethod
    def from_bytes(cls, data: bytes) -> CoinRunState:
        """Parse `get_state()` bytes of a CoinRun game; `StateFormatError` otherwise."""
        game = parse_state(data)
        if game.game_name != "coinrun":
            raise StateFormatError(f"state of {game.game_name!r}, not coinrun")
        reader = BufferReader(game.game_fields)
        coinrun = CoinRunFields.read(reader)
        if reader.offset != len(game.game_fields):
            raise StateFormatError(
                f"{len(game.game_fields) - reader.offset} unread bytes after CoinRun's fields"
            )
        return cls(game, coinrun)

    def to_bytes(self) -> bytes:
        """The state as bytes `set_state()` accepts (CoinRun's fields re-encoded)."""
        self.game.game_fields = self.coinrun.to_bytes()
        return write_state(self.game)

    def copy(self) -> CoinRunState:
        """A deep copy (edit it without touching this one)."""
        return CoinRunState(self.game.copy(), copy.deepcopy(self.coinrun))

    # -- reading ------------------------------------------------------------------------------
    @property
    def entities(self) -> list[Entity]:
        return self.game.entities

    @property
    def agent(self) -> Entity:
        return self.game.agent

    @property
    def grid(self) -> np.ndarray:
        """int32 (64, 64) object ids, ``grid[y, x]``, y = 0 at the bottom."""
        return self.game.grid

    @property
    def cur_time(self) -> int:
        return self.game.header.cur_time

    @property
    def timeout(self) -> int:
        return self.game.header.timeout

    def indices(self, *types: int) -> list[int]:
        """Indices into `entities` of the entities of the given types."""
        return [i for i, e in enumerate(self.entities) if e.type in types]

    def buzzsaws(self) -> list[Entity]:
        return [self.entities[i] for i in self.indices(SAW)]

    def enemies(self) -> list[Entity]:
        return [self.entities[i] for i in self.indices(ENEMY)]

    def lava_cells(self) -> np.ndarray:
        """(K, 2) int [x, y] of the lava cells."""
        ys, xs = np.nonzero(np.isin(self.grid, LAVA))
        return np.stack([xs, ys], axis=1)

    def coin_cells(self) -> np.ndarray:
        """(K, 2) int [x, y] of the coin cell(s)."""
        ys, xs = np.nonzero(self.grid == GOAL)
        return np.stack([xs, ys], axis=1)

    # -- counterfactual edits (in place; return self for chaining) -----------------------------
    def remove(self, *types: int, keep: Callable[[Entity], bool] | None = None) -> CoinRunState:
        """Remove the entities of `types` (e.g. `SAW`, `ENEMY`), except those `keep` accepts."""
        self.game.entities = [
            e
            for e in self.entities
            if e.type not in types or e.type == PLAYER or (keep is not None and keep(e))
        ]
        return self

    def add_buzzsaw(self, x: float, y: float) -> int:
        """Add a buzzsaw centred at (x, y) as level generation makes them; return its index."""
        self.game.entities.append(new_entity(x, y, 0.0, 0.0, 0.5, 0.5, SAW))
        return len(self.entities) - 1

    def add_enemy(self, x: float, y: float, vx: float = 0.15, theme: int = 0) -> int:
        """Add a walking enemy centred at (x, y) moving at `vx` (the game uses +-0.15 cells per
        step; negative is leftwards), as level generation makes them; return its index."""
        enemy = new_entity(x, y, vx, 0.0, 0.5, 0.5, ENEMY)
        enemy.smart_step, enemy.image_type, enemy.render_z = True, ENEMY1, 1
        enemy.image_theme = theme
        self.game.entities.append(enemy)
        return len(self.entities) - 1

    def move(self, index: int, x: float, y: float) -> CoinRunState:
        """Put entity `index` at (x, y) (its centre, grid units)."""
        entity = self.entities[index]
        entity.x, entity.y = float(x), float(y)
        return self

    def make_invisible(self, types: Iterable[int] = (SAW,)) -> CoinRunState:
        """Entities of `types` keep their place, motion and lethality but are drawn with
        opacity 0 (`alpha`, which CoinRun never resets for saws or enemies; enemies' trails,
        separate entities, stay visible)."""
        types = tuple(types)
        for entity in self.entities:
            if entity.type in types:
                entity.alpha = 0.0
        return self

    def remove_lava(self, replacement: int = SPACE) -> CoinRunState:
        """Replace every lava cell by `replacement` (empty space by default)."""
        return self.remove_cells(*LAVA, replacement=replacement)

    def remove_cells(self, *ids: int, replacement: int = SPACE) -> CoinRunState:
        """Replace every grid cell holding one of `ids` (e.g. `GOAL`, `WALL_MID`) by
        `replacement` (empty space by default)."""
        self.game.grid[np.isin(self.game.grid, ids)] = replacement
        return self

    def hide_agent(self) -> CoinRunState:
        """Draw the agent with opacity 0 (it stays where it is and plays on)."""
        return self.make_invisible((PLAYER,))

    def hide_background(self) -> CoinRunState:
        """Render a black backdrop instead of the background image (`use_backgrounds` off)."""
        self.game.header.use_backgrounds = 0
        return self

    def hide_velocity_panel(self) -> CoinRunState:
        """Render without the velocity panel (`paint_vel_info` off; the state carries it)."""
        self.game.header.paint_vel_info = 0
        return self


def invisible_buzzsaws(state: bytes) -> bytes:
    """The paper's "invisible buzzsaws" control: the same level with buzzsaws not drawn."""
    return CoinRunState.from_bytes(state).make_invisible((SAW,)).to_bytes()


def without_hazards(state: bytes, types: Iterable[int] = (SAW, ENEMY), lava: bool = False) -> bytes:
    """The same level with the hazard entities of `types` (and lava if asked) removed."""
    edited = CoinRunState.from_bytes(state).remove(*tuple(types))
    if lava:
        edited.remove_lava()
    return edited.to_bytes()
