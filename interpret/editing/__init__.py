"""Model editing (Hilton et al., 2020, Appendix A): project NMF directions out of the kernels
that read a layer, so the policy is blind to a feature. ``projection`` the method,
``command`` the verb (`python -m interpret edit`)."""

from interpret.editing.projection import next_kernels, project_out

__all__ = ["next_kernels", "project_out"]
