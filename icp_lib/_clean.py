"""Cleaning rules for messy CRM exports.

Every rule is a pure function. Value-level parsers (``parse_number_text``,
``parse_range_text``, ``parse_bool``, ``normalize_category``) take one raw
value and return the cleaned value or ``None``; scoring uses the same
functions, so training data and new records are read alike.

Column-level rules return a :class:`Cleaned` bundle: the cleaned values, how
many rows the rule changed and up to three raw examples, from which
:mod:`icp_lib.data` builds the cleaning log shown in the audit report.

Placeholders
------------
``PLACEHOLDERS`` lists the texts that CRM forms store when nobody answered:
``Select``, ``--None--``, ``unknown``, ``n/a``, ``none``, ``null``, ``-``
and the empty string. They are compared after stripping, collapsing inner
whitespace and case folding, and are read as missing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "PLACEHOLDERS",
    "TRUE_TEXT",
    "FALSE_TEXT",
    "SENIORITY_LEVELS",
    "Cleaned",
    "normalize_category",
    "category_key",
    "is_placeholder",
    "parse_bool",
    "parse_number_text",
    "parse_range_text",
    "salesforce_id_18",
    "rank_seniority",
    "map_values",
    "clean_placeholders",
    "merge_category_variants",
    "clean_numbers",
    "clean_ranges",
    "clean_booleans",
    "clean_multi",
    "parse_dates",
    "normalize_salesforce_ids",
    "find_footer_rows",
]

PLACEHOLDERS = ("select", "--none--", "unknown", "n/a", "none", "null", "-", "")
TRUE_TEXT = ("true", "yes", "y", "1")
FALSE_TEXT = ("false", "no", "n", "0")

# Most senior first. A title takes the first level whose pattern it matches;
# "vice president" is tested before "president" on purpose.
SENIORITY_LEVELS = (
    "C-level",
    "VP",
    "Director",
    "Manager",
    "Individual contributor",
)
_SENIORITY_PATTERNS = (
    ("VP", r"\b(vice[\s-]*president|s?e?vp|avp|head\s+of)\b"),
    (
        "C-level",
        r"\b(chief|c[eftomir]o|ciso|founder|co-?founder|president|"
        r"managing\s+director|general\s+manager|managing\s+partner)\b",
    ),
    ("Director", r"\b(director|dir\.?)\b"),
    ("Manager", r"\b(manager|mgr|lead|supervisor)\b"),
)
_FOOTER_RE = re.compile(
    r"^\s*(grand\s+total|sub-?total|total\b|generated\s+(by|on|at)|copyright|©|"
    r"confidential|report\s+generated|filtered\s+by|filters?\s*:)",
    re.IGNORECASE,
)
_SF_ID_RE = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-5]{3})?$")
_SF_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_CURRENCY_RE = re.compile(r"(usd|eur|gbp|chf|inr|brl|\$|€|£|¥|₹|r\$)", re.IGNORECASE)
_SCALE = {"k": 1e3, "m": 1e6, "mm": 1e6, "mn": 1e6, "b": 1e9, "bn": 1e9}
_NUMBER_RE = re.compile(r"^([+-]?)([0-9][0-9.,' ]*|[.,][0-9]+)\s*(k|mm|mn|m|bn|b)?$")
_RANGE_SPLIT_RE = re.compile(r"^(.*?\d.*?)\s*(?:-|–|—|\bto\b)\s*(.*\d.*)$")
_LOWER_OPEN_RE = re.compile(r"^(?:<|under\b|less\s+than\b|below\b|up\s+to\b)\s*(.+)$")
_UPPER_OPEN_RE = re.compile(r"^(.+?)\s*(?:\+|or\s+more|and\s+(?:over|above))$")
_NUMERIC_DATE_RE = re.compile(
    r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})"
    r"((?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?)\s*$"
)
_ABOVE_RE = re.compile(r"^(?:>=?|over\b|more\s+than\b|above\b)\s*(.+)$")


@dataclass(frozen=True)
class Cleaned:
    """The result of a column-level cleaning rule.

    Attributes
    ----------
    values : pandas.Series
        The cleaned values, on the input's index.
    rows : int
        How many rows the rule changed (or, for dates, failed to parse).
    examples : tuple of str
        Up to three distinct raw values that the rule changed.
    """

    values: pd.Series
    rows: int
    examples: tuple[str, ...]


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def is_placeholder(value: object) -> bool:
    """Return True if ``value`` is missing or one of ``PLACEHOLDERS``."""
    if _is_missing(value):
        return True
    return _collapse(str(value)).casefold() in PLACEHOLDERS


def normalize_category(value: object) -> str | None:
    """Clean one categorical value.

    Parameters
    ----------
    value : object
        A raw value (any type).

    Returns
    -------
    str or None
        The value as text, stripped, with inner whitespace collapsed to one
        space; ``None`` when it is missing or a placeholder. Case is kept.

    Examples
    --------
    >>> normalize_category("  Health   Care ")
    'Health Care'
    >>> normalize_category("--None--") is None
    True
    """
    if is_placeholder(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _collapse(str(value))


def category_key(value: object) -> str | None:
    """Return the comparison key of a categorical value.

    The key is :func:`normalize_category` case folded; two values with the
    same key are the same category (``"SaaS "`` and ``"saas"``).
    """
    text = normalize_category(value)
    return None if text is None else text.casefold()


def parse_bool(value: object) -> bool | None:
    """Read a yes/no value.

    Parameters
    ----------
    value : object
        A raw value: ``True``/``False``, a number or text.

    Returns
    -------
    bool or None
        True for ``TRUE_TEXT`` (true, yes, y, 1), False for ``FALSE_TEXT``
        (false, no, n, 0), compared case-insensitively after stripping;
        ``None`` for anything else, including placeholders.
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    key = category_key(value)
    if key in TRUE_TEXT:
        return True
    if key in FALSE_TEXT:
        return False
    return None


