"""Network dissection (Liu, "Understanding Vision-based Dynamics Models", 2021): unit
statistics, dead units, activation maps (``units``), interventions (``interventions``),
``command`` the verb (`python -m interpret dissect`)."""

from interpret.dissection.interventions import intervene, zeroing_effects
from interpret.dissection.units import dead_units, unit_statistics

__all__ = ["dead_units", "intervene", "unit_statistics", "zeroing_effects"]
