"""End to end: `icp quarterly` on the demo data set with the real notebooks."""

from pathlib import Path

import pytest

from icp_lib.cli import main
from icp_lib.demo import write_demo
from icp_lib.runner import NOTEBOOKS, RESULT_FILES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quarterly_on_demo_writes_every_report(tmp_path, capsys):
    write_demo(tmp_path / "data")
    config = (REPO / "params" / "demo.yaml").read_text(encoding="utf-8")
    assert "data_dir: data/demo" in config
    config = config.replace("data_dir: data/demo", f"data_dir: {tmp_path / 'data'}")
    (tmp_path / "demo.yaml").write_text(config, encoding="utf-8")

    code = main(
        [
            "quarterly",
            "--config",
            str(tmp_path / "demo.yaml"),
            "--reports",
            str(tmp_path / "reports"),
        ]
    )

    err = capsys.readouterr().err
    assert code == 0, err
    quarter = tmp_path / "reports" / "2026Q3"
    assert (quarter / "index.html").is_file()
    assert (quarter / "manifest.json").is_file()
    expected = [f"{n}{ext}" for n in NOTEBOOKS for ext in (".html", ".ipynb")]
    expected += RESULT_FILES
    for segment in ("b2b_new", "b2b_expansion", "b2c"):
        missing = [f for f in expected if not (quarter / segment / f).is_file()]
        assert missing == [], segment
    assert "[12/12]" in err

    # Every report shows charts (the kernel is reused between notebooks, which
    # must not detach the inline backend) and no kernel chatter.
    for name in NOTEBOOKS:
        html = (quarter / "b2b_new" / f"{name}.html").read_text(encoding="utf-8")
        assert "data:image/png;base64" in html, name
        assert "ERROR!" not in html and "Traceback" not in html, name
