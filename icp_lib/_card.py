"""The points card: its model.json form, validation and scoring.

A :class:`ScoreCard` is what the kit deploys. It holds, per field, the
integer points of each level, bin or indicator, plus what a missing value
and a value never seen in training score. :func:`score_records` applies it
to a table of records; the SQL export applies the same rules in a warehouse,
so the rules below are the contract both follow:

- categorical and boolean: values are compared after stripping, collapsing
  inner spaces and case folding; placeholders and NA score
  ``missing_points``; a value no level lists scores ``other_points``;
- numeric and range: a value ``v`` falls in the bin with
  ``lower <= v < upper`` (``None`` is unbounded); NA scores
  ``missing_points``;
- multi: the text is split on ``separator``; each indicator value present
  adds its points; no value at all scores ``missing_points``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import _clean
from ._files import write_text_atomic
from .errors import ModelError

__all__ = [
    "SCHEMA_VERSION",
    "CARD_KINDS",
    "GRADE_LETTERS",
    "CardLevel",
    "CardBin",
    "CardIndicator",
    "CardField",
    "ScoreCard",
    "score_records",
    "points_by_field",
    "assign_grades",
]

SCHEMA_VERSION = 1
CARD_KINDS = ("categorical", "numeric", "range", "boolean", "multi")
GRADE_LETTERS = ("A", "B", "C")
_REQUIRED_KEYS = ("schema_version", "max_score", "fields", "verdict")
_REFIT = "refit the model with notebook 02 (make quarterly) to get a valid file"


@dataclass(frozen=True)
class CardLevel:
    """Values of a categorical or boolean field that share their points."""

    values: tuple[Any, ...]
    label: str
    points: int
    records: int | None = None
    conversion: float | None = None


@dataclass(frozen=True)
class CardBin:
    """A numeric interval ``lower <= v < upper`` (``None``: unbounded)."""

    lower: float | None
    upper: float | None
    label: str
    points: int
    records: int | None = None
    conversion: float | None = None


@dataclass(frozen=True)
class CardIndicator:
    """One value of a multi-valued field; present adds ``points``."""

    value: str
    points: int
    records: int | None = None
    conversion: float | None = None


@dataclass(frozen=True)
class CardField:
    """The points of one field of the card."""

    name: str
    label: str
    kind: str
    levels: tuple[CardLevel, ...] = ()
    bins: tuple[CardBin, ...] = ()
    indicators: tuple[CardIndicator, ...] = ()
    separator: str = "|"
    source_separator: str | None = None
    valid_range: tuple[float | None, float | None] | None = None
    other_points: int = 0
    missing_points: int = 0
    missing_records: int | None = None
    missing_conversion: float | None = None

    def max_points(self) -> int:
        """Return the most points any value of this field can earn."""
        if self.kind == "multi":
            present = sum(i.points for i in self.indicators)
            return max(present, self.missing_points)
        items = self.bins if self.kind in ("numeric", "range") else self.levels
        best = max((i.points for i in items), default=0)
        other = 0 if self.kind in ("numeric", "range") else self.other_points
        return max(best, other, self.missing_points)


@dataclass(frozen=True)
class ScoreCard:
    """A fitted points card, as stored in model.json (schema version 1).

    Build one with :meth:`from_json` or :meth:`read`; :func:`fit_model`
    returns one as ``ModelFit.card``. Everything except ``fields`` is kept
    as plain JSON values.
    """

    fields: tuple[CardField, ...]
    max_score: int = 100
    verdict: Mapping[str, Any] = field(default_factory=dict)
    grades: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Whether the fit judged the card usable."""
        return bool(self.verdict.get("usable", False))

    @property
    def model_id(self) -> str:
        """The model's id (client, segment, quarter and content hash)."""
        return str(self.meta.get("model_id", ""))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScoreCard:
        """Build a card from a model.json mapping, checking its structure.

        Parameters
        ----------
        data : mapping
            The parsed content of a model.json file.

        Returns
        -------
        ScoreCard

        Raises
        ------
        ModelError
            If the schema version is not 1 or the content breaks the schema
            (missing keys, negative or fractional points, unsorted bins, an
            ideal record that does not score ``max_score``). The message
            names the first problem found.
        """
        return _card_from_json(data)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ScoreCard:
        """Read and validate a model.json file.

        Parameters
        ----------
        path : str or path-like
            The model file.

        Returns
        -------
        ScoreCard

        Raises
        ------
        ModelError
            If the file is missing, is not JSON or is not a valid model.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelError(
                f"model file {path} not found; run notebook 02 (make quarterly) "
                "to create it, or pass the path of an existing model.json"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            msg = f"model file {path} is not valid JSON ({exc}); {_REFIT}"
            raise ModelError(msg) from None
        try:
            return cls.from_json(data)
        except ModelError as exc:
            raise ModelError(f"model file {path}: {exc}") from None

    def to_json_dict(self) -> dict[str, Any]:
        """Return the model.json content as plain JSON values."""
        out = {"schema_version": SCHEMA_VERSION, **copy.deepcopy(dict(self.meta))}
        out["max_score"] = self.max_score
        out["fields"] = [_field_to_json(f) for f in self.fields]
        out["verdict"] = copy.deepcopy(dict(self.verdict))
        out["grades"] = copy.deepcopy(dict(self.grades)) if self.grades else None
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write model.json atomically (temporary file, then rename).

        Parameters
        ----------
        path : str or path-like
            Destination file; its folder is created when missing.

        Returns
        -------
        Path
            The path written.
        """
        text = json.dumps(self.to_json_dict(), indent=2, ensure_ascii=False)
        return write_text_atomic(Path(path), text + "\n")

    def with_grades(self, grades: Mapping[str, Any] | None) -> ScoreCard:
        """Return a copy of the card with ``grades`` set (validated).

        Parameters
        ----------
        grades : mapping or None
            ``{"method": ..., "cuts": {"A": int, "B": int, "C": int},
            "not_for_deployment": bool, "expected": {...}}``.

        Raises
        ------
        ModelError
            If the cuts are missing, not integers or do not fall A > B > C.
        """
        if grades is not None:
            _check_grades(grades, self.max_score)
        return replace(self, grades=copy.deepcopy(dict(grades)) if grades else None)

    def ideal_score(self) -> int:
        """Return the score of the ideal record (``max_score`` when fitted)."""
        return sum(f.max_points() for f in self.fields)

    def card_frame(self) -> pd.DataFrame:
        """Return the card as a table: field, value, points, records, conversion.

        Rows for "other / never seen" and "missing" are included so that the
        table says what every possible value scores.
        """
        rows = [row for f in self.fields for row in _field_rows(f)]
        cols = ["field", "value", "points", "records", "conversion"]
        frame = pd.DataFrame(rows, columns=cols)
        return frame.astype({"points": "int64", "records": "Int64"})


