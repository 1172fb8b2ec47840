"""Stakeholder HTML: headline extraction, error text and escaping."""

import json

import nbformat
import pytest

from icp_lib import _html


def test_summary_of_an_empty_folder_is_empty(tmp_path):
    assert _html.summarize_segment(tmp_path) == []


def test_unreadable_result_files_are_skipped(tmp_path):
    (tmp_path / "audit.json").write_text("{not json")
    (tmp_path / "model.json").write_text(json.dumps([1, 2]))
    assert _html.summarize_segment(tmp_path) == []


@pytest.mark.parametrize(
    ("ename", "expected"),
    [
        ("DataError", "column x not found"),
        ("KeyError", "01_data_audit stopped on an unexpected error (KeyError: "),
    ],
)
def test_error_message_keeps_kit_errors_and_explains_others(ename, expected):
    text = _html.error_message(ename, "column x not found", step="01_data_audit")
    assert text.startswith(expected)


def test_index_escapes_every_value():
    segment = {
        "name": "s1",
        "label": "<script>alert(1)</script>",
        "status": "failed",
        "error": "bad & <worse>",
        "headlines": [("<h>", "<v>")],
        "links": [{"href": "s1/01_data_audit.html", "text": "<t>"}],
    }
    page = _html.render_index(
        client="A&B", quarter="2026Q3", created_at="now", segments=[segment]
    )
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "bad &amp; &lt;worse&gt;" in page
    assert "&lt;h&gt;" in page and "&lt;v&gt;" in page and "&lt;t&gt;" in page
    assert "A&amp;B" in page


def test_rendered_notebook_drops_code_stderr_and_tracebacks(tmp_path):
    code = nbformat.v4.new_code_cell("secret_code = 1")
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="shown text\n"),
        nbformat.v4.new_output("stream", name="stderr", text="hidden warning\n"),
        nbformat.v4.new_output(
            "error",
            ename="ModelError",
            evalue="no <usable> model",
            traceback=["Traceback line"],
        ),
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Heading"), code]
    nbformat.write(nb, tmp_path / "02_model_fit.ipynb")

    _html.render_notebook(
        tmp_path / "02_model_fit.ipynb", tmp_path / "out.html", title="T"
    )

    page = (tmp_path / "out.html").read_text()
    assert "shown text" in page
    assert "Heading" in page
    for hidden in ("secret_code", "hidden warning", "Traceback line"):
        assert hidden not in page
    assert "This report is incomplete." in page
    assert "no &lt;usable&gt; model" in page
