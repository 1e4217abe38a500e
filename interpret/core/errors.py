"""Errors that the ``python -m interpret`` CLI reports in one line with exit status 2."""

from __future__ import annotations


class InterpretError(ValueError):
    """Bad input to an interpreter: a wrong option value, shape, layer or file."""


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
