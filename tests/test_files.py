"""Atomic writes leave files readable like any other file of the folder."""

import os
import stat

from icp_lib._card import write_text_atomic


def test_atomically_written_file_has_ordinary_permissions(tmp_path):
    path = write_text_atomic(tmp_path / "model.json", "{}")
    plain = tmp_path / "plain.txt"
    plain.write_text("{}")
    # expected: the mode open() gives a new file under the same umask
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(plain.stat().st_mode)
