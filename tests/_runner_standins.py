"""Stand-in notebooks and a stand-in data layer for testing the runner.

The stand-ins follow the notebook contract (a tagged parameters cell with
the five runner parameters, outputs written into ``output_dir``) but do no
analysis, so runner tests stay fast and independent of the real steps.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import nbformat

import icp_lib
from icp_lib.data import parse_quarter
from icp_lib.errors import DataError

PARAMETERS = """\
config_path: str = "params/demo.yaml"  # client config
segment: str = "all"  # segment name
quarter: str = ""  # review quarter
output_dir: str = "reports/scratch/all"  # outputs of this segment
table_dir: str = ""  # cached modeling table
"""

SETUP = """\
import json, sys, warnings
from pathlib import Path
out = Path(output_dir)
"""

BODIES = {
    "01_data_audit": """\
if segment.startswith("broken"):
    from icp_lib.errors import DataError
    raise DataError("column <b>Industry</b> & co not found in accounts.csv")
print("stderr noise for analysts", file=sys.stderr)
warnings.warn("a warning for analysts")
target = {"target": "won", "counts": {"won": 1234, "closed": 5000}}
(out / "audit.json").write_text(json.dumps({"target": target}))
left_by_audit = 1
""",
    "02_model_fit": """\
assert "left_by_audit" not in globals(), "the kernel kept the audit's names"
if segment == "crash":
    1 / 0
model = {"fields": [{"name": "industry", "label": "Industry <x>"}],
         "metrics": {"validation": {"auc": 0.71, "auc_low": 0.6, "auc_high": 0.8}},
         "verdict": {"usable": True}, "grades": {"cuts": {"A": 80, "B": 60, "C": 40}}}
(out / "model.json").write_text(json.dumps(model))
""",
    "03_grade_calibration": """\
(out / "scores.csv").write_text("record_id,score,grade\\n1,80,A\\n")
""",
    "04_quarterly_review": """\
review = {"verdict": {"decision": "keep", "headline": "Keep <the> model."},
          "headline": {"conversion_by_grade": {"A": 0.5, "B": 0.25}},
          "grade_ordering": {"verdict": "confirmed"},
          "drift_alerts": [{"label": "Region <r>", "status": "shifted"},
                           {"label": "Industry", "status": "stable"}],
          "feedback_alerts": []}
(out / "review.json").write_text(json.dumps(review))
print("review done")
""",
}


def write_notebooks(folder: Path) -> Path:
    """Write the four stand-in notebooks into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in BODIES.items():
        params = nbformat.v4.new_code_cell(PARAMETERS)
        params.metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "icp-kit",
            "display_name": "Python (ICP Kit)",
            "language": "python",
        }
        nb.cells = [
            params,
            nbformat.v4.new_code_cell(SETUP),
            nbformat.v4.new_markdown_cell(f"# {name}"),
            nbformat.v4.new_code_cell(body),
        ]
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


CONFIG = """\
client: "Test <Co>"
data_dir: {data_dir}
sources:
  opportunities: {{path: opportunities.csv}}
outcome: {{won: [Closed Won], lost: [Closed Lost]}}
fields:
  industry: {{kind: categorical}}
segments:
{segments}
"""


def write_config(path: Path, segments: list[str]) -> Path:
    """Write a small valid config naming ``segments``."""
    lines = "\n".join(f"  - {{name: {s}, label: 'Label of {s}'}}" for s in segments)
    path.write_text(CONFIG.format(data_dir=path.parent, segments=lines))
    return path


class FakeTable:
    """What the runner needs of a ModelingTable."""

    fingerprints = {"opportunities": "sha256:" + "0" * 64}
    has_dates = False


def _load_table(config):
    if config.client == "no data":
        raise DataError("opportunities.csv not found in /nowhere; check data_dir")
    return FakeTable()


def _save_table(table, folder):
    Path(folder).mkdir(parents=True)
    (Path(folder) / "table.json").write_text("{}")


def _select_segment(table, segment):
    if segment.name == "empty":
        raise DataError("segment 'empty' has no rows; its conditions match nothing")
    return table


def fake_data_module() -> types.ModuleType:
    """Return a stand-in for ``icp_lib.data``."""
    module = types.ModuleType("icp_lib.data")
    module.load_table = _load_table
    module.save_table = _save_table
    module.select_segment = _select_segment
    module.last_complete_quarter = lambda table: "2026Q3"
    module.parse_quarter = parse_quarter
    return module


def install_fake_data(mp) -> None:
    """Make the runner use the stand-in data layer, via a MonkeyPatch."""
    module = fake_data_module()
    mp.setitem(sys.modules, "icp_lib.data", module)
    mp.setattr(icp_lib, "data", module, raising=False)
