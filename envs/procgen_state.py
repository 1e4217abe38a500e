"""Read and write Procgen's serialized game state (the bytes of `get_state()` / `set_state()`).

Written by hand because procgen exposes the state only as opaque bytes. The layout follows the
`serialize` methods of procgen 0.10.7's C++ sources: `Game` (game.cpp: version, name, options,
RNGs, step data, step counter), `BasicAbstractGame` (basic-abstract-game.cpp: entity list,
physics and camera fields, the grid) and `Entity` (entity.cpp). Every value is a native
(little-endian) int32 or float32; bools are int32 0/1; strings and vectors are an int32 length
followed by the items. What follows the grid belongs to the game (`ProcgenState.game_fields`,
kept as raw bytes here and read by per-game modules such as `envs.coinrun_state`). The library's
`get_state` appends an int32 end marker (0xCAFECAFE, vecgame.cpp) that `set_state` checks.

`parse_state(data)` then `write_state(state)` gives back `data` byte for byte; editing the
dataclasses in between and `set_state`-ing the result changes the running game.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

SERIALIZE_VERSION = 0
END_OF_BUFFER = struct.pack("<I", 0xCAFECAFE)  # vecgame.cpp: appended after the game's fields
SPACE = 100  # object-ids.h: an empty grid cell
PLAYER = 0  # object-ids.h: the agent's entity type in every game


class StateFormatError(ValueError):
    """The bytes are not a Procgen state this parser understands (truncated, other version...)."""


class BufferReader:
    """Sequential reads of int32s and length-prefixed strings or vectors from a bytes object."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read_int(self) -> int:
        if self.offset + 4 > len(self.data):
            raise StateFormatError(f"state ends at byte {len(self.data)}, needed '<i'")
        (value,) = struct.unpack_from("<i", self.data, self.offset)
        self.offset += 4
        return value

    def _sized(self, item_size: int, what: str) -> bytes:
        """A length-prefixed run of items of ``item_size`` bytes each, as raw bytes."""
        size = self.read_int()
        end = self.offset + item_size * size
        if size < 0 or end > len(self.data):
            raise StateFormatError(f"bad {what} length {size} at byte {self.offset - 4}")
        value = self.data[self.offset : end]
        self.offset = end
        return value

    def read_bytes(self) -> bytes:
        return self._sized(1, "string")

    def int_array(self) -> np.ndarray:
        return np.frombuffer(self._sized(4, "vector"), dtype="<i4").astype(np.int32)

    def rest(self) -> bytes:
        value = self.data[self.offset :]
        self.offset = len(self.data)
        return value


_FORMATS = {"int": "i", "float": "f", "bool": "i"}


class Record:
    """A dataclass read and written field by field, in declaration order, by annotation kind.

    Annotations are strings (``from __future__ import annotations``): "int", "float", "bool"
    (int32 each), "bytes" (length-prefixed) or a nested record's class name. Consecutive
    fixed-size fields are read and written with one precompiled `struct.Struct` (speed: an
    audit parses a state per step).
    """

    _NESTED: ClassVar[dict[str, type]] = {}

    @classmethod
    def _plan(cls) -> list[tuple]:
        """[("fixed", Struct, names, bool names) | ("bytes", name) | ("nested", name, cls)]."""
        plan = cls.__dict__.get("_plan_cache")
        if plan is not None:
            return plan
        plan, run = [], []

        def close_run() -> None:
            if run:
                fmt = "<" + "".join(_FORMATS[kind] for _, kind in run)
                names = tuple(name for name, _ in run)
                bools = tuple(name for name, kind in run if kind == "bool")
                plan.append(("fixed", struct.Struct(fmt), names, bools))
                run.clear()

        for f in fields(cls):  # type: ignore[arg-type]
            if f.type in _FORMATS:
                run.append((f.name, f.type))
                continue
            close_run()
            if f.type == "bytes":
                plan.append(("bytes", f.name))
            else:
                plan.append(("nested", f.name, cls._NESTED[f.type]))
        close_run()
        cls._plan_cache = plan
        return plan

    @classmethod
    def read(cls, reader: BufferReader) -> Any:
        values: dict[str, Any] = {}
        for step in cls._plan():
            if step[0] == "fixed":
                _, layout, names, bools = step
                if reader.offset + layout.size > len(reader.data):
                    raise StateFormatError(
                        f"state ends at byte {len(reader.data)} in {cls.__name__}"
                    )
                values.update(
                    zip(names, layout.unpack_from(reader.data, reader.offset), strict=True)
                )
                reader.offset += layout.size
                for name in bools:
                    values[name] = values[name] > 0
            elif step[0] == "bytes":
                values[step[1]] = reader.read_bytes()
            else:
                values[step[1]] = step[2].read(reader)
        return cls(**values)

    def to_bytes(self) -> bytes:
        parts = []
        for step in self._plan():
            if step[0] == "fixed":
                _, layout, names, _ = step
                parts.append(layout.pack(*(getattr(self, name) for name in names)))
            elif step[0] == "bytes":  # length-prefixed
                value = getattr(self, step[1])
                parts.append(struct.pack("<i", len(value)) + bytes(value))
            else:
                parts.append(getattr(self, step[1]).to_bytes())
        return b"".join(parts)


