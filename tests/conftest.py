"""Shared test helpers."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The same folder the kit reads by default, or the one ICP_DATA_DIR names.
SHARED_DATA = Path(
    os.environ.get("ICP_DATA_DIR") or REPO / ".." / "shared" / "data"
).resolve()


@pytest.fixture
def shared_data() -> Path:
    """The folder of real data sets; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA}")
    return SHARED_DATA