# --- JSON -> card -------------------------------------------------------------


def _card_from_json(data: Mapping[str, Any]) -> ScoreCard:
    if not isinstance(data, Mapping):
        raise ModelError(f"a model must be a JSON object; found {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelError(
            f"schema_version is {version!r} but this kit reads model files of "
            f"schema_version {SCHEMA_VERSION}; {_REFIT} with this kit version"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise ModelError(f"required keys missing: {missing}; {_REFIT}")
    max_score = _int_at(data["max_score"], "max_score", minimum=1)
    fields = _fields_from_json(data["fields"])
    card = ScoreCard(
        fields=fields,
        max_score=max_score,
        verdict=_verdict_from_json(data["verdict"]),
        meta={k: v for k, v in data.items() if k not in _CARD_KEYS},
    )
    _check_ideal(card)
    grades = data.get("grades")
    return card.with_grades(grades) if grades else card


_CARD_KEYS = {"schema_version", "max_score", "fields", "verdict", "grades"}


def _fields_from_json(raw: Any) -> tuple[CardField, ...]:
    if not isinstance(raw, list):
        raise ModelError(f"'fields' must be a list; found {type(raw).__name__}")
    fields = tuple(_field_from_json(f, i) for i, f in enumerate(raw))
    names = [f.name for f in fields]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelError(f"field names must be unique; repeated: {dup}; {_REFIT}")
    return fields


def _range_from_json(raw: Any, where: str):
    if raw is None:
        return None
    ok = isinstance(raw, list | tuple) and len(raw) == 2
    if not ok or not all(v is None or _is_plain_number(v) for v in raw):
        raise ModelError(
            f"{where} valid_range must be [low, high] (numbers or null); "
            f"found {raw!r}; {_REFIT}"
        )
    return (raw[0], raw[1])


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field_from_json(raw: Any, i: int) -> CardField:
    where = f"fields[{i}]"
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise ModelError(f"{where} must be an object with a 'name'; {_REFIT}")
    where = f"field '{raw['name']}'"
    kind = raw.get("kind")
    if kind not in CARD_KINDS:
        raise ModelError(
            f"{where} has kind {kind!r}; allowed: {', '.join(CARD_KINDS)}; {_REFIT}"
        )
    base = {
        "name": raw["name"],
        "label": str(raw.get("label") or raw["name"]),
        "kind": kind,
        "missing_points": _int_at(raw.get("missing_points"), f"{where} missing_points"),
        "missing_records": raw.get("missing_records"),
        "missing_conversion": raw.get("missing_conversion"),
    }
    if kind in ("numeric", "range"):
        bins = _bins_from_json(raw.get("bins"), where)
        limits = _range_from_json(raw.get("valid_range"), where)
        return CardField(**base, bins=bins, valid_range=limits)
    if kind == "multi":
        sep = raw.get("separator")
        if not isinstance(sep, str) or not sep:
            raise ModelError(f"{where} needs a non-empty 'separator'; {_REFIT}")
        inds = _items(raw, "indicators", where, _indicator_from_json)
        source_sep = raw.get("source_separator")
        return CardField(
            **base, indicators=inds, separator=sep, source_separator=source_sep
        )
    other = _int_at(raw.get("other_points"), f"{where} other_points")
    levels = _items(raw, "levels", where, _level_from_json)
    _check_levels_disjoint(levels, where, kind)
    return CardField(**base, levels=levels, other_points=other)


def _items(raw: Mapping, key: str, where: str, build) -> tuple:
    items = raw.get(key)
    if not isinstance(items, list) or not items:
        raise ModelError(f"{where} needs a non-empty list '{key}'; {_REFIT}")
    return tuple(build(item, f"{where} {key}[{j}]") for j, item in enumerate(items))


def _level_from_json(raw: Any, where: str) -> CardLevel:
    values = raw.get("values") if isinstance(raw, Mapping) else None
    if not isinstance(values, list) or not values:
        raise ModelError(f"{where} needs a non-empty list 'values'; {_REFIT}")
    label = raw.get("label") or ", ".join(str(v) for v in values)
    return CardLevel(
        values=tuple(values),
        label=str(label),
        points=_int_at(raw.get("points"), f"{where} points"),
        records=raw.get("records"),
        conversion=raw.get("conversion"),
    )


def _bins_from_json(raw: Any, where: str) -> tuple[CardBin, ...]:
    if not isinstance(raw, list) or not raw:
        raise ModelError(f"{where} needs a non-empty list 'bins'; {_REFIT}")
    bins = tuple(_bin_from_json(b, f"{where} bins[{j}]") for j, b in enumerate(raw))
    if bins[0].lower is not None or bins[-1].upper is not None:
        raise ModelError(
            f"{where}: the first bin must have lower null and the last bin upper "
            f"null, so that every number falls in a bin; {_REFIT}"
        )
    for a, b in zip(bins, bins[1:], strict=False):
        if a.upper is None or a.upper != b.lower:
            raise ModelError(
                f"{where}: bins must be sorted and touch (upper of one = lower of "
                f"the next); found {a.label!r} then {b.label!r}; {_REFIT}"
            )
    return bins


def _bin_from_json(raw: Any, where: str) -> CardBin:
    if not isinstance(raw, Mapping):
        raise ModelError(f"{where} must be an object; {_REFIT}")
    lower, upper = (_bound_at(raw.get(k), f"{where} {k}") for k in ("lower", "upper"))
    if lower is not None and upper is not None and not lower < upper:
        raise ModelError(f"{where}: lower {lower} must be below upper {upper}")
    return CardBin(
        lower=lower,
        upper=upper,
        label=str(raw.get("label") or f"{lower} to {upper}"),
        points=_int_at(raw.get("points"), f"{where} points"),
        records=raw.get("records"),
        conversion=raw.get("conversion"),
    )


def _indicator_from_json(raw: Any, where: str) -> CardIndicator:
    value = raw.get("value") if isinstance(raw, Mapping) else None
    if not isinstance(value, str) or not value.strip():
        raise ModelError(f"{where} needs a text 'value'; {_REFIT}")
    return CardIndicator(
        value=value,
        points=_int_at(raw.get("points"), f"{where} points"),
        records=raw.get("records"),
        conversion=raw.get("conversion"),
    )


def _int_at(value: Any, where: str, *, minimum: int = 0) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < minimum:
        raise ModelError(
            f"{where} must be a whole number >= {minimum}; found {value!r}; {_REFIT}"
        )
    return value


def _bound_at(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(f"{where} must be a number or null; found {value!r}")
    if not np.isfinite(value):
        raise ModelError(f"{where} must be finite; found {value!r}")
    return float(value)


def _check_levels_disjoint(levels: tuple[CardLevel, ...], where: str, kind: str):
    seen: dict[Any, str] = {}
    for level in levels:
        for v in level.values:
            key = _level_key(v, kind)
            if key is None:
                raise ModelError(f"{where}: level value {v!r} is not valid for {kind}")
            if key in seen:
                raise ModelError(
                    f"{where}: value {v!r} is listed in two levels "
                    f"({seen[key]!r} and {level.label!r}); {_REFIT}"
                )
            seen[key] = level.label


def _verdict_from_json(raw: Any) -> dict[str, Any]:
    ok = isinstance(raw, Mapping) and isinstance(raw.get("usable"), bool)
    if not ok or not isinstance(raw.get("reasons", []), list):
        raise ModelError(
            "'verdict' must be an object {usable: true|false, reasons: [...]}; "
            f"found {raw!r}; {_REFIT}"
        )
    return copy.deepcopy(dict(raw))


def _check_ideal(card: ScoreCard) -> None:
    if not card.fields:
        return
    ideal = card.ideal_score()
    if ideal != card.max_score:
        raise ModelError(
            f"the ideal record scores {ideal} but max_score is {card.max_score}; "
            f"the points were edited into an inconsistent state; {_REFIT}"
        )


def _check_grades(grades: Mapping[str, Any], max_score: int) -> None:
    cuts = grades.get("cuts") if isinstance(grades, Mapping) else None
    if not isinstance(cuts, Mapping) or set(cuts) != set(GRADE_LETTERS):
        raise ModelError(
            f"grades need 'cuts' for {', '.join(GRADE_LETTERS)}; found {cuts!r}"
        )
    vals = [_int_at(cuts[g], f"grades cut {g}") for g in GRADE_LETTERS]
    if not max_score >= vals[0] > vals[1] > vals[2]:
        raise ModelError(
            f"grade cuts must fall, {max_score} >= A > B > C; found "
            f"A={vals[0]}, B={vals[1]}, C={vals[2]}"
        )


# --- card -> JSON and table ---------------------------------------------------


def _stats(records: int | None, conversion: float | None) -> dict[str, Any]:
    conv = None if conversion is None or pd.isna(conversion) else float(conversion)
    return {"records": records, "conversion": conv}


def _field_to_json(f: CardField) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "label": f.label, "kind": f.kind}
    if f.kind in ("numeric", "range"):
        out["bins"] = [
            {"lower": b.lower, "upper": b.upper, "label": b.label, "points": b.points}
            | _stats(b.records, b.conversion)
            for b in f.bins
        ]
        if f.valid_range is not None:
            out["valid_range"] = list(f.valid_range)
    elif f.kind == "multi":
        out["separator"] = f.separator
        if f.source_separator:
            out["source_separator"] = f.source_separator
        out["indicators"] = [
            {"value": i.value, "points": i.points} | _stats(i.records, i.conversion)
            for i in f.indicators
        ]
    else:
        out["levels"] = [
            {"values": list(lv.values), "label": lv.label, "points": lv.points}
            | _stats(lv.records, lv.conversion)
            for lv in f.levels
        ]
        out["other_points"] = f.other_points
    out["missing_points"] = f.missing_points
    missing = _stats(f.missing_records, f.missing_conversion)
    out |= {f"missing_{k}": v for k, v in missing.items()}
    return out


def _field_rows(f: CardField) -> list[tuple]:
    if f.kind in ("numeric", "range"):
        items = [(b.label, b.points, b.records, b.conversion) for b in f.bins]
    elif f.kind == "multi":
        items = [
            (f"has {i.value}", i.points, i.records, i.conversion) for i in f.indicators
        ]
        items.append(("none of these", 0, None, None))
    else:
        items = [(lv.label, lv.points, lv.records, lv.conversion) for lv in f.levels]
        items.append(("other or never seen", f.other_points, None, None))
    items.append(("missing", f.missing_points, f.missing_records, f.missing_conversion))
    return [(f.label, *item) for item in items]


# --- value cleaning (the scoring contract) ------------------------------------


def normalize_text(value: Any) -> str | None:
    """Return the comparison key of a categorical value, None when missing.

    Spaces are stripped and collapsed and case is folded; placeholders such
    as "Select" or "--None--" count as missing (the data layer's rules).
    """
    return _clean.category_key(value)


def parse_bool_value(value: Any) -> bool | None:
    """Return True/False for yes/no-like values, None for anything else."""
    return _clean.parse_bool(value)


def parse_number_value(value: Any, *, kind: str = "numeric") -> float:
    """Return a number from a value or text such as "$1,200" or "51-200".

    ``kind`` "range" reads ranges as their midpoint (open ranges such as
    "10,001+" as their lower bound), as the data layer does in training.
    """
    parse = _clean.parse_range_text if kind == "range" else _clean.parse_number_text
    if isinstance(value, int | float | np.number) and not pd.isna(value):
        return float(value)
    parsed = parse(value)
    return float("nan") if parsed is None else float(parsed)


# --- scoring ------------------------------------------------------------------


def score_records(
    card: ScoreCard,
    frame: pd.DataFrame,
    *,
    top_reasons: int = 3,
    id_column: str = "record_id",
) -> pd.DataFrame:
    """Score records with a points card.

    Parameters
    ----------
    card : ScoreCard
        The card to apply.
    frame : DataFrame
        One row per record, with ``id_column`` and one column per card field
        (canonical names). Values may be cleaned (as in the modeling table)
        or raw text: numbers such as ``"$1,200"`` or ``"51-200"`` and yes/no
        text are cleaned the same way as in training.
    top_reasons : int, default 3
        How many contributing values to list per record.
    id_column : str, default "record_id"
        The column that identifies records.

    Returns
    -------
    DataFrame
        ``record_id``, ``score`` (int), ``grade`` (A-D, NA when the card has
        no grades yet) and ``reasons`` (list of ``"Label: value (+points)"``
        strings, largest first; zero-point values are not reasons).

    Raises
    ------
    ModelError
        If ``id_column`` or a field of the card is missing from ``frame``.

    Examples
    --------
    >>> scores = score_records(ScoreCard.read("model.json"), records)
    """
    _check_columns(card, frame, id_column)
    parts = [_field_points(f, frame[f.name]) for f in card.fields]
    points = [p for p, _ in parts]
    total = np.sum(points, axis=0) if points else np.zeros(len(frame), "int64")
    reasons = _top_reasons(card, parts, len(frame), top_reasons)
    out = pd.DataFrame(
        {
            "record_id": frame[id_column].astype("str").to_numpy(),
            "score": np.asarray(total, dtype="int64"),
        }
    )
    return out.assign(grade=assign_grades(out["score"], card.grades), reasons=reasons)


def assign_grades(scores: pd.Series, grades: Mapping[str, Any] | None) -> pd.Series:
    """Return the grade letter of each score (NA when ``grades`` is None)."""
    if not grades:
        return pd.Series(pd.NA, index=scores.index, dtype="str")
    cuts = grades["cuts"]
    letters = np.select(
        [scores >= cuts["A"], scores >= cuts["B"], scores >= cuts["C"]],
        ["A", "B", "C"],
        default="D",
    )
    return pd.Series(letters, index=scores.index, dtype="str")


def _check_columns(card: ScoreCard, frame: pd.DataFrame, id_column: str | None):
    needed = [id_column] if id_column else []
    needed += [f.name for f in card.fields]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, list(frame.columns)[:30]))
        raise ModelError(
            f"the records to score lack column(s) {missing} that the model needs; "
            f"columns present: {shown}; add or rename the columns (the model's "
            "field names are the canonical names of the config)"
        )


