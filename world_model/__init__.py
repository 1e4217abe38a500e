"""World Models (Ha & Schmidhuber 2018): V (VAE), M (MDN-RNN), C (linear, CMA-ES), dream env."""

from envs import _quiet  # noqa: F401  (first: silences old gym's banner in worker processes)
