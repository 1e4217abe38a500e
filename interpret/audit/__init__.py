"""Failure audits (Hilton et al., 2020, "Model editing"): play N CoinRun levels, label every
failure by its cause, compare two policies on the same levels.

``engine`` `run_audit` and `AuditResult`; ``causes`` what ended an episode; ``playing`` the
options and levels `audit` and `compare` share; ``failure_attribution`` the attribution of
failed episodes; ``comparison`` two audits side by side; ``report`` the page (pure);
``command`` / ``compare_command`` the verbs.
"""

from interpret.audit.engine import AuditResult, run_audit

__all__ = ["AuditResult", "run_audit"]