def _field_points(f: CardField, values: pd.Series) -> tuple[np.ndarray, list]:
    """Return points per record and the text each value is shown as."""
    if f.kind in ("numeric", "range"):
        return _numeric_points(f, values)
    if f.kind == "multi":
        return _multi_points(f, values)
    return _level_points(f, values)


def _level_key(value: Any, kind: str) -> Any:
    if kind == "boolean":
        return parse_bool_value(value)
    return normalize_text(value)


def _level_points(f: CardField, values: pd.Series) -> tuple[np.ndarray, list]:
    lookup = {
        _level_key(v, f.kind): (lv.points, lv.label)
        for lv in f.levels
        for v in lv.values
    }

    def one(raw):
        key = _level_key(raw, f.kind)
        if key is None:
            return f.missing_points, "missing"
        return lookup.get(key, (f.other_points, " ".join(str(raw).split())))

    pairs = _per_distinct(values, one)
    return np.array([p for p, _ in pairs], dtype="int64"), [s for _, s in pairs]


def _numeric_points(f: CardField, values: pd.Series) -> tuple[np.ndarray, list]:
    nums = _per_distinct(values, lambda v: parse_number_value(v, kind=f.kind))
    nums = np.asarray(nums, dtype="float64")
    if f.valid_range is not None:
        # Out-of-range values are read as missing, as in training.
        low, high = (np.nan if v is None else v for v in f.valid_range)
        with np.errstate(invalid="ignore"):
            nums = np.where((nums < low) | (nums > high), np.nan, nums)
    uppers = np.array([np.inf if b.upper is None else b.upper for b in f.bins[:-1]])
    idx = np.searchsorted(uppers, nums, side="right")
    bin_pts = np.array([b.points for b in f.bins], dtype="int64")
    labels = [b.label for b in f.bins]
    missing = np.isnan(nums)
    safe = np.where(missing, 0, idx)
    pts = np.where(missing, f.missing_points, bin_pts[safe])
    shown = ["missing" if m else labels[i] for m, i in zip(missing, safe, strict=True)]
    return pts.astype("int64"), shown


