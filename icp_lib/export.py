"""Export scores: a CRM import file and a SQL query for the client's warehouse.

:func:`write_scores` writes ``scores.csv``, one row per record, ready for a
CRM or marketing-automation import. Column names follow a preset per CRM
(``export.crm`` in the config: ``generic``, ``salesforce`` or ``hubspot``)
and each can be renamed with ``export.columns`` (keys: ``record_id``,
``score``, ``grade``, ``reason_1`` ... ``reason_10``, ``model_version``,
``scoring_date``).

The file is UTF-8 without a byte-order mark, with standard CSV quoting
(fields holding a comma, quote or line break are quoted; quotes doubled) and
CRLF line ends. Spreadsheets run a cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return as a formula; so every text cell
starting with one of these (``FORMULA_PREFIXES``) is written with a single
quote in front (``'=cmd`` instead of ``=cmd``). Scores are whole numbers and
are written as they are.

:func:`to_sql` prints the card as one ``SELECT`` that computes the score and
grade of every row of a source table inside the client's warehouse (see its
docstring for the rules and limits).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from ._card import ScoreCard
from ._clean import (
    FALSE_TEXT,
    PLACEHOLDERS,
    TRUE_TEXT,
    category_key,
    parse_bool,
    salesforce_id_18,
)
from ._files import replace_atomically
from .config import Config, ExportConfig
from .errors import ConfigError, DataError, ModelError
from .grades import Calibration, require_columns

__all__ = [
    "CRM_PRESETS",
    "EXPORT_KEYS",
    "FORMULA_PREFIXES",
    "SUPPORTED_DIALECTS",
    "export_columns",
    "neutralize_cell",
    "write_scores",
    "to_sql",
    "save_calibration",
]

logger = logging.getLogger(__name__)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_MAX_REASONS = 10
EXPORT_KEYS = (
    "record_id",
    "score",
    "grade",
    *(f"reason_{i}" for i in range(1, _MAX_REASONS + 1)),
    "model_version",
    "scoring_date",
)
CRM_PRESETS: dict[str, dict[str, str]] = {
    "generic": {
        "record_id": "record_id",
        "score": "icp_score",
        "grade": "icp_grade",
        "reason": "icp_reason_{n}",
        "model_version": "icp_model_version",
        "scoring_date": "icp_scoring_date",
    },
    "salesforce": {
        "record_id": "Id",
        "score": "ICP_Score__c",
        "grade": "ICP_Grade__c",
        "reason": "ICP_Reason_{n}__c",
        "model_version": "ICP_Model_Version__c",
        "scoring_date": "ICP_Scoring_Date__c",
    },
    "hubspot": {
        "record_id": "Record ID",
        "score": "icp_score",
        "grade": "icp_grade",
        "reason": "icp_reason_{n}",
        "model_version": "icp_model_version",
        "scoring_date": "icp_scoring_date",
    },
}
_SF_ID_15 = re.compile(r"^[A-Za-z0-9]{15}$")

SUPPORTED_DIALECTS = ("duckdb", "postgres", "sqlite", "snowflake", "bigquery", "spark")
# Other names users give the same dialects.
DIALECT_ALIASES = {"postgresql": "postgres", "pg": "postgres", "sparksql": "spark"}
# Every character Python's str.split() treats as whitespace.
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003"
    "\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# SQLite has no regular expressions: runs of spaces halve with each pass.
_SQLITE_SPACE_PASSES = 10
_PLACEHOLDER_PASSES = 2
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _generator(dialect: str):
    return Dialect.get_or_raise(dialect).generator_class


_RESERVED = frozenset(
    word
    for d in ("duckdb", "bigquery")
    for word in getattr(
        Dialect.get_or_raise(d).generator_class, "RESERVED_KEYWORDS", ()
    )
)


# --- scores.csv -----------------------------------------------------------------


def neutralize_cell(text: str) -> str:
    """Return ``text`` safe to open in a spreadsheet.

    A cell that starts with one of ``FORMULA_PREFIXES`` gets a single quote
    in front, so a spreadsheet shows it as text instead of running it.

    Examples
    --------
    >>> neutralize_cell("=HYPERLINK(\\"x\\")")
    '\\'=HYPERLINK("x")'
    >>> neutralize_cell("Software")
    'Software'
    """
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def export_columns(config: ExportConfig) -> dict[str, str]:
    """Return the output column name of each exported item, in file order.

    Parameters
    ----------
    config : ExportConfig
        ``crm`` picks the preset; ``columns`` renames items;
        ``top_reasons`` says how many reason columns there are.

    Returns
    -------
    dict
        Item key (see ``EXPORT_KEYS``) to column name.

    Raises
    ------
    ConfigError
        If ``export.columns`` names an unknown item, an empty name, or two
        items end up with the same column name.
    """
    unknown = sorted(set(config.columns) - set(EXPORT_KEYS))
    if unknown:
        raise ConfigError(
            f"export.columns has unknown key(s) {unknown}; allowed keys: "
            f"{', '.join(EXPORT_KEYS)}"
        )
    preset = CRM_PRESETS[config.crm]
    keys = ["record_id", "score", "grade"]
    keys += [f"reason_{i}" for i in range(1, config.top_reasons + 1)]
    keys += ["model_version", "scoring_date"]
    names = {k: config.columns.get(k) or _preset_name(preset, k) for k in keys}
    _check_names(names, config)
    return names


def _preset_name(preset: Mapping[str, str], key: str) -> str:
    if key.startswith("reason_"):
        return preset["reason"].format(n=key.removeprefix("reason_"))
    return preset[key]


def _check_names(names: Mapping[str, str], config: ExportConfig) -> None:
    blank = [k for k, v in names.items() if not str(v).strip()]
    if blank:
        raise ConfigError(f"export.columns gives an empty column name for {blank}")
    seen: dict[str, str] = {}
    for key, name in names.items():
        if name in seen:
            raise ConfigError(
                f"export columns {seen[name]!r} and {key!r} are both named "
                f"{name!r} (crm preset {config.crm!r}); rename one under "
                "export.columns"
            )
        seen[name] = key


def _export_id(value: Any, crm: str) -> str:
    text = str(value)
    if crm == "salesforce" and _SF_ID_15.match(text.strip()):
        return salesforce_id_18(text.strip())
    return text


def _check_scored(scored: pd.DataFrame) -> None:
    needed = ("record_id", "score", "grade", "reasons")
    require_columns(scored, needed, what="scores.csv (score_records output)")
    bad = scored["grade"].isna() | scored["score"].isna() | scored["record_id"].isna()
    if bad.any():
        raise ModelError(
            f"{int(bad.sum())} record(s) have no id, score or grade (first: "
            f"{scored.loc[bad, 'record_id'].astype(str).iloc[0]}); the model must "
            "have grades (notebook 03) before scores are exported"
        )


def _check_deployable(card: ScoreCard, allow_undeployable: bool) -> None:
    grades = card.grades or {}
    blocked = not card.usable or bool(grades.get("not_for_deployment"))
    if blocked and not allow_undeployable:
        raise ModelError(
            f"model {card.model_id or '(no id)'} is marked not for deployment "
            f"(usable: {card.usable}, grades not_for_deployment: "
            f"{grades.get('not_for_deployment')}); its scores must not reach the "
            "CRM; re-run the analysis, or pass --allow-undeployable (icp) or "
            "allow_undeployable=True (Python) to export anyway"
        )


def _reason_cells(reasons: Any, n: int) -> list[str]:
    # Reasons arrive as lists, or as arrays when read back from Parquet.
    listed = list(reasons) if isinstance(reasons, list | tuple | np.ndarray) else []
    texts = [str(r) for r in listed[:n]]
    return texts + [""] * (n - len(texts))


def _rows(scored: pd.DataFrame, card: ScoreCard, config, date_text: str):
    for rec, score, grade, reasons in zip(
        scored["record_id"],
        scored["score"],
        scored["grade"],
        scored["reasons"],
        strict=True,
    ):
        texts = _reason_cells(reasons, config.top_reasons)
        yield [
            neutralize_cell(_export_id(rec, config.crm)),
            int(score),
            neutralize_cell(str(grade)),
            *(neutralize_cell(t) for t in texts),
            neutralize_cell(card.model_id),
            date_text,
        ]


def _date_text(scoring_date: dt.date | str) -> str:
    try:
        return pd.Timestamp(scoring_date).date().isoformat()
    except (ValueError, TypeError):
        raise DataError(
            f"scoring_date must be a date such as 2026-12-04; found {scoring_date!r}"
        ) from None


def write_scores(
    scored: pd.DataFrame,
    path: str | os.PathLike,
    *,
    card: ScoreCard,
    config: ExportConfig,
    scoring_date: dt.date | str,
    allow_undeployable: bool = False,
) -> None:
    """Write scores.csv for a CRM import.

    Parameters
    ----------
    scored : DataFrame
        ``record_id``, ``score``, ``grade`` and ``reasons`` (list of text),
        as returned by :func:`icp_lib.score_records`.
    path : str or path-like
        The file to write; it is written to a temporary file in the same
        folder first and then renamed, so a reader never sees half a file.
    card : ScoreCard
        The model; its ``model_id`` is the model version column.
    config : ExportConfig
        CRM preset, column renames and number of reasons.
    scoring_date : date or str
        The scoring date written in every row (ISO ``YYYY-MM-DD``).
    allow_undeployable : bool, default False
        Export even when the model is not usable or its grades are marked
        not for deployment.

    Raises
    ------
    ConfigError
        If ``config.columns`` is invalid.
    DataError
        If ``scored`` lacks a column or ``scoring_date`` is not a date.
    ModelError
        If a record has no grade, or the model is not for deployment.

    Notes
    -----
    With ``crm: salesforce`` 15-character Salesforce ids are written in
    their 18-character form. Text cells that a spreadsheet would run as a
    formula get a leading single quote (see :func:`neutralize_cell`).
    """
    names = export_columns(config)
    _check_scored(scored)
    _check_deployable(card, allow_undeployable)
    date_text = _date_text(scoring_date)
    path = Path(path)

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
            writer.writerow([neutralize_cell(n) for n in names.values()])
            writer.writerows(_rows(scored, card, config, date_text))

    replace_atomically(path, write)
    logger.info("wrote %d scores to %s", len(scored), path)


# --- SQL ------------------------------------------------------------------------


def to_sql(
    card: ScoreCard | Mapping[str, Any],
    *,
    dialect: str,
    table: str = "source_table",
    id_column: str = "record_id",
    columns: Mapping[str, str] | None = None,
    allow_undeployable: bool = False,
) -> str:
    """Return one SQL ``SELECT`` that scores and grades every row of a table.

    The query returns ``record_id``, ``score`` and ``grade`` and follows the
    scoring rules of :func:`icp_lib.score_records` exactly:

    - categorical: the value as text, whitespace collapsed to one space,
      trimmed and lower-cased; NULL and placeholders (``select``,
      ``--none--``, ``unknown``, ...) score the missing points; a value no
      level lists scores the other points;
    - numeric and range: the bins ``lower <= v < upper``; NULL (and NaN)
      score the missing points;
    - boolean: true/yes/y/1 and false/no/n/0 as text (booleans and 0/1
      numbers work too); anything else scores the missing points;
    - multi: the text is split on the card's separator (``|``, as in the
      modeling table) and on the client's own separator
      (``source_separator``, for example ``;``), and each piece is
      normalized as a categorical value; each indicator present adds its
      points (tested with a position search, so ``%`` and ``_`` in values
      are plain characters); no piece at all scores the missing points.

    Every value from the card enters the query as a literal built by
    sqlglot, never spliced into SQL text, so quotes and SQL syntax in
    values stay plain text.

    Parameters
    ----------
    card : ScoreCard or mapping
        The model (a model.json mapping is validated first). It must have
        grades (notebook 03).
    dialect : str
        One of ``SUPPORTED_DIALECTS``.
    table : str, default "source_table"
        The source table; a dotted name (``db.schema.table``) is allowed.
    id_column : str, default "record_id"
        The column that identifies records; returned as ``record_id``.
    columns : mapping, optional
        The client's column name for a field, by canonical field name
        (``{"industry": "Industry__c"}``); fields not listed are read from
        a column of their canonical name.
    allow_undeployable : bool, default False
        Print the query even when the model is marked not for deployment.

    Returns
    -------
    str
        The query, in the dialect's syntax.

    Raises
    ------
    ConfigError
        If ``dialect`` is not supported, or ``columns`` names a field the
        card does not have.
    ModelError
        If the card has no grades, is not for deployment, or has a multi
        field whose separator holds whitespace.

    Notes
    -----
    Numeric and range fields must be stored as numbers in the warehouse
    (the range midpoint, as in the modeling table); text such as
    ``"$1,200"`` is not parsed. Boolean fields stored as floats write
    ``1.0``, which counts as true. SQLite (and PostgreSQL in the C locale)
    lower-case only ASCII letters, so the query also lower-cases the
    non-ASCII capitals of the card's own values with ``REPLACE``. Python's
    case folding and SQL ``LOWER`` differ for a few letters (for example
    German sharp s); the query accepts both spellings of the card's values.
    In SQLite, whitespace runs longer than 1,024 characters are not fully
    collapsed. Column names that need it (spaces, reserved words) are
    quoted, which makes them case-sensitive: give them in their exact case.

    Examples
    --------
    >>> print(to_sql(card, dialect="duckdb", table="crm.opportunities"))
    """
    dialect = DIALECT_ALIASES.get(str(dialect).lower(), str(dialect).lower())
    if dialect not in SUPPORTED_DIALECTS:
        raise ConfigError(
            f"SQL dialect {dialect!r} is not supported; choose one of "
            f"{', '.join(SUPPORTED_DIALECTS)}"
        )
    if not isinstance(card, ScoreCard):
        card = ScoreCard.from_json(card)
    if not card.grades:
        raise ModelError(
            f"model {card.model_id or '(no id)'} has no grades yet; run notebook "
            "03 (make quarterly) to cut grades before printing SQL"
        )
    _check_deployable(card, allow_undeployable)
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - {f.name for f in card.fields})
    if unknown:
        raise ConfigError(
            f"columns maps field(s) {unknown} that the model does not use; its "
            f"fields: {', '.join(f.name for f in card.fields) or '(none)'}"
        )
    select = build_select(
        card, dialect=dialect, table=table, id_column=id_column, columns=mapping
    )
    # Not pretty-printed: the printer would indent inside string literals
    # that hold line breaks (the whitespace class).
    return select.sql(dialect=dialect)


def _identifier(name: str) -> exp.Identifier:
    """Quote a name only when it needs it, so unquoted names keep the
    warehouse's case rules (Snowflake upper-cases, PostgreSQL lower-cases)."""
    quoted = not _SAFE_NAME.match(name) or name.lower() in _RESERVED
    return exp.to_identifier(name, quoted=quoted)


