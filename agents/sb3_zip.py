"""Read and rewrite Stable-Baselines3 model zips without unpickling anything from the file.

Hand-written because SB3 offers no pickle-free loader: ``load_from_zip_file`` always runs
``cloudpickle.loads`` on every serialized entry of ``data``.

An SB3 zip holds ``data`` (JSON; entries that are not JSON-serializable are stored as
``{":type:": ..., ":serialized:": <base64 cloudpickle>, <readable fields>...}``), one
``<name>.pth`` per state dict (``policy``, ``policy.optimizer``, ...), ``pytorch_variables.pth``,
``_stable_baselines3_version`` and ``system_info.txt``. This module adds an optional
``rlinterp.json`` member for our own metadata; SB3 ignores it when loading.

Spaces are rebuilt from the serialized entry without executing it: the pickle opcode stream
is walked by a small symbolic interpreter (``_static_unpickle``) that never imports a module,
looks up a global or calls anything; numpy arrays and dtypes are recognised by their
reduce pattern and rebuilt with ``np.frombuffer``. If that fails, the readable fields next to
``:serialized:`` are used, but only when they pin the value down exactly.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import inspect
import io
import json
import math
import pickletools
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

DATA_MEMBER = "data"
POLICY_MEMBER = "policy.pth"
EXTRA_MEMBER = "rlinterp.json"
VARIABLES_MEMBER = "pytorch_variables.pth"
_NOT_STATE_DICTS = (VARIABLES_MEMBER, "tensors.pth")  # SB3: "tensors.pth" pre-0.9 name
_TEXT_MEMBERS = ("_stable_baselines3_version", "system_info.txt")
# Modules whose classes a re-saved zip may name (policy, buffer, activation, optimizer classes).
_CLASS_MODULES = ("stable_baselines3.", "sb3_contrib.", "agents.", "torch.nn.", "torch.optim.")
# Plain-value classes that a re-saved zip rebuilds from their pickled arguments and attributes
# (SB3's schedules and train frequency), so that plain SB3 keeps them.
_VALUE_CLASSES = {
    "stable_baselines3.common.utils": ("FloatSchedule", "ConstantSchedule", "LinearSchedule"),
    "stable_baselines3.common.type_aliases": ("TrainFreq", "TrainFrequencyUnit"),
}
_MAX_PICKLE_OPS = 2_000_000


class ModelFileError(ValueError):
    """A model zip that is missing, malformed or holds something this module cannot rebuild."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


# ---------------------------------------------------------------------------------------------
# Symbolic pickle reader: turns an opcode stream into plain values plus inert markers.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Global:
    """A global reference (``module.name``) named in a pickle; never imported."""

    module: str
    name: str


@dataclass(eq=False, repr=False)  # inert: identity, no recursive repr
class _Call:
    """A REDUCE/NEWOBJ in a pickle (``func(*args)``, then ``BUILD state``); never called."""

    func: Any
    args: Any
    state: Any = None


class _Unrecognized(Exception):
    """The pickled value does not match any pattern we know how to rebuild."""


# Opcodes whose decoded argument (int, float, str, bytes) is pushed as is.
_PUSH_ARG = frozenset(
    {
        *("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"),
        *("STRING", "BINSTRING", "SHORT_BINSTRING"),
        *("UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"),
        *("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"),
    }
)
_CONSTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def _static_unpickle(payload: bytes) -> Any:
    """Evaluate a pickle's opcodes symbolically: globals become ``_Global``, calls ``_Call``.

    Nothing is imported or executed; unknown opcodes (persistent ids, extension registry,
    out-of-band buffers, protocol-0 INST/OBJ) raise ``_Unrecognized``.
    """
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[Any, Any] = {}  # slot (an int: pickletools decodes it) -> value

    def pop_mark() -> list[Any]:
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    for count, (op, arg, _pos) in enumerate(pickletools.genops(payload)):
        if count > _MAX_PICKLE_OPS:
            raise _Unrecognized("pickle too long")
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return stack.pop()
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _CONSTS:
            stack.append(_CONSTS[name])
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            top = tuple(stack[-n:])
            del stack[-n:]
            stack.append(top)
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "APPEND":
            value = stack.pop()
            stack[-1].append(value)
        elif name == "APPENDS":
            items = pop_mark()
            stack[-1].extend(items)
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            stack[-1][key] = value
        elif name == "SETITEMS":
            items = pop_mark()
            stack[-1].update(zip(items[::2], items[1::2], strict=True))
        elif name == "EMPTY_SET":
            stack.append(set())
        elif name == "ADDITEMS":
            items = pop_mark()
            stack[-1].update(items)
        elif name == "FROZENSET":
            stack.append(frozenset(pop_mark()))
        elif name == "POP":
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "GLOBAL":
            module, _, qualname = str(arg).partition(" ")
            stack.append(_Global(module, qualname))
        elif name == "STACK_GLOBAL":
            qualname, module = stack.pop(), stack.pop()
            if not (isinstance(module, str) and isinstance(qualname, str)):
                raise _Unrecognized("STACK_GLOBAL on non-strings")
            stack.append(_Global(module, qualname))
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "NEWOBJ_EX":
            _kwargs, args = stack.pop(), stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "BUILD":
            state = stack.pop()
            if not isinstance(stack[-1], _Call):
                raise _Unrecognized("BUILD on a plain value")
            stack[-1].state = state
        else:
            raise _Unrecognized(f"unsupported pickle opcode {name}")
    raise _Unrecognized("pickle without STOP")