@dataclass
class RandGenState(Record):
    """A `RandGen`: whether it was seeded and its std::mt19937 state as text (kept verbatim)."""

    is_seeded: int
    mt19937: bytes


@dataclass
class GameHeader(Record):
    """`Game::serialize` (game.cpp): fields every Procgen game has, in file order."""

    version: int
    game_name: bytes
    paint_vel_info: int
    use_generated_assets: int
    use_monochrome_assets: int
    restrict_themes: int
    use_backgrounds: int
    center_agent: int
    debug_mode: int
    distribution_mode: int  # 0 easy, 1 hard, 2 extreme, 3 memory, 10 exploration
    use_sequential_levels: int
    use_easy_jump: int
    plain_assets: int
    physics_mode: int
    grid_step: int
    level_seed_low: int
    level_seed_high: int
    game_type: int
    game_n: int
    level_seed_rand_gen: RandGenState
    rand_gen: RandGenState
    reward: float  # reward of the last step
    done: int
    level_complete: int
    action: int
    timeout: int  # the episode ends when cur_time reaches it (1000 by default)
    current_level_seed: int
    prev_level_seed: int
    episodes_remaining: int
    episode_done: int
    last_reward_timer: int
    last_reward: float
    default_action: int
    fixed_asset_seed: int
    cur_time: int  # steps taken in this episode
    is_waiting_for_step: int

    _NESTED: ClassVar[dict[str, type]] = {"RandGenState": RandGenState}


@dataclass
class Entity(Record):
    """One `Entity` (entity.cpp): a box centred at (x, y) with half-sizes (rx, ry), grid units.

    y grows upwards (row 0 of the grid is the floor). `type` decides the game logic,
    `image_type`/`image_theme` what is drawn, `render_z` the drawing layer (-1, 0 or 1),
    `alpha` the opacity. `collision_margin` is added to rx + ry sums in the agent overlap test.
    """

    x: float
    y: float
    vx: float
    vy: float
    rx: float
    ry: float
    type: int
    image_type: int
    image_theme: int
    render_z: int
    will_erase: bool
    collides_with_entities: bool
    collision_margin: float
    rotation: float
    vrot: float
    is_reflected: bool
    fire_time: int
    spawn_time: int
    life_time: int
    expire_time: int
    use_abs_coords: bool
    friction: float
    smart_step: bool
    avoids_collisions: bool
    auto_erase: bool
    alpha: float
    health: float
    theta: float
    grow_rate: float
    alpha_decay: float
    climber_spawn_x: float


@dataclass
class BasicGameFields(Record):
    """`BasicAbstractGame::serialize` fields between the entity list and the grid."""

    use_procgen_background: int
    background_index: int
    bg_tile_ratio: float
    bg_pct_x: float
    char_dim: float
    last_move_action: int
    move_action: int
    special_action: int
    mixrate: float
    maxspeed: float
    max_jump: float
    action_vx: float
    action_vy: float
    action_vrot: float
    center_x: float
    center_y: float
    random_agent_start: int
    has_useful_vel_info: int
    step_rand_int: int
    asset_rand_gen: RandGenState
    main_width: int
    main_height: int
    out_of_bounds_object: int
    unit: float
    view_dim: float
    x_off: float
    y_off: float
    visibility: float
    min_visibility: float

    _NESTED: ClassVar[dict[str, type]] = {"RandGenState": RandGenState}