def _table(name: str) -> exp.Table:
    parts = [p.strip() for p in name.split(".")]
    if not all(parts) or len(parts) > 3:
        raise ConfigError(
            f"table {name!r} must be a name such as orders, schema.orders or "
            "db.schema.orders"
        )
    idents = [_identifier(p) for p in parts]
    return exp.Table(
        this=idents[-1],
        db=idents[-2] if len(idents) > 1 else None,
        catalog=idents[-3] if len(idents) > 2 else None,
    )


def _text(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _replace(expr: exp.Expression, old: str, new: str) -> exp.Expression:
    return exp.func("REPLACE", expr, _text(old), _text(new))


# A step maps one column expression to the next; steps are applied in
# layers of subqueries, a few per layer, because SQLite's parser overflows on
# deeply nested calls.
Step = Callable[[exp.Expression], exp.Expression]
_STEPS_PER_LAYER = 8


def _replace_step(old: str, new: str) -> Step:
    return lambda e: _replace(e, old, new)


def _collapse_steps(dialect: str) -> list[Step]:
    """Whitespace runs to one space, then trimmed (Python's split/join)."""
    if dialect == "sqlite":
        steps = [_replace_step(ch, " ") for ch in _WHITESPACE.replace(" ", "")]
        steps += [_replace_step("  ", " ")] * _SQLITE_SPACE_PASSES
    else:
        pattern = f"[{_WHITESPACE}]+"
        steps = [
            lambda e: exp.RegexpReplace(
                this=e, expression=_text(pattern), replacement=_text(" ")
            )
        ]
    return [*steps, lambda e: exp.Trim(this=e)]


def _fold_chars(card: ScoreCard) -> list[str]:
    """Non-ASCII capitals whose lower case appears in the card's values."""
    texts = [str(v) for f in card.fields for lv in f.levels for v in lv.values]
    texts += [i.value for f in card.fields for i in f.indicators]
    chars = {c for t in texts for c in t.lower() if not c.isascii()}
    caps = {c.upper() for c in chars if len(c.upper()) == 1}
    return sorted(c for c in caps if not c.isascii() and c.lower() != c)


def _normalize_steps(dialect: str, fold: list[str]) -> list[Step]:
    steps: list[Step] = [lambda e: exp.cast(e, exp.DataType.build("TEXT"))]
    steps += [_replace_step(cap, cap.lower()) for cap in fold]
    return [*steps, *_collapse_steps(dialect), lambda e: exp.Lower(this=e)]


def _keys(value: Any) -> list[str]:
    """The normalized forms of a card value the SQL accepts (case fold and
    lower case differ for a few letters)."""
    key = category_key(value)
    if key is None:
        return []
    return list(dict.fromkeys([key, " ".join(str(value).split()).lower()]))


def _in(expr: exp.Expression, values) -> exp.Expression:
    return exp.In(this=expr, expressions=[_text(v) for v in values])


def _int(value: int) -> exp.Literal:
    return exp.Literal.number(int(value))


def _case(ifs, default: int) -> exp.Case:
    case = exp.Case()
    for cond, points in ifs:
        case = case.when(cond, _int(points))
    return case.else_(_int(default))


def _missing(value: exp.Expression) -> exp.Expression:
    return exp.Or(
        this=exp.Is(this=value.copy(), expression=exp.Null()),
        expression=_in(value.copy(), PLACEHOLDERS),
    )


def _categorical_points(f, value: exp.Expression) -> exp.Expression:
    ifs = [(_missing(value), f.missing_points)]
    for level in f.levels:
        keys = [k for v in level.values for k in _keys(v)]
        if keys:
            ifs.append((_in(value.copy(), keys), level.points))
    return _case(ifs, f.other_points)


def _level_points_for(f, truth: bool) -> int:
    for level in f.levels:
        if any(parse_bool(v) is truth for v in level.values):
            return level.points
    return f.other_points


def _boolean_points(f, value: exp.Expression) -> exp.Expression:
    # Booleans stored as floats print as 1.0 / 0.0 in most warehouses.
    ifs = [
        (_in(value.copy(), [*TRUE_TEXT, "1.0"]), _level_points_for(f, True)),
        (_in(value.copy(), [*FALSE_TEXT, "0.0"]), _level_points_for(f, False)),
    ]
    return _case(ifs, f.missing_points)


def _is_nan(value: exp.Expression, dialect: str) -> exp.Expression | None:
    if dialect in ("duckdb", "spark", "bigquery"):
        return exp.IsNan(this=value.copy())
    if dialect in ("postgres", "snowflake"):
        nan = exp.cast(_text("NaN"), exp.DataType.build("DOUBLE"))
        return exp.EQ(this=value.copy(), expression=nan)
    return None  # SQLite stores NaN as NULL


def _numeric_points(f, value: exp.Expression, dialect: str) -> exp.Expression:
    missing: exp.Expression = exp.Is(this=value.copy(), expression=exp.Null())
    nan = _is_nan(value, dialect)
    if nan is not None:
        missing = exp.Or(this=missing, expression=nan)
    # Out-of-range values score as missing, as in training and icp score.
    low, high = f.valid_range or (None, None)
    if low is not None:
        bound = exp.Literal.number(repr(float(low)))
        missing = exp.Or(
            this=missing, expression=exp.LT(this=value.copy(), expression=bound)
        )
    if high is not None:
        bound = exp.Literal.number(repr(float(high)))
        missing = exp.Or(
            this=missing, expression=exp.GT(this=value.copy(), expression=bound)
        )
    ifs = [(missing, f.missing_points)]
    # Same as the Python rule: the first bin whose upper bound exceeds v.
    for b in f.bins[:-1]:
        if b.upper is None:
            return _case(ifs, b.points)
        bound = exp.Literal.number(repr(float(b.upper)))
        ifs.append((exp.LT(this=value.copy(), expression=bound), b.points))
    return _case(ifs, f.bins[-1].points if f.bins else f.missing_points)


def _check_separator(f) -> str:
    sep = f.separator
    if not sep or any(c.isspace() for c in sep) or sep.lower() != sep.upper():
        raise ModelError(
            f"field {f.name!r} uses separator {sep!r}; the SQL export needs a "
            "separator without spaces or letters, such as '|' or ';'"
        )
    return sep


def _wrap_step(sep: str) -> Step:
    def wrap(e: exp.Expression) -> exp.Expression:
        inner = exp.DPipe(this=_text(sep), expression=e.copy(), safe=True)
        wrapped = exp.DPipe(this=inner, expression=_text(sep), safe=True)
        is_null = exp.Is(this=e.copy(), expression=exp.Null())
        return exp.Case().when(is_null, exp.Null()).else_(wrapped)

    return wrap


def _multi_steps(f, dialect: str, fold: list[str]) -> list[Step]:
    """sep + pieces normalized and joined by sep + sep; NULL stays NULL."""
    sep = _check_separator(f)
    steps = _normalize_steps(dialect, fold)
    source = f.source_separator
    if source and source != sep:
        # The client's own separator (raw text), before any normalization.
        steps.insert(1, _replace_step(source, sep))
    steps += [_replace_step(sep + " ", sep), _replace_step(" " + sep, sep)]
    return [*steps, _wrap_step(sep)]


def _leftover_steps(sep: str) -> list[Step]:
    """Remove placeholder pieces, then separators: '' when nothing is left."""
    steps = []
    for _ in range(_PLACEHOLDER_PASSES):
        for ph in PLACEHOLDERS:
            steps += [_replace_step(sep + ph + sep, sep)] * _PLACEHOLDER_PASSES
    return [*steps, _replace_step(sep, "")]


def _contains(value: exp.Expression, text: str) -> exp.Expression:
    # A position search, not LIKE: % and _ in values stay plain characters.
    where = exp.StrPosition(this=value.copy(), substr=_text(text))
    return exp.GT(this=where, expression=_int(0))


def _multi_points(f, value: exp.Expression, leftover: exp.Expression):
    sep = f.separator
    wanted: dict[str, list[str]] = {}
    for ind in f.indicators:
        keys = [k for k in _keys(ind.value) if sep not in k]
        if keys:
            wanted[category_key(ind.value)] = keys
    terms = []
    for ind in f.indicators:
        keys = wanted.pop(category_key(ind.value), None)
        if keys:
            found = [
                exp.GT(
                    this=exp.StrPosition(
                        this=value.copy(), substr=_text(sep + k + sep)
                    ),
                    expression=_int(0),
                )
                for k in keys
            ]
            terms.append(_case([(exp.or_(*found), ind.points)], 0))
    empty = exp.or_(
        exp.Is(this=leftover.copy(), expression=exp.Null()),
        exp.EQ(this=exp.Length(this=leftover.copy()), expression=_int(0)),
    )
    return exp.Case().when(empty, _int(f.missing_points)).else_(_sum(terms))


def _sum(terms: list[exp.Expression]) -> exp.Expression:
    if not terms:
        return _int(0)
    total = terms[0]
    for term in terms[1:]:
        total = exp.Add(this=total, expression=term)
    return exp.Paren(this=total) if len(terms) > 1 else total


def _field_steps(f, dialect: str, fold: list[str]) -> list[list[Step]]:
    """The steps of each derived column of a field (multi has two)."""
    if f.kind in ("numeric", "range"):
        return [[]]
    if f.kind == "multi":
        steps = _multi_steps(f, dialect, fold)
        return [steps, [*steps, *_leftover_steps(f.separator)]]
    return [_normalize_steps(dialect, fold)]


def _points(f, values: list[exp.Expression], dialect: str) -> exp.Expression:
    if f.kind in ("numeric", "range"):
        return _numeric_points(f, values[0], dialect)
    if f.kind == "multi":
        return _multi_points(f, values[0], values[1])
    if f.kind == "boolean":
        return _boolean_points(f, values[0])
    return _categorical_points(f, values[0])


def _grade(score: exp.Expression, cuts: Mapping[str, Any]) -> exp.Expression:
    case = exp.Case()
    for g in ("A", "B", "C"):
        cond = exp.GTE(this=score.copy(), expression=_int(cuts[g]))
        case = case.when(cond, _text(g))
    return case.else_(_text("D"))


def _layers(source: exp.Select, derived: list[tuple[str, list[Step]]]) -> exp.Select:
    """Apply each column's steps, a few per subquery layer."""
    query = source
    depth = max((len(steps) for _, steps in derived), default=0)
    for n, start in enumerate(range(0, depth, _STEPS_PER_LAYER)):
        layer = exp.select("record_id")
        for name, steps in derived:
            expr: exp.Expression = exp.column(name)
            for step in steps[start : start + _STEPS_PER_LAYER]:
                expr = step(expr)
            layer = layer.select(exp.alias_(expr, name))
        query = layer.from_(query.subquery(f"step_{n + 1}"))
    return query


def build_select(
    card: ScoreCard,
    *,
    dialect: str,
    table: str,
    id_column: str,
    columns: Mapping[str, str],
) -> exp.Select:
    """Build the scoring query as a sqlglot tree (see :func:`to_sql`)."""
    fold = _fold_chars(card)
    source = exp.select(exp.alias_(exp.column(_identifier(id_column)), "record_id"))
    derived: list[tuple[str, list[Step]]] = []
    names: list[list[str]] = []
    for i, f in enumerate(card.fields):
        column = exp.column(_identifier(columns.get(f.name, f.name)))
        field_names = []
        for j, steps in enumerate(_field_steps(f, dialect, fold)):
            name = f"f_{i}_{j}"
            source = source.select(exp.alias_(column.copy(), name))
            derived.append((name, steps))
            field_names.append(name)
        names.append(field_names)
    query = _layers(source.from_(_table(table)), derived)
    parts = [
        exp.Paren(this=_points(f, [exp.column(n) for n in fn], dialect))
        for f, fn in zip(card.fields, names, strict=True)
    ]
    score = _sum(parts) if parts else _int(0)
    middle = exp.select("record_id", exp.alias_(score, "score"))
    middle = middle.from_(query.subquery("normalized"))
    grade = _grade(exp.column("score"), card.grades["cuts"])
    return exp.select("record_id", "score", exp.alias_(grade, "grade")).from_(
        middle.subquery("scored")
    )


# --- notebook 03 outputs ----------------------------------------------------------


def save_calibration(
    calibration: Calibration,
    card: ScoreCard,
    output_dir: str | os.PathLike,
    *,
    config: Config,
    scoring_date: dt.date | str | None = None,
) -> str:
    """Save the grades into model.json and write scores.csv; say what was done.

    Parameters
    ----------
    calibration : Calibration
        The result of :func:`icp_lib.grades.calibrate`.
    card : ScoreCard
        The model read from ``output_dir``/model.json.
    output_dir : str or path-like
        The segment's output folder.
    config : Config
        The client config (``export`` section).
    scoring_date : date or str, optional
        Date written in scores.csv; default today (UTC).

    Returns
    -------
    str
        Markdown saying which files were written, or why not.

    Notes
    -----
    The grades (also those marked not for deployment) go into model.json so
    that the quarterly review can read them. scores.csv is written only
    when the grades are deployable; otherwise an older scores.csv in the
    folder is removed, so a CRM import cannot pick up stale grades.
    """
    out = Path(output_dir)
    entry = calibration.grades_entry()
    lines = []
    if entry is not None:
        card.with_grades(entry).save(out / "model.json")
        lines.append("- The grades and their expected results are saved in model.json.")
    scores = out / "scores.csv"
    if calibration.deployable:
        graded = card.with_grades(entry)
        date = scoring_date or dt.datetime.now(dt.UTC).date()
        write_scores(
            calibration.scored, scores, card=graded, config=config.export,
            scoring_date=date,
        )  # fmt: skip
        lines.append(
            f"- scores.csv holds {len(calibration.scored):,} records (open ones "
            "included) with score, grade and top reasons, ready for the CRM import."
        )
    else:
        scores.unlink(missing_ok=True)
        lines.append(
            "- scores.csv was **not** written: these grades are not for deployment."
        )
    return "\n".join(lines)