def _parse_plain_number(digits: str) -> float | None:
    digits = digits.replace(" ", "").replace("'", "")
    has_comma, has_dot = "," in digits, "." in digits
    if has_comma and has_dot:
        # The separator that comes last is the decimal mark.
        decimal = "," if digits.rfind(",") > digits.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        digits = digits.replace(thousands, "").replace(decimal, ".")
    elif has_comma:
        grouped = re.fullmatch(r"\d{1,3}(,\d{3})+", digits)
        digits = digits.replace(",", "" if grouped else ".")
    elif digits.count(".") > 1:
        digits = digits.replace(".", "")
    try:
        return float(digits)
    except ValueError:
        return None


_SCIENTIFIC_RE = re.compile(r"^[+-]?\d+(\.\d+)?e[+-]?\d+$")


def parse_number_text(value: object) -> float | None:
    """Read a number written as text, including currency amounts.

    Parameters
    ----------
    value : object
        A raw value such as ``1200``, ``"$1,200.50"``, ``"USD 1200"``,
        ``"(350.00)"`` (accounting negative), ``"€1.200,50"`` (decimal
        comma), ``"1.5M"`` or ``"12%"``.

    Returns
    -------
    float or None
        The number; ``None`` when the value is missing, a placeholder, not
        a number or too large to be finite. A percent sign is dropped
        (``"12%"`` is 12.0); scientific notation (``"1.2E+05"``) is read.

    Examples
    --------
    >>> parse_number_text("(1,200.50)")
    -1200.5
    """
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.number) and not _is_missing(value):
        return float(value) if math.isfinite(value) else None
    if is_placeholder(value):
        return None
    text = _collapse(str(value)).casefold()
    if _SCIENTIFIC_RE.match(text):
        # Excel writes large numbers as 1.2E+05; infinity is never a value.
        number = float(text)
        return number if math.isfinite(number) else None
    sign = 1.0
    if text.startswith("(") and text.endswith(")"):
        sign, text = -1.0, text[1:-1]
    text = _CURRENCY_RE.sub("", text).replace("%", "").strip()
    match = _NUMBER_RE.match(text)
    if not match:
        return None
    number = _parse_plain_number(match.group(2))
    if number is None:
        return None
    if match.group(1) == "-":
        sign = -sign
    number = sign * number * _SCALE.get(match.group(3) or "", 1.0)
    return number if math.isfinite(number) else None


