"""HTML for stakeholders: executed notebooks without code, and the index page.

Reports are read by people who never see code, tracebacks or warnings. A
notebook is rendered with its input cells hidden, its stderr output (where
warnings go) and error outputs removed; a notebook that stopped on an error
gets a plain-language box at the top instead. Every value that comes from
data or a config is escaped: the index page is built by a Jinja environment
with autoescape on.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import nbformat

__all__ = [
    "render_notebook",
    "error_message",
    "summarize_segment",
    "render_index",
    "warm_up",
]

#: Exception names raised by the kit on bad input; their text is already
#: written for the person running the kit, so it is shown as is.
KIT_ERRORS = ("IcpError", "ConfigError", "DataError", "ModelError")
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


@lru_cache(maxsize=1)
def _exporter():
    # Built once per process: loading the template takes a noticeable moment.
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


def warm_up() -> None:
    """Build the exporter and render an empty page, so later pages are quick."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("warm-up")]
    _exporter().from_notebook_node(nb)


def error_message(ename: str, evalue: str, *, step: str) -> str:
    """Return the plain-language text of a notebook error.

    Parameters
    ----------
    ename, evalue : str
        The exception's class name and message, as the kernel reported them.
    step : str
        The notebook's name, used when the error is not one of the kit's own.

    Returns
    -------
    str
        The kit's own message for a kit error; otherwise a sentence naming
        the step and the error, pointing to the executed notebook.
    """
    if ename in KIT_ERRORS:
        return evalue
    return (
        f"{step} stopped on an unexpected error ({ename}: {evalue}). "
        f"The executed notebook {step}.ipynb beside this report shows where."
    )