def _decode_serialized(entry: Any) -> Any:
    """Symbolic value of an entry's ``:serialized:`` payload; raises ``_Unrecognized``."""
    try:
        payload = base64.b64decode(str(entry[":serialized:"]), validate=True)
        return _static_unpickle(payload)
    except _Unrecognized:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise _Unrecognized(str(e)) from e


_NP_MODULES = ("numpy", "numpy.core", "numpy._core")
_DTYPE_CODE = re.compile(r"[biuf]\d{1,2}")


def _is_np_global(func: Any, names: tuple[str, ...]) -> bool:
    """True if ``func`` is a numpy global (``numpy[._]core.<sub>.<name>``) with a name in names."""
    return (
        isinstance(func, _Global)
        and func.name in names
        and (func.module in _NP_MODULES or func.module.rsplit(".", 1)[0] in _NP_MODULES)
    )


def _dtype_of(value: Any) -> np.dtype:
    """Rebuild a pickled numeric ``np.dtype`` (``numpy.dtype(code, ...)`` + BUILD byte order)."""
    if not (isinstance(value, _Call) and _is_np_global(value.func, ("dtype",))):
        raise _Unrecognized("not a dtype")
    code = value.args[0] if isinstance(value.args, tuple) and value.args else None
    if not (isinstance(code, str) and _DTYPE_CODE.fullmatch(code)):
        raise _Unrecognized(f"unsupported dtype code {code!r}")
    dtype = np.dtype(code)
    state = value.state
    if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">"):
        dtype = dtype.newbyteorder(state[1])
    return dtype


def _shape_of(value: Any) -> tuple[int, ...]:
    if not (isinstance(value, tuple | list) and all(type(d) is int and d >= 0 for d in value)):
        raise _Unrecognized(f"bad shape {value!r}")
    return tuple(value)


def _array_of(value: Any) -> np.ndarray:
    """Rebuild a pickled numeric ndarray (``_frombuffer`` or ``_reconstruct`` form)."""
    if not isinstance(value, _Call):
        raise _Unrecognized("not an array")
    if _is_np_global(value.func, ("_frombuffer",)):
        buf, dtype, shape, order = value.args
        raw, dtype, shape = buf, _dtype_of(dtype), _shape_of(shape)
        fortran = order == "F"
    elif _is_np_global(value.func, ("_reconstruct",)) and isinstance(value.state, tuple):
        _version, shape, dtype, fortran, raw = value.state
        dtype, shape = _dtype_of(dtype), _shape_of(shape)
    else:
        raise _Unrecognized("not an array")
    if not isinstance(raw, bytes | bytearray) or len(raw) != math.prod(shape) * dtype.itemsize:
        raise _Unrecognized("array buffer does not match its shape")
    flat = np.frombuffer(bytes(raw), dtype=dtype)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def _int_of(value: Any) -> int:
    """A python int or a pickled numpy integer scalar (``multiarray.scalar(dtype, bytes)``)."""
    if type(value) is int:
        return value
    if isinstance(value, _Call) and _is_np_global(value.func, ("scalar",)):
        dtype, raw = value.args
        dtype = _dtype_of(dtype)
        if dtype.kind in "iu" and isinstance(raw, bytes) and len(raw) == dtype.itemsize:
            return int(np.frombuffer(raw, dtype=dtype)[0])
    raise _Unrecognized(f"not an integer: {value!r}")