def _share_suffix(low: str, high: str) -> str:
    # "1-10M" means 1M to 10M: the lower end borrows a scale it lacks.
    suffix = re.search(r"(k|mm|mn|m|bn|b)\s*$", high, re.IGNORECASE)
    if suffix and not re.search(r"[a-z]\s*$", low, re.IGNORECASE):
        return low + suffix.group(1)
    return low


def parse_range_text(value: object) -> float | None:
    """Read a size or revenue range as one number.

    Parameters
    ----------
    value : object
        A raw value: ``"51-200"`` and ``"$1M-$10M"`` give the midpoint,
        ``"10,001+"`` and ``"over 500"`` the lower bound, ``"<50"`` and
        ``"under 50"`` the midpoint of 0 to 50, and a single number such as
        ``"1K"`` that number.

    Returns
    -------
    float or None
        The number; ``None`` for missing, placeholder or unreadable values.

    Examples
    --------
    >>> parse_range_text("51-200")
    125.5
    """
    if is_placeholder(value):
        return None
    text = _collapse(str(value)).casefold()
    for pattern in (_UPPER_OPEN_RE, _ABOVE_RE):
        match = pattern.match(text)
        if match:
            return parse_number_text(match.group(1))
    match = _LOWER_OPEN_RE.match(text)
    if match:
        upper = parse_number_text(match.group(1))
        return None if upper is None else upper / 2
    match = _RANGE_SPLIT_RE.match(text)
    if match:
        low_text, high_text = match.group(1), match.group(2)
        low = parse_number_text(_share_suffix(low_text, high_text))
        high = parse_number_text(high_text)
        if low is not None and high is not None:
            return (low + high) / 2
    return parse_number_text(text)


def salesforce_id_18(value: str) -> str:
    """Return the 18-character form of a Salesforce id.

    The three suffix characters encode which of the 15 characters are upper
    case: each block of five characters gives a 5-bit number (bit ``i`` set
    when character ``i`` of the block is ``A``-``Z``), used as an index into
    ``A``-``Z0``-``5``. An 18-character id is returned with its first 15
    characters unchanged and its suffix recomputed.

    Examples
    --------
    >>> salesforce_id_18("001A000001D8dXr")
    '001A000001D8dXrIAJ'
    """
    base = value[:15]
    suffix = ""
    for start in range(0, 15, 5):
        block = base[start : start + 5]
        index = sum(1 << i for i, ch in enumerate(block) if "A" <= ch <= "Z")
        suffix += _SF_SUFFIX[index]
    return base + suffix


