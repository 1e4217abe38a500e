"""Procgen as an SB3 `VecEnv` (and a single gymnasium `Env`), written on procgen's gym3 env.

Written by hand because procgen only ships a gym3 env and an old-`gym` baselines adapter; SB3
needs a `VecEnv` with gymnasium spaces, Monitor-style `episode` infos, level seeds and the raw
game state (for auditing and counterfactual rollouts).

Procgen resets inside its C++ step: after an episode's final action the frame it returns is
already the first frame of the next level, and the frame after the final action is never
rendered. So the `terminal_observation` given on a done step is the last frame of the ended
episode that procgen did render: the observation the final action was taken on.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from procgen import ProcgenGym3Env
from procgen.env import DISTRIBUTION_MODE_DICT, EXPLORATION_LEVEL_SEEDS
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from envs.ids import EnvSpecError, bad_value, check_option_names

OBS_SHAPE = (64, 64, 3)
N_ACTIONS = 15
SEED_LIMIT = 2**31  # procgen takes seeds as int32
BOOL_OPTIONS = (
    "center_agent",
    "paint_vel_info",
    "restrict_themes",
    "use_backgrounds",
    "use_monochrome_assets",
    "use_sequential_levels",
)
INT_OPTIONS = ("num_levels", "start_level", "num_threads")
OPTIONS = (*INT_OPTIONS, *BOOL_OPTIONS, "distribution_mode", "levels")
# Modes other than easy/hard exist for a few games only; procgen aborts the process otherwise.
MODE_GAMES = {
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
    "exploration": tuple(sorted(EXPLORATION_LEVEL_SEEDS)),
}


# The functions of procgen's cffi library a block calls after it is made (see _make_block).
_LIBRARY_FUNCTIONS = (
    "libenv_act", "libenv_close", "libenv_observe", "libenv_set_buffers", "get_state", "set_state",
)  # fmt: skip


def procgen_options(game: str, n_envs: int, options: dict) -> tuple[dict, list[int] | None]:
    """Validate options for `procgen:<game>`; return (ProcgenGym3Env kwargs, levels or None)."""
    env_id = f"procgen:{game}"
    check_option_names(env_id, options, OPTIONS)
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key in BOOL_OPTIONS:
            if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
                raise bad_value(env_id, key, value, "true or false")
            kwargs[key] = bool(value)
        elif key in INT_OPTIONS:
            if not _is_seed(value):
                raise bad_value(env_id, key, value, f"an integer in [0, {SEED_LIMIT})")
            kwargs[key] = int(value)
    mode = options.get("distribution_mode", "hard")
    if mode not in DISTRIBUTION_MODE_DICT:
        raise bad_value(
            env_id, "distribution_mode", mode, f"one of {', '.join(DISTRIBUTION_MODE_DICT)}"
        )
    if game not in MODE_GAMES.get(mode, (game,)):
        raise bad_value(
            env_id,
            "distribution_mode",
            mode,
            f"easy or hard; {mode} exists for {', '.join(MODE_GAMES[mode])}",
        )
    kwargs["distribution_mode"] = mode
    levels = _parse_levels(env_id, options["levels"], n_envs) if "levels" in options else None
    fixed = ("num_levels", "start_level", "use_sequential_levels")
    clash = [key for key in fixed if key in kwargs]
    if clash and (levels is not None or mode == "exploration"):
        why = "levels=" if levels is not None else "distribution_mode=exploration"
        raise EnvSpecError(f"{env_id}: {why} fixes the levels, so drop {', '.join(clash)}")
    if levels is not None and mode == "exploration":
        raise EnvSpecError(f"{env_id}: distribution_mode=exploration fixes the level; drop levels=")
    return kwargs, levels


def _is_seed(value: Any) -> bool:
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and 0 <= value < SEED_LIMIT
    )


def _parse_levels(env_id: str, value: Any, n_envs: int) -> list[int]:
    """`levels` as a list of ints, one per env: a sequence, an int, or a "1,2,3" string."""
    if isinstance(value, str):
        try:
            value = [int(part) for part in value.split(",")]
        except ValueError:
            raise bad_value(env_id, "levels", value, "comma-separated level seeds") from None
    elif _is_seed(value):
        value = [value]
    if not isinstance(value, (Sequence, np.ndarray)) or not all(_is_seed(v) for v in value):
        raise bad_value(env_id, "levels", value, f"a list of level seeds in [0, {SEED_LIMIT})")
    if len(value) != n_envs:
        raise bad_value(env_id, "levels", value, f"one level seed per env ({n_envs})")
    return [int(v) for v in value]


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise EnvSpecError(f"seed must be an integer or None, got {seed!r}")


def derive_seed(seed: int, counter: int) -> int:
    """The procgen `rand_seed` for the `counter`-th recreation after `seed`: `seed` itself at 0."""
    if counter == 0:
        return seed % SEED_LIMIT
    sequence = np.random.SeedSequence([seed % SEED_LIMIT, counter])
    return int(sequence.generate_state(1)[0]) % SEED_LIMIT


class ProcgenVecEnv(VecEnv):
    """`n_envs` Procgen games as an SB3 VecEnv: obs uint8 (n, 64, 64, 3) HWC, 15 discrete actions.

    Normally one `ProcgenGym3Env(num=n_envs)` steps all envs. With `levels=[s0, s1, ...]` (one
    seed per env) env i is its own `ProcgenGym3Env(num=1, num_levels=1, start_level=s_i)` and so
    replays level s_i every episode; `replace_level(i, seed)` moves it to another level.

    `step` returns rewards float32 (n,), dones bool (n,) and one info dict per env with
    `level_seed` (the level the step was played in). On an episode's last step the info also has
    `level_complete` (bool), `terminal_observation` (uint8 (64, 64, 3), the observation the final
    action was taken on, since procgen never renders the frame after it) and SB3 Monitor's
    `episode` = {"r": return, "l": length in steps, "t": seconds since creation}.

    :param game: one of `envs.PROCGEN_GAMES`
    :param n_envs: number of envs
    :param seed: procgen's `rand_seed` (None: procgen picks one); later resets derive theirs
        from it and a reset counter, so runs are reproducible
    :param options: procgen options (num_levels, start_level, distribution_mode, ...) and levels
    """

    def __init__(self, game: str, n_envs: int = 1, seed: int | None = 0, **options: Any) -> None:
        _check_seed(seed)
        self.game = game
        self._kwargs, self._levels = procgen_options(game, n_envs, dict(options))
        if self._levels is not None:  # one thread per single-env block overlaps their steps
            self._kwargs.setdefault("num_threads", 1)
        self.render_mode = "rgb_array"  # render() tiles the observations
        self.num_envs = n_envs  # VecEnv.__init__ calls get_attr before setting it
        super().__init__(
            n_envs, spaces.Box(0, 255, OBS_SHAPE, np.uint8), spaces.Discrete(N_ACTIONS)
        )
        self._seed = seed
        self._resets = 0  # recreations since the seed was set
        self._reseed = False  # seed() was called: the next reset() recreates the envs
        self._stepped = False  # anything stepped or restored since the envs were created
        self._actions = np.zeros(n_envs, np.int32)
        self._ep_return = np.zeros(n_envs, np.float64)
        self._ep_length = np.zeros(n_envs, np.int64)
        self._t_start = time.time()
        self._blocks: list[ProcgenGym3Env] = []
        self._slices: list[slice] = []
        self._create_blocks()

    # ---- gym3 blocks -------------------------------------------------------------------------
    def _rand_seed(self) -> int | None:
        return None if self._seed is None else derive_seed(self._seed, self._resets)

    def _make_block(self, num: int, rand_seed: int | None, **level_kwargs: Any) -> ProcgenGym3Env:
        kwargs = {**self._kwargs, **level_kwargs}
        # gym3 closes an unclosed env in __del__ through its cffi library, whose first access
        # of a function takes cffi's lock; a garbage collection while another env holds that
        # lock (in FFI.dlopen, or a function's first access) deadlocks the process. So no
        # collection runs while a block is made, and every function the block will call is
        # looked up now, while none can run: its __del__ then never needs the lock.
        enabled = gc.isenabled()
        gc.disable()
        try:
            block = ProcgenGym3Env(num=num, env_name=self.game, rand_seed=rand_seed, **kwargs)
            library = getattr(block, "_c_lib", None)
            for name in _LIBRARY_FUNCTIONS:
                getattr(library, name, None)
            return block
        finally:
            if enabled:
                gc.enable()

    def _create_blocks(self) -> None:
        self._close_blocks()
        rand_seed = self._rand_seed()
        if self._levels is None:
            self._blocks = [self._make_block(self.num_envs, rand_seed)]
            self._slices = [slice(0, self.num_envs)]
        else:
            self._blocks = [
                self._make_block(1, rand_seed, num_levels=1, start_level=level)
                for level in self._levels
            ]
            self._slices = [slice(i, i + 1) for i in range(self.num_envs)]
        self._obs = self._observe()
        self._ep_return[:] = 0
        self._ep_length[:] = 0

    def _close_blocks(self) -> None:
        for block in self._blocks:
            block.close()
        self._blocks = []

    def _observe(self) -> np.ndarray:
        return np.concatenate([block.observe()[1]["rgb"] for block in self._blocks])

    # ---- VecEnv ------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Observations uint8 (n, 64, 64, 3) of new episodes (the current ones if none stepped)."""
        if self._stepped or self._reseed:
            if not self._reseed:
                self._resets += 1
            self._create_blocks()
        self._stepped = self._reseed = False
        self.reset_infos = [{"level_seed": int(s)} for s in self.current_level_seeds()]
        return self._obs.copy()

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Set the `rand_seed` the next `reset()` recreates the envs with (SB3 semantics)."""
        _check_seed(seed)
        self._seed, self._resets, self._reseed = seed, 0, True
        return [self._rand_seed()] * self.num_envs  # one procgen rand_seed drives all envs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int32)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        for block, part in zip(self._blocks, self._slices, strict=True):
            block.act(self._actions[part])  # procgen steps in its own threads until observe()
        observed = [block.observe() for block in self._blocks]
        raw_infos = [info for block in self._blocks for info in block.get_info()]
        obs = np.concatenate([ob["rgb"] for _, ob, _ in observed])
        reward = np.concatenate([r for r, _, _ in observed]).astype(np.float32)
        done = np.concatenate([first for _, _, first in observed]).astype(bool)
        self._ep_return += reward
        self._ep_length += 1
        infos = []
        for i, raw in enumerate(raw_infos):
            if not done[i]:
                infos.append({"level_seed": int(raw["level_seed"])})
                continue
            infos.append(
                {
                    "level_seed": int(raw["prev_level_seed"]),
                    "level_complete": bool(raw["prev_level_complete"]),
                    "terminal_observation": self._obs[i].copy(),
                    "episode": {
                        "r": float(self._ep_return[i]),
                        "l": int(self._ep_length[i]),
                        "t": round(time.time() - self._t_start, 6),
                    },
                }
            )
            self._ep_return[i] = 0.0
            self._ep_length[i] = 0
        self._obs = obs
        self._stepped = True
        return obs.copy(), reward, done, infos  # a copy: callers may write into it

    def close(self) -> None:
        self._close_blocks()

    def get_images(self) -> list[np.ndarray]:
        """The current observations, uint8 (64, 64, 3) each."""
        return list(self._obs)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attributes are shared by all envs: `[getattr(self, attr_name)] * len(indices)`."""
        return [getattr(self, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Sets the attribute on this VecEnv (shared by all envs)."""
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Per-env methods: `get_state()` -> bytes, `set_state(state)`, `level_seed()` -> int."""
        idx = list(self._get_indices(indices))
        if method_name == "get_state":
            return self.get_states(idx)
        if method_name == "set_state":
            self.set_states([method_args[0]] * len(idx), idx)
            return [None] * len(idx)
        if method_name == "level_seed":
            return [int(self.current_level_seeds()[i]) for i in idx]
        raise AttributeError(
            f"ProcgenVecEnv has no per-env method {method_name!r}; "
            "valid methods: get_state, set_state, level_seed"
        )

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """True for SB3's Monitor: infos carry Monitor's `episode` (evaluate_policy reads it)."""
        return [wrapper_class is Monitor] * len(list(self._get_indices(indices)))

    # ---- procgen extras ----------------------------------------------------------------------
    def current_level_seeds(self) -> np.ndarray:
        """Seed of the level each env is playing now, int64 (n,)."""
        seeds = [info["level_seed"] for block in self._blocks for info in block.get_info()]
        return np.asarray(seeds, dtype=np.int64)

    def observations(self) -> np.ndarray:
        """The current observations, uint8 (n, 64, 64, 3), without stepping."""
        return self._obs.copy()

    def get_states(self, indices: VecEnvIndices = None) -> list[bytes]:
        """Procgen's serialized game state of each env (level, positions, RNG, step count)."""
        if self._levels is None:
            states = self._blocks[0].callmethod("get_state")
            return [states[i] for i in self._get_indices(indices)]
        return [self._blocks[i].callmethod("get_state")[0] for i in self._get_indices(indices)]

    def set_states(self, states: Sequence[bytes], indices: VecEnvIndices = None) -> None:
        """Restore `get_states` bytes; the next `step` continues from them.

        Episode return and length in the next `episode` info count from the restore point.
        """
        idx = list(self._get_indices(indices))
        if len(states) != len(idx):
            raise ValueError(f"got {len(states)} states for {len(idx)} envs")
        if self._levels is None:
            block_states = self._blocks[0].callmethod("get_state")
            for i, state in zip(idx, states, strict=True):
                block_states[i] = bytes(state)
            self._blocks[0].callmethod("set_state", block_states)
        else:
            for i, state in zip(idx, states, strict=True):
                self._blocks[i].callmethod("set_state", [bytes(state)])
        self._obs = self._observe()
        self._ep_return[idx] = 0.0
        self._ep_length[idx] = 0
        self._stepped = True

    def save_state(self) -> dict[str, np.ndarray]:
        """Everything the next `step` depends on, as plain arrays (for exact training resume):
        each env's game state bytes (level, positions, RNGs), episode return/length so far, and
        the reset counter. `load_state` restores it into a VecEnv made with the same options."""
        states = self.get_states()
        return {
            "game_states": np.frombuffer(b"".join(states), np.uint8).copy(),
            "game_state_sizes": np.asarray([len(s) for s in states], np.int64),
            "episode_return": self._ep_return.copy(),
            "episode_length": self._ep_length.copy(),
            "resets": np.asarray(self._resets, np.int64),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore `save_state`'s arrays; raises ValueError if they do not fit these envs."""
        sizes = np.asarray(state["game_state_sizes"], np.int64)
        if len(sizes) != self.num_envs:
            raise ValueError(f"saved state has {len(sizes)} envs, this VecEnv {self.num_envs}")
        blob = np.asarray(state["game_states"], np.uint8).tobytes()
        if int(sizes.sum()) != len(blob):
            raise ValueError("saved game states are truncated")
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.set_states([blob[a:b] for a, b in itertools.pairwise(offsets)])
        self._ep_return[:] = state["episode_return"]
        self._ep_length[:] = state["episode_length"]
        self._resets = int(state["resets"])
        self._reseed = False

    @property
    def levels(self) -> list[int] | None:
        """The level seed of each env in `levels=` mode, else None."""
        return None if self._levels is None else list(self._levels)

    def replace_level(self, index: int, seed: int) -> np.ndarray:
        """Recreate env `index` on level `seed` (`levels=` mode only); return its first obs.

        The episode it was playing is dropped without an `episode` info.
        """
        if self._levels is None:
            raise ValueError("replace_level needs a ProcgenVecEnv made with levels=[...]")
        if not _is_seed(seed):
            raise ValueError(f"level seed must be an integer in [0, {SEED_LIMIT}), got {seed!r}")
        if not 0 <= index < self.num_envs:
            raise IndexError(f"env index {index} out of range for {self.num_envs} envs")
        self._blocks[index].close()
        self._blocks[index] = self._make_block(
            1, self._rand_seed(), num_levels=1, start_level=int(seed)
        )
        self._levels[index] = int(seed)
        self._obs[index] = self._blocks[index].observe()[1]["rgb"][0]
        self._ep_return[index] = 0.0
        self._ep_length[index] = 0
        return self._obs[index].copy()


class ProcgenEnv(gymnasium.Env):
    """One Procgen game as a gymnasium Env: obs uint8 (64, 64, 3), `Discrete(15)` actions.

    Infos are those of `ProcgenVecEnv`. Procgen starts the next level inside the final step, so
    on `terminated` the returned obs is the last rendered frame of the ended episode (the one the
    final action was taken on, also `info["terminal_observation"]`), and the following `reset()`
    returns the next level's first frame without recreating anything. `truncated` is always
    False: procgen does not report its time limit apart from other episode ends.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012 (gymnasium's)

    def __init__(self, game: str, seed: int | None = None, **options: Any) -> None:
        self._vec = ProcgenVecEnv(game, 1, seed, **options)
        self.observation_space = self._vec.observation_space
        self.action_space = self._vec.action_space
        self.render_mode = "rgb_array"
        self._at_start = True  # just created or auto-reset by procgen

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        """Obs uint8 (64, 64, 3) and {"level_seed"}; a seed recreates the game with that seed."""
        super().reset(seed=seed)
        if seed is not None:
            self._vec.seed(seed)
        obs = (
            self._vec.reset()
            if (seed is not None or not self._at_start)
            else self._vec.observations()
        )
        self._at_start = True
        return obs[0].copy(), {"level_seed": int(self._vec.current_level_seeds()[0])}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, done, infos = self._vec.step(np.array([action]))
        info = infos[0]
        self._at_start = bool(done[0])
        frame = info["terminal_observation"] if done[0] else obs[0].copy()
        return frame, float(reward[0]), bool(done[0]), False, info

    def render(self) -> np.ndarray:
        """The current observation, uint8 (64, 64, 3)."""
        return self._vec.observations()[0].copy()

    def get_state(self) -> bytes:
        """Procgen's serialized game state."""
        return self._vec.get_states()[0]

    def set_state(self, state: bytes) -> None:
        """Restore `get_state` bytes; the next `step` continues from there."""
        self._vec.set_states([state])
        self._at_start = False

    def close(self) -> None:
        self._vec.close()