# ---------------------------------------------------------------------------------------------
# Spaces
# ---------------------------------------------------------------------------------------------

_SPACE_TYPES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
_TYPE_RE = re.compile(r"<class '([\w.]+)'>")
_NP_PRINT_PRECISION = 8  # numpy's default; a float printed with this many decimals may be cut


def _space_class_name(entry: Mapping[str, Any], key: str) -> str:
    match = _TYPE_RE.fullmatch(str(entry.get(":type:", "")))
    if not match:
        raise ModelFileError(f"{key}: unreadable space type {entry.get(':type:')!r}")
    module, _, name = match.group(1).rpartition(".")
    if not module.startswith(("gymnasium.spaces", "gym.spaces")) or name not in _SPACE_TYPES:
        raise ModelFileError(f"{key}: unsupported space type {match.group(1)}")
    return name


def _space_from_pickle(entry: Mapping[str, Any], name: str) -> gym.Space:
    """Exact rebuild from the symbolic pickle; raises ``_Unrecognized``."""
    value = _decode_serialized(entry)
    if not (
        isinstance(value, _Call)
        and isinstance(value.func, _Global)
        and value.func.name == name
        and isinstance(value.state, dict)
    ):
        raise _Unrecognized("not a pickled space of the announced type")
    state = value.state
    if name == "Box":
        low, high = _array_of(state["low"]), _array_of(state["high"])
        dtype = _dtype_of(state["dtype"])
        return gym.spaces.Box(low, high, _shape_of(state["_shape"]), dtype)
    if name == "Discrete":
        dtype = _dtype_of(state["dtype"]) if "dtype" in state else np.dtype(np.int64)
        return _discrete(_int_of(state["n"]), _int_of(state.get("start", 0)), dtype)
    if name == "MultiDiscrete":
        nvec = _array_of(state["nvec"])
        start = _array_of(state["start"]) if "start" in state else None
        return gym.spaces.MultiDiscrete(nvec, dtype=_dtype_of(state["dtype"]), start=start)
    n = state["n"]
    n = _int_of(n) if not isinstance(n, tuple | list) else tuple(_int_of(i) for i in n)
    return gym.spaces.MultiBinary(n)


def _discrete(n: int, start: int, dtype: np.dtype) -> gym.spaces.Discrete:
    if "dtype" in inspect.signature(gym.spaces.Discrete.__init__).parameters:
        return gym.spaces.Discrete(n, start=start, dtype=dtype)
    return gym.spaces.Discrete(n, start=start)  # gymnasium < 1.1: always int64


def _exact_token(token: str, dtype: np.dtype) -> Any:
    """Parse one printed numpy element; raise ``_Unrecognized`` if the print may be rounded."""
    if dtype.kind == "b":
        if token not in ("True", "False"):
            raise _Unrecognized(token)
        return token == "True"
    if dtype.kind in "iu":
        return int(token)
    if token.lstrip("+-") in ("inf", "nan"):
        return float(token)
    match = re.fullmatch(r"[+-]?\d+\.?(\d*)(?:e[+-]?\d+)?", token)
    if not match:
        raise _Unrecognized(token)
    if len(match.group(1)) >= _NP_PRINT_PRECISION:
        raise _Unrecognized(f"{token} may be rounded")
    return float(token)