def map_values(series: pd.Series, func) -> pd.Series:
    """Apply ``func`` to each distinct value once (fast on repetitive columns).

    Missing values are passed to ``func`` too; the result has dtype object.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    results = np.empty(len(uniques) + 1, dtype=object)
    results[:-1] = [func(value) for value in uniques]
    results[-1] = func(None)  # code -1 (missing) picks the last slot
    return pd.Series(results[codes], index=series.index, dtype=object)


def _examples(raw: pd.Series, changed: pd.Series) -> tuple[str, ...]:
    values = raw[changed].dropna().astype(str).unique()[:3]
    return tuple(str(v) for v in values)


def _text_changed(raw: pd.Series, new: pd.Series) -> pd.Series:
    both_missing = raw.isna() & new.isna()
    same = raw.astype(object).eq(new.astype(object)).fillna(False)
    return ~(both_missing | same.astype(bool))


def clean_placeholders(series: pd.Series) -> Cleaned:
    """Read placeholders (``PLACEHOLDERS``) as missing; count real ones.

    Empty text is read as missing too but is not counted as a change.
    """
    placeholder = map_values(series, is_placeholder).astype(bool) & series.notna()
    blank = series.astype(str).str.strip().eq("") & series.notna()
    values = series.where(~placeholder)
    counted = placeholder & ~blank
    return Cleaned(values, int(counted.sum()), _examples(series, counted))


def merge_category_variants(series: pd.Series) -> Cleaned:
    """Merge spellings that differ only in case or spacing.

    Values are stripped and inner whitespace collapsed; values with the same
    :func:`category_key` take the spelling that is most frequent (ties go to
    the alphabetically first). Rows whose spelling changed are counted.
    """
    text = map_values(series, normalize_category)
    keys = map_values(series, category_key)
    counts = text.dropna().value_counts()
    chosen: dict[str, str] = {}
    for spelling, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        chosen.setdefault(spelling.casefold(), spelling)
    values = map_values(keys, lambda k: None if _is_missing(k) else chosen[k])
    values = pd.Series(values, index=series.index, dtype="str")
    changed = _text_changed(text, values)
    return Cleaned(values, int(changed.sum()), _examples(series, changed))


def _clean_by(series: pd.Series, parse) -> Cleaned:
    parsed = map_values(series, parse)
    values = pd.Series(parsed, index=series.index, dtype="float64")
    is_text = map_values(series, lambda v: isinstance(v, str)).astype(bool)
    changed = series.notna() & is_text
    plain = series.astype(str).str.fullmatch(r"\s*-?\d+(\.\d+)?\s*").fillna(False)
    changed = changed & values.notna() & ~plain.astype(bool)
    return Cleaned(values, int(changed.sum()), _examples(series, changed))


def clean_numbers(series: pd.Series) -> Cleaned:
    """Parse a numeric column (currency text allowed); count rewritten texts."""
    return _clean_by(series, parse_number_text)


def clean_ranges(series: pd.Series) -> Cleaned:
    """Parse a range column to midpoints/lower bounds; count rewritten texts."""
    return _clean_by(series, parse_range_text)


def clean_booleans(series: pd.Series) -> Cleaned:
    """Parse yes/no text to 1.0/0.0; count filled values that were unreadable."""
    parsed = map_values(series, parse_bool)
    values = pd.Series(
        [np.nan if v is None else float(v) for v in parsed],
        index=series.index,
        dtype="float64",
    )
    unread = values.isna() & ~map_values(series, is_placeholder).astype(bool)
    return Cleaned(values, int(unread.sum()), _examples(series, unread))


def clean_multi(series: pd.Series, *, separator: str = ";") -> Cleaned:
    """Split multi-valued text, clean each value, dedupe, sort, join with "|".

    Values are merged across case variants within the column. Rows whose
    text changed (other than trimming) are counted.
    """
    parts = series.map(
        lambda v: [] if is_placeholder(v) else str(v).split(separator)
    ).explode()
    merged = merge_category_variants(parts).values.dropna()
    joined = merged.groupby(level=0).agg(lambda s: "|".join(sorted(set(s))))
    values = pd.Series(joined.reindex(series.index), dtype="str")
    changed = _text_changed(series.map(normalize_category).astype(object), values)
    return Cleaned(values, int(changed.sum()), _examples(series, changed))


def _numeric_dates_as_iso(text: pd.Series, *, dayfirst: bool) -> pd.Series:
    # 03/04/2024 (or 03.04.24, 3-4-2024 10:15) rewritten as ISO text in the
    # order the config gives; an impossible date then fails instead of being
    # silently read the other way round.
    parts = text.astype(str).str.extract(_NUMERIC_DATE_RE)
    first, second, year, rest = parts[0], parts[2], parts[3], parts[4].fillna("")
    day, month = (first, second) if dayfirst else (second, first)
    year = year.where(year.str.len() != 2, "20" + year)
    iso = year + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + rest
    return iso.where(parts[0].notna())


def parse_dates(
    series: pd.Series, *, dayfirst: bool = False, date_format: str | None = None
) -> Cleaned:
    """Parse date text; ``rows`` counts filled values that could not be read.

    With ``date_format`` only that format is accepted. Otherwise ISO dates
    (``2024-03-04``, with or without a time) are read first. Numeric dates
    such as ``03/04/2024`` are read day first when ``dayfirst`` is True (3
    April) and month first otherwise (4 March); a value impossible in that
    order (``25/12/2024`` month first) is counted as unparsed, never read
    the other way round. Other texts ("Mar 4, 2024") are read by pandas.
    Time zones are converted to UTC and dropped. Two-digit years are 20xx.
    """
    text = series.where(~map_values(series, is_placeholder).astype(bool))
    if date_format:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce")
    else:
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        numeric = _numeric_dates_as_iso(text, dayfirst=dayfirst)
        rest = parsed.isna() & numeric.notna()
        if rest.any():
            again = pd.to_datetime(
                numeric[rest], format="ISO8601", errors="coerce", utc=True
            )
            parsed = parsed.where(~rest, again)
        rest = parsed.isna() & text.notna() & numeric.isna()
        if rest.any():
            again = pd.to_datetime(
                text[rest], format="mixed", dayfirst=dayfirst, errors="coerce", utc=True
            )
            parsed = parsed.where(~rest, again)
        parsed = parsed.dt.tz_localize(None)
    values = pd.Series(parsed, index=series.index).astype("datetime64[ns]")
    unread = values.isna() & text.notna()
    return Cleaned(values, int(unread.sum()), _examples(series, unread))


def normalize_salesforce_ids(series: pd.Series) -> Cleaned:
    """Rewrite 15-character Salesforce ids to their 18-character form.

    Applied only when every filled value looks like a Salesforce id (15 or
    18 letters and digits), so names and other keys are never touched.
    18-character ids are kept as they are.
    """
    text = map_values(series, normalize_category)
    filled = text.dropna()
    if filled.empty or not filled.map(lambda v: bool(_SF_ID_RE.match(v))).all():
        return Cleaned(series, 0, ())
    values = map_values(
        text, lambda v: v if _is_missing(v) or len(v) == 18 else salesforce_id_18(v)
    )
    values = pd.Series(values, index=series.index, dtype="str")
    changed = _text_changed(text, values)
    return Cleaned(values, int(changed.sum()), _examples(series, changed))


def find_footer_rows(frame: pd.DataFrame, *, id_column: str | None) -> pd.Series:
    """Flag report footer rows and blank rows that CRM exports append.

    A footer row has a cell starting with a marker such as "Total", "Grand
    Total", "Generated by", "Copyright" or "Confidential", and either an
    ``id_column`` that is empty or holds the marker, or, without an id
    column, at most two filled cells. Rows with
    no filled cell at all are flagged too.
    """
    filled = frame.notna() & frame.astype(str).apply(lambda c: c.str.strip().ne(""))
    if id_column is not None and id_column in frame:
        # Report exports often write "Grand Total" into the first (id) column.
        ids = frame[id_column].astype(str)
        candidate = ~filled[id_column] | ids.str.match(_FOOTER_RE).fillna(False)
    else:
        candidate = filled.sum(axis=1) <= 2
    cells = frame[candidate].astype(object)
    marker = cells.map(lambda v: isinstance(v, str) and bool(_FOOTER_RE.match(v)))
    footer = pd.Series(False, index=frame.index)
    footer[candidate] = marker.any(axis=1)
    return footer | ~filled.any(axis=1)


def rank_seniority(title: object) -> str | None:
    """Return the seniority level (``SENIORITY_LEVELS``) a job title shows.

    Keywords are matched as whole words, case-insensitively; a filled title
    that matches no keyword is an individual contributor; a missing title
    gives ``None``. A value that is already a level name keeps that level.
    """
    text = normalize_category(title)
    if text is None:
        return None
    for level in SENIORITY_LEVELS:
        if text.casefold() == level.casefold():
            return level
    for level, pattern in _SENIORITY_PATTERNS:
        if re.search(pattern, text, re.IGNORECASE):
            return level
    return SENIORITY_LEVELS[-1]
