"""Env ids (`family:name`), CLI `key=value` options, and the one-line `EnvSpecError`.

Ids: `procgen:<game>`, `atari:<Game>` (ALE v5), `box2d:<id>`, or any registered gymnasium id.
Nothing here imports procgen or SB3, so validating an id is cheap.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable

PROCGEN_GAMES: tuple[str, ...] = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)
FAMILIES: tuple[str, ...] = ("procgen", "atari", "box2d", "gym")
EXPECTED_IDS = "expected procgen:<game>, atari:<Game>, box2d:<id>, or a registered gymnasium id"


class EnvSpecError(ValueError):
    """Unknown env id, game or option, or a bad option value. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # one line, whatever went in


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`" (did you mean 'x'?)"` for the closest choice (case-insensitive), or `""`."""
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[match[0]]!r}?)" if match else ""


def unknown(kind: str, word: str, choices: Iterable[str]) -> EnvSpecError:
    """`unknown procgen game 'word' (did you mean ...?); valid games: a, b, c`."""
    choices, noun = list(choices), kind.split()[-1]
    hint = did_you_mean(word, choices)
    return EnvSpecError(f"unknown {kind} {word!r}{hint}; valid {noun}s: {', '.join(choices)}")


def check_option_names(env_id: str, options: dict, valid: Iterable[str]) -> None:
    """Raise EnvSpecError naming the first option of `options` not in `valid`."""
    valid = sorted(valid)
    for key in options:
        if key not in valid:
            raise EnvSpecError(
                f"unknown option {key!r} for {env_id}{did_you_mean(key, valid)}; "
                f"valid options: {', '.join(valid) or '(none)'}"
            )


def bad_value(env_id: str, key: str, value: object, expected: str) -> EnvSpecError:
    """`bad value <v> for option <key> of <env_id>; expected <expected>`."""
    return EnvSpecError(f"bad value {value!r} for option {key!r} of {env_id}; expected {expected}")


@functools.cache
def gym_registry() -> dict:
    """Gymnasium's registry (live), with ale-py's `ALE/*` ids registered."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no ALE banner per env
    return gymnasium.registry


def atari_games() -> list[str]:
    """Game names with a registered `ALE/<Game>-v5` id, e.g. `Pong`, `Breakout`."""
    names = (key[4:-3] for key in gym_registry() if key.startswith("ALE/") and key.endswith("-v5"))
    return sorted(names)


def box2d_ids() -> list[str]:
    """Registered gymnasium ids whose entry point is in `gymnasium.envs.box2d`."""
    return sorted(
        key
        for key, spec in gym_registry().items()
        if isinstance(spec.entry_point, str) and spec.entry_point.startswith("gymnasium.envs.box2d")
    )


def parse_env_id(env_id: str) -> tuple[str, str]:
    """Split and validate an env id: `"procgen:coinrun"` -> `("procgen", "coinrun")`.

    Families: procgen, atari (name is the ALE game, e.g. "Pong"), box2d (a gymnasium box2d id),
    gym (any other registered gymnasium id, returned whole, e.g. ("gym", "CartPole-v1")).
    """
    if not isinstance(env_id, str) or not env_id.strip():
        raise EnvSpecError(f"empty env id {env_id!r}; {EXPECTED_IDS}")
    family, sep, name = env_id.partition(":")
    if sep and family == "procgen":
        if name not in PROCGEN_GAMES:
            raise unknown("procgen game", name, PROCGEN_GAMES)
    elif sep and family == "atari":
        if name not in atari_games():
            raise unknown("atari game", name, atari_games())
    elif sep and family == "box2d":
        if name not in box2d_ids():
            raise unknown("box2d id", name, box2d_ids())
    elif sep and family == "gym":
        if name not in gym_registry():
            raise EnvSpecError(f"unknown gymnasium id {name!r}{did_you_mean(name, gym_registry())}")
    elif env_id in gym_registry():
        return "gym", env_id
    else:
        raise EnvSpecError(f"unknown env id {env_id!r}{_suggest_id(env_id)}; {EXPECTED_IDS}")
    return family, name


def _suggest_id(env_id: str) -> str:
    """A close full id for an unknown one: bare game names, family typos, gymnasium typos."""
    candidates = [f"procgen:{g}" for g in PROCGEN_GAMES]
    candidates += [f"atari:{g}" for g in atari_games()]
    candidates += [f"box2d:{i}" for i in box2d_ids()]
    for candidate in candidates:  # a bare game name: "coinrun" -> "procgen:coinrun"
        if candidate.partition(":")[2].lower() == env_id.lower():
            return f" (did you mean {candidate!r}?)"
    return did_you_mean(env_id, candidates + list(gym_registry()))


def _parse_value(text: str) -> int | float | bool | str | None:
    """`"3"` -> 3, `"0.5"` -> 0.5, `"True"` -> True, `"none"` -> None, anything else -> str."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: list[str]) -> dict:
    """Turn CLI `key=value` strings into a dict with int/float/bool/None/str values.

    `["num_levels=200", "distribution_mode=easy", "paint_vel_info=true"]`
    -> `{"num_levels": 200, "distribution_mode": "easy", "paint_vel_info": True}`.
    """
    options: dict = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise EnvSpecError(
                f"malformed option {pair!r}; expected key=value, e.g. num_levels=200"
            )
        if key in options:
            raise EnvSpecError(f"option {key!r} given twice")
        options[key] = _parse_value(value)
    return options
