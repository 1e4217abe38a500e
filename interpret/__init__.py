"""Interpreters that attach to any policy ``agents.load`` returns; ``python -m interpret``."""
