"""The quarterly runner, on stand-in notebooks and a stand-in data layer."""

import json

import pytest
from _runner_standins import install_fake_data, write_config, write_notebooks

from icp_lib.errors import ConfigError, DataError
from icp_lib.runner import (
    NOTEBOOKS,
    RESULT_FILES,
    find_notebooks,
    normalize_quarter,
    run_quarterly,
)

SEGMENTS = ["good", "broken", "crash", "empty"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One run over four segments: one completes, three fail in different ways."""
    root = tmp_path_factory.mktemp("run")
    notebooks = write_notebooks(root / "notebooks")
    config = write_config(root / "client.yaml", SEGMENTS)
    reports = root / "reports"
    (reports / "2026Q2").mkdir(parents=True)
    (reports / "2026Q2" / "keep.txt").write_text("earlier quarter")
    events = []
    with pytest.MonkeyPatch.context() as mp:
        install_fake_data(mp)
        run = run_quarterly(
            config,
            reports_dir=reports,
            notebooks_dir=notebooks,
            jobs=2,
            progress=events.append,
        )
    return run, events


def test_completed_segment_has_every_report_and_result_file(finished):
    run, _ = finished
    folder = run.report_dir / "good"
    expected = [f"{n}{ext}" for n in NOTEBOOKS for ext in (".html", ".ipynb")]
    missing = [f for f in [*expected, *RESULT_FILES] if not (folder / f).is_file()]
    assert missing == []
    assert run.report_dir.name == "2026Q3"
    assert (run.report_dir / "index.html").is_file()


def test_failed_segments_do_not_stop_the_others_and_are_named(finished):
    run, _ = finished
    assert run.failed == ("broken", "crash", "empty")
    status = {s.name: s.status for s in run.segments}
    assert status == {
        "good": "ok",
        "broken": "failed",
        "crash": "failed",
        "empty": "failed",
    }


def test_later_notebooks_of_a_failed_segment_are_skipped(finished):
    run, _ = finished
    crash = next(s for s in run.segments if s.name == "crash")
    assert [r.status for r in crash.notebooks] == ["ok", "failed", "skipped", "skipped"]
    assert "ZeroDivisionError" in crash.error
    assert "02_model_fit" in crash.error


def test_kit_error_is_shown_in_its_own_words(finished):
    run, _ = finished
    broken = next(s for s in run.segments if s.name == "broken")
    assert broken.error == "column <b>Industry</b> & co not found in accounts.csv"


def test_index_escapes_errors_and_values(finished):
    run, _ = finished
    page = (run.report_dir / "index.html").read_text()
    assert "column &lt;b&gt;Industry&lt;/b&gt; &amp; co not found" in page
    assert "<b>Industry" not in page
    assert "Test &lt;Co&gt;" in page
    assert "Industry &lt;x&gt;" in page
    assert "segment &#39;empty&#39; has no rows" in page
    assert 'href="good/01_data_audit.html"' in page


def test_index_shows_headline_numbers_of_a_completed_segment(finished):
    run, _ = finished
    page = (run.report_dir / "index.html").read_text()
    assert "closed-won deals (1,234 wins among 5,000 closed records)" in page
    assert "0.71 (95% interval 0.60 to 0.80)" in page
    assert "A &gt;= 80, B &gt;= 60, C &gt;= 40" in page
    assert "A 50%, B 25%" in page
    assert "confirmed" in page
    assert "Region &lt;r&gt; (shifted)" in page and "Industry (stable)" not in page
    assert "Feedback alerts:</b> none" in page or "Feedback alerts" in page
    assert "Keep &lt;the&gt; model." in page


def test_failed_notebook_html_shows_plain_error_and_no_traceback(finished):
    run, _ = finished
    page = (run.report_dir / "broken" / "01_data_audit.html").read_text()
    assert "This report is incomplete." in page
    assert "column &lt;b&gt;Industry&lt;/b&gt; &amp; co not found" in page
    assert "Traceback" not in page
    assert "An Exception was encountered" not in page


def test_report_html_hides_code_warnings_and_stderr(finished):
    run, _ = finished
    page = (run.report_dir / "good" / "01_data_audit.html").read_text()
    assert "stderr noise for analysts" not in page
    assert "a warning for analysts" not in page
    assert "json.dumps" not in page
    review = (run.report_dir / "good" / "04_quarterly_review.html").read_text()
    assert "review done" in review


def test_executed_notebook_keeps_stderr_for_analysts(finished):
    run, _ = finished
    text = (run.report_dir / "good" / "01_data_audit.ipynb").read_text()
    assert "stderr noise for analysts" in text


def test_manifest_records_config_fingerprints_versions_and_timings(finished):
    run, _ = finished
    manifest = json.loads((run.report_dir / "manifest.json").read_text())
    assert manifest["quarter"] == "2026Q3"
    assert manifest["config"]["client"] == "Test <Co>"
    assert manifest["data_fingerprints"]["opportunities"].startswith("sha256:")
    assert manifest["packages"]["papermill"]
    assert "git_commit" in manifest
    good = next(s for s in manifest["segments"] if s["name"] == "good")
    assert [n["notebook"] for n in good["notebooks"]] == list(NOTEBOOKS)
    assert all(n["seconds"] > 0 for n in good["notebooks"])
    assert 0 < manifest["timings"]["startup_share"] <= 1


def test_progress_reports_every_notebook_of_every_segment_run(finished):
    _, events = finished
    assert (
        events[0].to_text() == "quarter 2026Q3: 3 segment(s), 12 notebooks, 2 at a time"
    )
    events = events[1:]
    assert [e.done for e in events] == list(range(1, 13))
    assert events[-1].to_text().startswith("[12/12] ")


def test_run_leaves_other_quarters_and_no_staging_folder(finished):
    run, _ = finished
    reports = run.report_dir.parent
    assert (reports / "2026Q2" / "keep.txt").read_text() == "earlier quarter"
    assert sorted(p.name for p in reports.iterdir()) == ["2026Q2", "2026Q3"]
    assert not (run.report_dir / "_table").exists()


def test_error_before_any_notebook_keeps_earlier_reports(tmp_path, monkeypatch):
    install_fake_data(monkeypatch)
    notebooks = write_notebooks(tmp_path / "notebooks")
    config = write_config(tmp_path / "client.yaml", ["good"])
    config.write_text(config.read_text().replace('"Test <Co>"', '"no data"'))
    old = tmp_path / "reports" / "2026Q3"
    old.mkdir(parents=True)
    (old / "index.html").write_text("old run")

    with pytest.raises(DataError, match="opportunities.csv not found"):
        run_quarterly(
            config,
            reports_dir=tmp_path / "reports",
            notebooks_dir=notebooks,
            quarter="2026Q3",
        )

    assert (old / "index.html").read_text() == "old run"
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["2026Q3"]


def test_rerun_of_a_quarter_moves_the_earlier_run_aside(tmp_path, monkeypatch):
    install_fake_data(monkeypatch)
    notebooks = write_notebooks(tmp_path / "notebooks")
    config = write_config(tmp_path / "client.yaml", ["good", "empty"])
    old = tmp_path / "reports" / "2026Q3"
    old.mkdir(parents=True)
    (old / "index.html").write_text("old run")

    run = run_quarterly(
        config, reports_dir=tmp_path / "reports", notebooks_dir=notebooks
    )

    assert run.previous_dir == tmp_path / "reports" / "2026Q3.previous"
    assert (run.previous_dir / "index.html").read_text() == "old run"
    assert "has no rows" in (run.report_dir / "index.html").read_text()


def test_run_where_every_segment_failed_keeps_the_finished_one(tmp_path, monkeypatch):
    install_fake_data(monkeypatch)
    notebooks = write_notebooks(tmp_path / "notebooks")
    config = write_config(tmp_path / "client.yaml", ["empty"])
    old = tmp_path / "reports" / "2026Q3"
    old.mkdir(parents=True)
    (old / "index.html").write_text("good run")

    for _ in range(2):
        run = run_quarterly(
            config, reports_dir=tmp_path / "reports", notebooks_dir=notebooks
        )

    assert (old / "index.html").read_text() == "good run"
    assert run.report_dir == tmp_path / "reports" / "2026Q3.failed"
    assert "has no rows" in (run.report_dir / "index.html").read_text()


def test_reports_of_another_client_for_the_same_quarter_are_not_replaced(
    tmp_path, monkeypatch
):
    install_fake_data(monkeypatch)
    notebooks = write_notebooks(tmp_path / "notebooks")
    config = write_config(tmp_path / "client.yaml", ["empty"])
    old = tmp_path / "reports" / "2026Q3"
    old.mkdir(parents=True)
    manifest = json.dumps({"config": {"client": "Other Client"}})
    (old / "manifest.json").write_text(manifest)

    with pytest.raises(ConfigError, match="reports of client 'Other Client'"):
        run_quarterly(config, reports_dir=tmp_path / "reports", notebooks_dir=notebooks)

    assert (old / "manifest.json").read_text() == manifest
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["2026Q3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026Q3", "2026Q3"), ("2026q1", "2026Q1"), (" 2025-Q4 ", "2025Q4")],
)
def test_quarter_is_normalized(text, expected):
    assert normalize_quarter(text) == expected


@pytest.mark.parametrize("text", ["2026Q5", "Q3 2026", "2026-07", ""])
def test_invalid_quarter_is_rejected_with_an_example(text):
    with pytest.raises(ConfigError, match="not valid; .* for example 2026Q3"):
        normalize_quarter(text)


def test_missing_notebook_is_named(tmp_path):
    write_notebooks(tmp_path)
    (tmp_path / "03_grade_calibration.ipynb").unlink()
    with pytest.raises(ConfigError, match="lacks 03_grade_calibration.ipynb"):
        find_notebooks(tmp_path)


def test_missing_notebook_folder_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="pass --notebooks DIR"):
        find_notebooks(tmp_path / "nowhere")


def test_fresh_kernels_give_the_same_files(tmp_path, monkeypatch):
    install_fake_data(monkeypatch)
    notebooks = write_notebooks(tmp_path / "notebooks")
    config = write_config(tmp_path / "client.yaml", ["good"])

    run = run_quarterly(
        config,
        reports_dir=tmp_path / "reports",
        notebooks_dir=notebooks,
        fresh_kernels=True,
    )

    assert run.failed == (), [s.error for s in run.segments]
    folder = run.report_dir / "good"
    assert all((folder / name).is_file() for name in RESULT_FILES)