def _multi_points(f: CardField, values: pd.Series) -> tuple[np.ndarray, list]:
    wanted = {normalize_text(i.value): i for i in f.indicators}

    def one(raw):
        items = _split_multi(raw, f.separator)
        if not items:
            return f.missing_points, "missing"
        hits = [wanted[k] for k in dict.fromkeys(items) if k in wanted]
        return sum(i.points for i in hits), ", ".join(i.value for i in hits)

    pairs = _per_distinct(values, one)
    return np.array([p for p, _ in pairs], dtype="int64"), [s for _, s in pairs]


def _per_distinct(values: pd.Series, func) -> list:
    """Apply ``func`` once per distinct value; return one result per row."""
    raw = values.astype("object")
    raw = raw.where(raw.notna(), None).tolist()
    done: dict = {}
    out = []
    for v in raw:
        key = (type(v), v)
        if key not in done:
            done[key] = func(v)
        out.append(done[key])
    return out


def _split_multi(raw: Any, separator: str) -> list[str]:
    if raw is None or (not isinstance(raw, str) and pd.isna(raw)):
        return []
    keys = (normalize_text(part) for part in str(raw).split(separator))
    return [k for k in keys if k is not None]


def _top_reasons(card: ScoreCard, parts: list, n: int, top: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(n)]
    if top <= 0 or not card.fields:
        return out
    for row in range(n):
        items = [
            (int(pts[row]), f"{f.label}: {shown[row]} (+{int(pts[row])})")
            for f, (pts, shown) in zip(card.fields, parts, strict=True)
            if pts[row] > 0
        ]
        items.sort(key=lambda t: -t[0])
        out[row] = [text for _, text in items[:top]]
    return out


def points_by_field(card: ScoreCard, frame: pd.DataFrame) -> pd.DataFrame:
    """Return each record's points per card field (columns: field names)."""
    _check_columns(card, frame, None)
    cols = {f.name: _field_points(f, frame[f.name])[0] for f in card.fields}
    return pd.DataFrame(cols, index=frame.index, dtype="int64")
