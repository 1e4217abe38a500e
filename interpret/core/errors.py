"""Errors that the ``python -m interpret`` CLI reports in one line with exit status 2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class InterpretError(ValueError):
    """Bad input to an interpreter: a wrong option value, shape, layer or file."""


def check_counts(args: Any, positive: Sequence[str], non_negative: Sequence[str] = ()) -> None:
    """`InterpretError` naming the flag of the first of `args`' options in `positive` under 1,
    or in `non_negative` under 0 (an option left at None is not checked)."""
    for name in (*positive, *non_negative):
        value, least = getattr(args, name), int(name in positive)
        if value is not None and value < least:
            rule = "positive" if least else ">= 0"
            raise InterpretError(f"--{name.replace('_', '-')} must be {rule}")


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception type that means "the user's input is wrong" (not a bug)."""
    from agents.executor import ExecutorError
    from agents.fileio import InputFileError
    from agents.inspectable import UnknownLayerError
    from agents.outputs import OutputError
    from agents.sb3_zip import ModelFileError
    from envs import EnvSpecError
    from world_model.model import WeightsFileError

    return (
        InterpretError,
        UnknownLayerError,
        ModelFileError,
        EnvSpecError,
        InputFileError,
        OutputError,
        ExecutorError,
        WeightsFileError,
    )