def find_error(nb: nbformat.NotebookNode) -> tuple[str, str] | None:
    """Return ``(ename, evalue)`` of the first error output, if any."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return out.get("ename", "Error"), out.get("evalue", "")
    return None


def _keep_output(out: dict) -> bool:
    if out.get("output_type") == "error":
        return False
    return not (out.get("output_type") == "stream" and out.get("name") == "stderr")


def _error_cell(text: str) -> nbformat.NotebookNode:
    box = (
        '<div style="border:2px solid #b00020;background:#fdecea;'
        'padding:1em 1.2em;margin:1em 0;font-family:sans-serif">'
        "<strong>This report is incomplete.</strong> "
        f"<p>{html.escape(text)}</p></div>"
    )
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": box}),
    ]
    return cell


def _clean_for_stakeholders(nb: nbformat.NotebookNode, *, step: str):
    error = find_error(nb)
    cells = []
    for cell in nb.cells:
        if PAPERMILL_ERROR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if _keep_output(o)]
        cells.append(cell)
    if error is not None:
        cells.insert(0, _error_cell(error_message(*error, step=step)))
    nb.cells = cells
    return nb


def render_notebook(ipynb: str | Path, html_path: str | Path, *, title: str) -> None:
    """Render an executed notebook to HTML without code, warnings or tracebacks.

    Parameters
    ----------
    ipynb : str or path-like
        The executed notebook, as papermill wrote it.
    html_path : str or path-like
        Where to write the HTML page.
    title : str
        The page title.
    """
    nb = nbformat.read(str(ipynb), as_version=4)
    nb = _clean_for_stakeholders(nb, step=Path(ipynb).stem)
    body, _ = _exporter().from_notebook_node(
        nb, resources={"metadata": {"name": title}}
    )
    Path(html_path).write_text(body, encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dict(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TARGET_WORDS = {
    "won": "closed-won deals",
    "qualified": "qualified opportunities (too few wins to model closed-won)",
    "too_small": "nothing: the segment is too small to model",
}


def _audit_headlines(audit: dict[str, Any]) -> list[tuple[str, str]]:
    target = audit.get("target")
    if not isinstance(target, dict):
        return [("Optimized for", str(target))] if target else []
    counts = _dict(target, "counts")
    name = str(target.get("target", "unknown"))
    text = _TARGET_WORDS.get(name, name)
    if _is_number(counts.get("won")) and _is_number(counts.get("closed")):
        text += f" ({counts['won']:,} wins among {counts['closed']:,} closed records)"
    return [("Optimized for", text)]


def _model_headlines(model: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    fields = model.get("fields")
    if isinstance(fields, list):
        rows.append(("Fields in score", ", ".join(_field_labels(fields)) or "none"))
    validation = _dict(_dict(model, "metrics"), "validation")
    if _is_number(validation.get("auc")):
        text = f"{validation['auc']:.2f}"
        if _is_number(validation.get("auc_low")) and _is_number(
            validation.get("auc_high")
        ):
            text += f" (95% interval {validation['auc_low']:.2f} to "
            text += f"{validation['auc_high']:.2f})"
        rows.append(("Validation AUC", text))
    verdict = _dict(model, "verdict")
    if "usable" in verdict:
        rows.append(("Model usable", "yes" if verdict["usable"] else "no"))
    grades = _dict(model, "grades")
    cuts = _dict(grades, "cuts")
    if cuts and verdict.get("usable") and not grades.get("not_for_deployment"):
        rows.append(("Grade cuts", ", ".join(f"{k} >= {v}" for k, v in cuts.items())))
    elif cuts:
        rows.append(("Grades", "shown in the reports, not for deployment"))
    return rows


def _field_labels(fields: list[Any]) -> list[str]:
    return [str(f.get("label") or f.get("name")) for f in fields if isinstance(f, dict)]


def _review_headlines(review: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    by_grade = _dict(_dict(review, "headline"), "conversion_by_grade")
    rates = [f"{g} {v:.0%}" for g, v in by_grade.items() if _is_number(v)]
    if rates:
        rows.append(("Conversion by grade this quarter", ", ".join(rates)))
    ordering = _dict(review, "grade_ordering").get("verdict")
    if ordering:
        rows.append(("Grades in order (A > B > C > D)", str(ordering)))
    drift = [a for a in review.get("drift_alerts") or [] if isinstance(a, dict)]
    moved = [
        f"{a.get('label') or a.get('variable')} ({a.get('status')})"
        for a in drift
        if a.get("status") in ("shifted", "watch")
    ]
    if isinstance(review.get("drift_alerts"), list):
        rows.append(("Drift", ", ".join(moved) or "none"))
    feedback = review.get("feedback_alerts")
    if isinstance(feedback, list):
        rows.append(("Feedback alerts", "; ".join(map(str, feedback)) or "none"))
    verdict = review.get("verdict")
    if isinstance(verdict, dict):
        verdict = verdict.get("headline") or verdict.get("decision")
    if verdict:
        rows.append(("Review verdict", str(verdict)))
    return rows


def summarize_segment(folder: str | Path) -> list[tuple[str, str]]:
    """Return headline ``(label, value)`` pairs from a segment's result files.

    Reads ``audit.json``, ``model.json`` and ``review.json`` when present and
    picks the few numbers a reader looks for first. Missing files or keys
    are skipped, never an error.
    """
    folder = Path(folder)
    rows = _audit_headlines(_read_json(folder / "audit.json"))
    rows += _model_headlines(_read_json(folder / "model.json"))
    rows += _review_headlines(_read_json(folder / "review.json"))
    return rows


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>ICP Kit: {{ client }}, {{ quarter }}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .5em; text-align: left;
         vertical-align: top; }
.ok { color: #1b5e20; font-weight: bold; }
.failed { color: #b00020; font-weight: bold; }
.error { background: #fdecea; padding: .4em .6em; white-space: pre-wrap; }
dl { margin: 0; } dt { font-weight: bold; float: left; clear: left;
     margin-right: .5em; } dd { margin: 0; }
</style></head><body>
<h1>Ideal Customer Profile: {{ client }}</h1>
<p>Review quarter <strong>{{ quarter }}</strong>, run {{ created_at }}.
{{ n_ok }} of {{ segments|length }} segments completed.</p>
<table>
<tr><th>Segment</th><th>Status</th><th>Headline</th><th>Reports</th></tr>
{% for s in segments %}
<tr>
<td><strong>{{ s.label }}</strong><br><small>{{ s.name }}</small></td>
<td class="{{ s.status }}">{{ "completed" if s.status == "ok" else "failed" }}</td>
<td>
{% if s.error %}<div class="error">{{ s.error }}</div>{% endif %}
{% if s.headlines %}<dl>{% for label, value in s.headlines %}
<dt>{{ label }}:</dt><dd>{{ value }}</dd>{% endfor %}</dl>{% endif %}
</td>
<td>{% for link in s.links %}<a href="{{ link.href }}">{{ link.text }}</a><br>
{% endfor %}</td>
</tr>
{% endfor %}
</table>
<p><small>Details of this run (config, data fingerprints, versions, timings):
<a href="manifest.json">manifest.json</a>.</small></p>
</body></html>
"""


@lru_cache(maxsize=1)
def _index_template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_INDEX)


def render_index(
    *, client: str, quarter: str, created_at: str, segments: list[dict]
) -> str:
    """Return the index page of a quarterly run.

    Parameters
    ----------
    client, quarter, created_at : str
        Shown in the heading.
    segments : list of dict
        One per segment, with keys ``name``, ``label``, ``status`` ("ok" or
        "failed"), ``error`` (str or None), ``headlines`` (list of
        ``(label, value)``) and ``links`` (list of dicts with ``href`` and
        ``text``). Every value is escaped.

    Returns
    -------
    str
        The HTML page.
    """
    n_ok = sum(s["status"] == "ok" for s in segments)
    return _index_template().render(
        client=client,
        quarter=quarter,
        created_at=created_at,
        segments=segments,
        n_ok=n_ok,
    )