def _parse_printed_array(text: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Exact array from a numpy ``str(arr)`` (or a scalar repr, broadcast to ``shape``)."""
    if not isinstance(text, str) or "..." in text:
        raise _Unrecognized("abbreviated or missing")
    tokens = text.replace("[", " ").replace("]", " ").split()
    values = [_exact_token(t, dtype) for t in tokens]
    if len(values) == 1:
        return np.full(shape, values[0], dtype=dtype)
    if len(values) != math.prod(shape):
        raise _Unrecognized("element count does not match shape")
    return np.array(values, dtype=dtype).reshape(shape)


def _bound_from_fields(entry: Mapping[str, Any], which: str, shape: tuple, dtype: np.dtype):
    short = entry.get(f"{which}_repr")
    constant = short if isinstance(short, str) and "[" not in short else None  # short repr
    for text in (entry.get(which), constant):  # the full print, or a constant bound's
        with contextlib.suppress(_Unrecognized, ValueError):
            return _parse_printed_array(text, shape, dtype)
    raise ModelFileError(
        f"Box {which} bound cannot be recovered exactly from the readable fields "
        f"(abbreviated or rounded numpy repr) and the pickle could not be read statically"
    )


def _space_from_fields(entry: Mapping[str, Any], name: str) -> gym.Space:
    """Rebuild from the readable fields SB3 stores next to ``:serialized:``."""
    dtype = np.dtype(str(entry["dtype"])) if entry.get("dtype") else np.dtype(np.int64)
    if dtype.kind not in "biuf":
        raise ModelFileError(f"unsupported space dtype {dtype}")
    if name == "Box":
        shape = tuple(int(d) for d in entry["_shape"])
        low = _bound_from_fields(entry, "low", shape, dtype)
        high = _bound_from_fields(entry, "high", shape, dtype)
        return gym.spaces.Box(low, high, shape, dtype)
    if name == "Discrete":
        return _discrete(int(entry["n"]), int(entry.get("start", 0)), dtype)
    if name == "MultiDiscrete":
        shape = tuple(int(d) for d in entry["_shape"])
        nvec = _parse_printed_array(entry["nvec"], shape, dtype)
        start = _parse_printed_array(entry["start"], shape, dtype) if "start" in entry else None
        return gym.spaces.MultiDiscrete(nvec, dtype=dtype, start=start)
    n = entry["n"]
    return gym.spaces.MultiBinary(tuple(int(i) for i in n) if isinstance(n, list) else int(n))


def _rebuild_space(entry: Any, key: str) -> gym.Space:
    """Rebuild ``data[key]`` (a serialized gymnasium space) without unpickling it."""
    if not (isinstance(entry, dict) and ":serialized:" in entry):
        raise ModelFileError(f"{key} is missing or not a serialized space")
    name = _space_class_name(entry, key)
    try:
        space = _space_from_pickle(entry, name)
    except (_Unrecognized, KeyError, TypeError, ValueError):
        try:
            space = _space_from_fields(entry, name)
        except ModelFileError as e2:
            raise ModelFileError(f"{key}: {e2}") from e2
        except (_Unrecognized, KeyError, TypeError, ValueError) as e2:
            raise ModelFileError(f"{key}: cannot rebuild {name} space exactly ({e2})") from e2
    readable_shape = entry.get("_shape")
    if isinstance(readable_shape, list) and tuple(readable_shape) != space.shape:
        raise ModelFileError(f"{key}: pickled shape {space.shape} != readable {readable_shape}")
    return space


# ---------------------------------------------------------------------------------------------
# Archive
# ---------------------------------------------------------------------------------------------


def _is_serialized(value: Any) -> bool:
    return isinstance(value, dict) and ":serialized:" in value


def _readable(value: Any) -> Any:
    """Plain JSON value, or the readable string form of a serialized entry."""
    if not _is_serialized(value):
        return value
    return str(value.get(":type:", "<serialized>"))


@dataclass
class SB3Archive:
    """Contents of an SB3 model zip, read without unpickling.

    ``data``: the JSON ``data`` member, serialized entries kept as raw dicts.
    ``state_dicts``: every ``<name>.pth`` but pytorch_variables, e.g. ``"policy"`` ->
    {param name: CPU tensor}; optimizer dicts keep torch's nested ``state``/``param_groups``.
    ``extra``: JSON of the optional ``rlinterp.json`` member ({} if absent).
    """

    path: Path
    data: dict[str, Any]
    state_dicts: dict[str, dict[str, Any]]
    extra: dict[str, Any]

    def observation_space(self) -> gym.Space:
        """Observation space as saved (after SB3's wrappers, e.g. (C, H, W) for images)."""
        return _rebuild_space(self.data.get("observation_space"), "observation_space")

    def action_space(self) -> gym.Space:
        """Action space as saved."""
        return _rebuild_space(self.data.get("action_space"), "action_space")

    def _policy_class_extra(self) -> tuple[str | None, str | None]:
        """(module, name) from extra["policy_class"]: "Name", "pkg.mod.Name" or "pkg.mod:Name"."""
        value = self.extra.get("policy_class")
        if not isinstance(value, str) or not value:
            return None, None
        sep = ":" if ":" in value else "."
        module, _, name = value.rpartition(sep)
        return module or None, name

    def _policy_class_global(self) -> _Global | None:
        try:  # _Unrecognized too when the entry is missing or not serialized
            value = _decode_serialized(self.data.get("policy_class"))
        except _Unrecognized:
            return None
        return value if isinstance(value, _Global) else None

    def policy_class_module(self) -> str:
        """Module of the policy class, e.g. ``stable_baselines3.common.policies``."""
        entry = self.data.get("policy_class")
        if isinstance(entry, dict) and isinstance(entry.get("__module__"), str):
            return entry["__module__"]
        module, _ = self._policy_class_extra()
        if module:
            return module
        ref = self._policy_class_global()
        if ref is not None:
            return ref.module
        raise ModelFileError(f"{self.path}: policy class module is not recorded")

    def policy_class_name(self) -> str | None:
        """Policy class name (e.g. ``ActorCriticPolicy``, ``CnnPolicy``), or None if unknown.

        Order: ``extra["policy_class"]``; the global named by the (statically read) pickle.
        """
        _, name = self._policy_class_extra()
        if name:
            return name
        ref = self._policy_class_global()
        return ref.name if ref is not None else None

    def policy_kwargs(self) -> dict[str, Any]:
        """``policy_kwargs`` with pickled values replaced by their readable string form."""
        value = self.data.get("policy_kwargs") or {}
        if not isinstance(value, dict):
            return {}
        return {k: _readable(v) for k, v in value.items() if not k.startswith(":")}

    def get(self, key: str, default: Any = None) -> Any:
        """Plain JSON value of ``data[key]``; ``default`` if absent or serialized (pickled)."""
        value = self.data.get(key, default)
        return default if _is_serialized(value) else value


def _open_zip(path: str | Path) -> tuple[Path, zipfile.ZipFile]:
    """Open an SB3 zip, checking it has ``data`` and ``policy.pth``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"not a zip file: {path} ({e})") from e
    names = set(archive.namelist())
    missing = [m for m in (DATA_MEMBER, POLICY_MEMBER) if m not in names]
    if missing:
        archive.close()
        raise ModelFileError(f"{path} is not an SB3 model zip: missing {', '.join(missing)}")
    return path, archive


def _read_member(archive: zipfile.ZipFile, member: str | zipfile.ZipInfo, path: Path) -> bytes:
    """A member's bytes; `ModelFileError` for a truncated or corrupt one (bad CRC, a broken
    deflate stream)."""
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        name = member.filename if isinstance(member, zipfile.ZipInfo) else member
        raise ModelFileError(f"{path}: member {name!r} is corrupt ({type(e).__name__}: {e})") from e


def _read_json(archive: zipfile.ZipFile, member: str, path: Path) -> dict[str, Any]:
    raw = _read_member(archive, member, path)
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFileError(f"{path}: corrupt JSON in member {member!r} ({e})") from e
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: member {member!r} is not a JSON object")
    return value


def _state_dict_members(archive: zipfile.ZipFile) -> list[str]:
    return [n for n in archive.namelist() if n.endswith(".pth") and n not in _NOT_STATE_DICTS]


def _load_pth(archive: zipfile.ZipFile, member: str, path: Path) -> dict[str, Any]:
    raw = _read_member(archive, member, path)
    try:
        value = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises many types for bad/unsafe content
        raise ModelFileError(f"{path}: cannot load {member} ({type(e).__name__}: {e})") from e
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: {member} is not a state dict")
    return value


def read_sb3_zip(path: str | Path) -> SB3Archive:
    """Read an SB3 model zip; nothing from the file is unpickled."""
    path, archive = _open_zip(path)
    with archive:
        data = _read_json(archive, DATA_MEMBER, path)
        state_dicts = {
            member[: -len(".pth")]: _load_pth(archive, member, path)
            for member in _state_dict_members(archive)
        }
        names = archive.namelist()
        for member in sorted(set(_TEXT_MEMBERS) & set(names)):
            _read_member(archive, member, path)  # damaged: refused here, not by SB3's loader
        extra = _read_json(archive, EXTRA_MEMBER, path) if EXTRA_MEMBER in names else {}
        return SB3Archive(path, data, state_dicts, extra)


def _check_state_dict(name: str, new: Any, old: dict[str, Any]) -> dict[str, Any]:
    """Validate a replacement state dict against the original; returns what will be saved."""
    if not isinstance(new, Mapping):
        raise ModelFileError(f"state dict {name!r} must be a dict, got {type(new).__name__}")
    if name.endswith("optimizer"):  # torch optimizer layout, nested non-tensor values
        if not {"state", "param_groups"} <= set(new):
            raise ModelFileError(f"optimizer state dict {name!r} lacks state/param_groups")
        return dict(new)
    if set(new) != set(old):
        diff = sorted(set(new) ^ set(old))[:5]
        raise ModelFileError(f"state dict {name!r} keys differ from the original: {diff}")
    out = {}
    for key, value in new.items():
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(f"state dict {name!r} entry {key!r} is not a tensor")
        if isinstance(old[key], torch.Tensor) and value.shape != old[key].shape:
            raise ModelFileError(
                f"state dict {name!r} entry {key!r} has shape {tuple(value.shape)}, "
                f"original {tuple(old[key].shape)}"
            )
        out[key] = value.detach().cpu()
    return out


def write_sb3_zip(
    src: str | Path,
    dst: str | Path,
    state_dicts: dict[str, dict[str, torch.Tensor]] | None = None,
    extra: dict[str, Any] | None = None,
    *,
    sanitize: bool = False,
) -> None:
    """Copy ``src`` to ``dst``, replacing ``<name>.pth`` for each name in ``state_dicts``
    (``torch.save`` as SB3 does) and (re)writing ``rlinterp.json`` if ``extra`` is given.

    With ``sanitize`` (a re-save of a file from elsewhere: nothing pickled passes through), the
    copy holds only what this module reads safely, rewritten rather than copied: ``data``'s JSON
    with its spaces and classes (from SB3, sb3_contrib or ``agents``) pickled anew from the
    values read statically, every ``.pth`` re-saved from its weights-only load, the version and
    system-info texts and the record ``extra``. Everything else (other pickled ``data`` entries
    such as schedules, a ``pytorch_variables.pth`` that is not weights-only loadable, unknown
    members) is dropped, with a note for each in the record's ``"not_copied"``.

    Atomic (`agents.fileio.atomic_path`: a temp file beside ``dst``, then ``os.replace``d): on
    any error ``dst`` is untouched and the temp file removed. ``dst`` may equal ``src``. The
    new file gets the user's umask.
    """
    from agents.fileio import atomic_path

    state_dicts = state_dicts or {}
    src_path, archive = _open_zip(src)
    with archive:
        members = set(_state_dict_members(archive))
        payloads: dict[str, bytes] = {}
        for name, new in state_dicts.items():
            member = f"{name}.pth"
            if member not in members:
                raise ModelFileError(f"{src_path} has no state dict {name!r} to replace")
            checked = _check_state_dict(name, new, _load_pth(archive, member, src_path))
            payloads[member] = _safe_pth_bytes(checked, name)
        notes: list[str] = []
        if sanitize:
            payloads.update(_sanitized_members(archive, src_path, payloads, notes))
            extra = {**(extra or {}), "not_copied": notes}
        extra_bytes = None
        if extra is not None:
            try:
                extra_bytes = json.dumps(extra, indent=2, sort_keys=True).encode("utf-8")
            except (TypeError, ValueError) as e:
                raise ModelFileError(f"extra is not JSON-serializable ({e})") from e

        with atomic_path(dst) as tmp, zipfile.ZipFile(tmp, "w") as out:
            for info in archive.infolist():
                if info.filename == EXTRA_MEMBER and extra_bytes is not None:
                    continue
                if info.filename in payloads:
                    new_info = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    new_info.compress_type = info.compress_type
                    with out.open(new_info, "w", force_zip64=True) as member_file:
                        member_file.write(payloads[info.filename])
                elif not sanitize:
                    out.writestr(info, _read_member(archive, info, src_path))
            if extra_bytes is not None:
                out.writestr(EXTRA_MEMBER, extra_bytes)


def _safe_pth_bytes(state: dict[str, Any], name: str) -> bytes:
    """``torch.save`` bytes of a state dict, checked to load with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:  # what we write must be readable by the safe loader
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True, map_location="cpu")
    except Exception as e:
        raise ModelFileError(f"state dict {name!r} is not weights-only loadable") from e
    return buffer.getvalue()


