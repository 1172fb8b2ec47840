"""Checks of the committed notebooks themselves."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_styled_table_escapes_values_from_the_data(path):
    # A pandas Styler writes cell text as raw HTML unless told to escape it;
    # each format call covers every column, so each one must escape.
    for cell in _code_cells(path):
        for call in re.findall(r"\.style\.format\([^\n]*", cell):
            assert 'escape="html"' in call, cell
        assert not re.search(r"\.style\.hide\(", cell), cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    assert "parameters" in nb["cells"][0]["metadata"].get("tags", [])