@dataclass
class ProcgenState:
    """A whole serialized Procgen game.

    Attributes:
        header: the `Game` fields.
        grid_size: main_width * main_height as the game stored it.
        entities: every entity, the agent included (type `PLAYER`), in the game's order.
        basic: the `BasicAbstractGame` fields after the entities.
        grid: int32 (height, width) object ids, ``grid[y, x]``, y = 0 at the bottom.
        game_fields: the game's own trailing bytes (see e.g. `envs.coinrun_state`), without
            the end marker.
    """

    header: GameHeader
    grid_size: int
    entities: list[Entity]
    basic: BasicGameFields
    grid: np.ndarray
    game_fields: bytes = b""

    @property
    def game_name(self) -> str:
        return self.header.game_name.decode()

    @property
    def agent(self) -> Entity:
        """The agent's entity (the last entity of type PLAYER, as the game looks it up)."""
        players = [e for e in self.entities if e.type == PLAYER]
        if not players:
            raise StateFormatError("state has no PLAYER entity")
        return players[-1]

    def cell(self, x: int, y: int) -> int:
        """The grid object at integer cell (x, y), or the game's out-of-bounds object."""
        height, width = self.grid.shape
        if 0 <= x < width and 0 <= y < height:
            return int(self.grid[y, x])
        return self.basic.out_of_bounds_object

    def copy(self) -> ProcgenState:
        """A deep copy (edit it without touching this one)."""
        return copy.deepcopy(self)


def parse_state(data: bytes) -> ProcgenState:
    """Parse `get_state()` bytes into a `ProcgenState`; raise `StateFormatError` if malformed."""
    reader = BufferReader(bytes(data))
    header = GameHeader.read(reader)
    if header.version != SERIALIZE_VERSION:
        raise StateFormatError(f"state format version {header.version}, expected 0")
    grid_size = reader.read_int()
    n_entities = reader.read_int()
    if not 0 <= n_entities <= (len(data) - reader.offset) // 4:
        raise StateFormatError(f"bad entity count {n_entities}")
    entities = [Entity.read(reader) for _ in range(n_entities)]
    basic = BasicGameFields.read(reader)
    width, height = reader.read_int(), reader.read_int()
    cells = reader.int_array()
    if width < 0 or height < 0 or cells.size != width * height:
        raise StateFormatError(f"grid of {cells.size} cells is not {width} x {height}")
    rest = reader.rest()
    if not rest.endswith(END_OF_BUFFER):
        raise StateFormatError("state does not end with procgen's end-of-buffer marker")
    return ProcgenState(
        header=header,
        grid_size=grid_size,
        entities=entities,
        basic=basic,
        grid=cells.reshape(height, width),
        game_fields=rest[: -len(END_OF_BUFFER)],
    )


def write_state(state: ProcgenState) -> bytes:
    """Serialize a `ProcgenState` back into bytes `set_state()` accepts."""
    height, width = state.grid.shape
    grid = np.ascontiguousarray(state.grid, dtype="<i4").reshape(-1)
    return b"".join(
        [
            state.header.to_bytes(),
            struct.pack("<ii", state.grid_size, len(state.entities)),
            *(entity.to_bytes() for entity in state.entities),
            state.basic.to_bytes(),
            struct.pack("<iii", width, height, grid.size),
            grid.tobytes(),
            state.game_fields,
            END_OF_BUFFER,
        ]
    )


def new_entity(x: float, y: float, vx: float, vy: float, rx: float, ry: float, kind: int) -> Entity:
    """An entity with the C++ `Entity` constructor's defaults (entity.cpp): drawn as `kind`,
    theme 0, layer 0, opaque, no margin, no expiry, moved by its velocity each step."""
    return Entity(
        x=x, y=y, vx=vx, vy=vy, rx=rx, ry=ry, type=kind, image_type=kind, image_theme=0,
        render_z=0, will_erase=False, collides_with_entities=False, collision_margin=0.0,
        rotation=0.0, vrot=0.0, is_reflected=False, fire_time=-1, spawn_time=-1, life_time=0,
        expire_time=-1, use_abs_coords=False, friction=1.0, smart_step=False,
        avoids_collisions=False, auto_erase=True, alpha=1.0, health=1.0, theta=-100.0,
        grow_rate=1.0, alpha_decay=1.0, climber_spawn_x=0.0,
    )  # fmt: skip
