"""ICP Kit: find, score and review a company's Ideal Customer Profile.

The library holds all the logic of the four notebooks: the data audit
(:mod:`icp_lib.audit`), the model fit (:mod:`icp_lib.model`), grade
calibration (:mod:`icp_lib.grades`, :mod:`icp_lib.export`) and the quarterly
review (:mod:`icp_lib.review`). :mod:`icp_lib.runner` runs them per segment.

Names are imported on first use, so ``import icp_lib`` stays fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "config",
    "Config": "config",
    "IcpError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "ModelError": "errors",
    "FallbackWarning": "errors",
    "ModelingTable": "data",
    "load_table": "data",
    "read_table": "data",
    "save_table": "data",
    "select_segment": "data",
    "last_complete_quarter": "data",
    "write_demo": "demo",
    "audit_table": "audit",
    "read_audit": "audit",
    "fields_to_use": "audit",
    "ScoreCard": "model",
    "fit_model": "model",
    "score_records": "model",
    "score_file": "model",
    "cut_grades": "grades",
    "grade_table": "grades",
    "write_scores": "export",
    "to_sql": "export",
    "review_quarter": "review",
    "run_quarterly": "runner",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'icp_lib' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
