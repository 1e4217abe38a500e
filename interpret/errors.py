"""Errors that the ``python -m interpret`` CLI reports in one line with exit status 2."""

from __future__ import annotations


class InterpretError(ValueError):
    """Bad input to an interpreter: a wrong option value, shape, layer or file."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception type that means "the user's input is wrong" (not a bug)."""
    from agents.inspectable import UnknownLayerError
    from agents.sb3_zip import ModelFileError
    from envs import EnvSpecError

    return (InterpretError, UnknownLayerError, ModelFileError, EnvSpecError)