def _sanitized_members(
    archive: zipfile.ZipFile, path: Path, done: dict[str, bytes], notes: list[str]
) -> dict[str, bytes]:
    """Rewritten bytes of every member a sanitized copy keeps (see `write_sb3_zip`); what it
    drops is appended to ``notes``."""
    kept: dict[str, bytes] = {}
    for name in archive.namelist():
        if name in done or name == EXTRA_MEMBER:
            continue
        if name == DATA_MEMBER:
            data = _read_json(archive, DATA_MEMBER, path)
            kept[name] = json.dumps(_sanitized_data(data, notes), indent=4).encode("utf-8")
        elif name.endswith(".pth"):
            try:
                state = _load_pth(archive, name, path)
                kept[name] = _safe_pth_bytes(state, name[: -len(".pth")])
            except ModelFileError:
                if name not in _NOT_STATE_DICTS:
                    raise  # a weights member that does not load: the model is broken
                notes.append(f"{name} (not weights-only loadable: pickled objects)")
        elif name in _TEXT_MEMBERS:
            text = _read_member(archive, name, path).decode("utf-8", "replace")
            kept[name] = text.encode("utf-8")
        else:
            notes.append(f"{name} (unknown member)")
    return kept


def _sanitized_data(data: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """``data`` with each pickled entry pickled anew from the value read statically (spaces,
    classes of `_CLASS_MODULES`) or dropped with a note."""
    from stable_baselines3.common.save_util import data_to_json

    values: dict[str, Any] = {}
    for key, entry in data.items():
        if not _is_serialized(entry):
            continue
        value = _static_value(key, entry)
        if value is None:
            notes.append(f"data[{key!r}] (pickled {_readable(entry)})")
        else:
            values[key] = value
    fresh = json.loads(data_to_json(values)) if values else {}
    return {
        key: fresh[key] if _is_serialized(entry) else entry
        for key, entry in data.items()
        if not _is_serialized(entry) or key in fresh
    }


def _static_value(key: str, entry: dict[str, Any]) -> Any:
    """A space, or plain values and allowed classes (e.g. ``policy_class``, a ``policy_kwargs``
    dict naming an activation class), rebuilt from a serialized entry without unpickling it;
    None when it holds anything else (a call: schedules, arbitrary objects)."""
    if key in ("observation_space", "action_space"):
        try:
            return _rebuild_space(entry, key)
        except ModelFileError:
            return None
    try:
        return _plain(_decode_serialized(entry))
    except (_Unrecognized, RecursionError):
        return None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        if not all(isinstance(k, str | int) for k in value):
            raise _Unrecognized("dict keys")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, _Global) and value.module.startswith(_CLASS_MODULES):
        try:
            found = getattr(importlib.import_module(value.module), value.name)
        except (ImportError, AttributeError):
            raise _Unrecognized(f"{value.module}.{value.name}") from None
        if inspect.isclass(found):
            return found
    func = value.func if isinstance(value, _Call) else None
    if isinstance(func, _Global) and func.name in _VALUE_CLASSES.get(func.module, ()):
        cls = _plain(func)
        args = _plain(value.args)
        if value.state is None:  # REDUCE: cls(*args), e.g. TrainFreq(4, unit)
            return cls(*args)
        state = _plain(value.state)
        if not isinstance(state, dict):
            raise _Unrecognized("state")
        rebuilt = cls.__new__(cls, *args)  # NEWOBJ + BUILD: attributes only
        rebuilt.__dict__.update(state)
        return rebuilt
    raise _Unrecognized(f"not a plain value: {type(value).__name__}")


def save_model(model: Any, path: str | Path, extra: dict[str, Any]) -> None:
    """A live SB3 model's zip (loads in plain SB3) with our record ``extra``, atomically."""
    from agents.fileio import atomic_path

    with atomic_path(path, ".zip") as tmp:
        model.save(tmp)
        write_sb3_zip(tmp, tmp, extra=extra)  # SB3's zip has no record of ours yet


__all__ = [
    "ModelFileError",
    "SB3Archive",
    "read_sb3_zip",
    "save_model",
    "write_sb3_zip",
]
