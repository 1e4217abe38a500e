"""Object occlusion: how much a CoinRun policy's action distribution and value change when the
game draws its frames without one class of object. ``measure`` the method, ``command`` the
verb (`python -m interpret occlude`)."""

from interpret.occlusion.measure import OCCLUDABLE, ClassOcclusion, occlusion_sensitivity

__all__ = ["OCCLUDABLE", "ClassOcclusion", "occlusion_sensitivity"]
