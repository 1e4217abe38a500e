"""What every interpreter shares: `Trajectory` recording, report writing, errors, env lookup.

``trajectory``  `Trajectory` (one view's play, as arrays) and `record_trajectories`
``report``      report directories written atomically; page helpers; ``static/`` CSS and JS
``model_env``   the env a model was trained on, and whether a model fits an env
``errors``      `InterpretError` and the errors reported in one line
"""

from interpret.core.trajectory import Trajectory, record_trajectories

__all__ = ["Trajectory", "record_trajectories"]
