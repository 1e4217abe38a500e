"""Silence the unmaintained-gym banner that `import procgen` (and SB3) trigger via old `gym`."""

try:  # gym prints notices from gym_notices at import time; empty them before gym is imported
    import gym_notices.notices as _notices

    _notices.notices.clear()
except ImportError:  # gym not installed: nothing to silence
    pass
