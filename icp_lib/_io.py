"""Read one configured source into a text DataFrame of canonical columns.

Every format is read as text (missing cells as NA) so that the cleaning
rules in :mod:`icp_lib._clean` see the raw values. Only the columns the
config maps are kept, renamed to their canonical names. Inputs are opened
read-only; nothing is written next to them.

Formats: CSV/TSV (encoding and delimiter detected), Excel (sheet =
``table``), Parquet and DuckDB files (through DuckDB), a DuckDB query over
the files of a folder (``path`` is the folder, relative file names in the
query resolve inside it), and a SQL query over a SQLAlchemy URL.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DATA_DIR_ENV, SourceConfig
from .errors import DataError

__all__ = ["SourceData", "read_source", "fingerprint_file", "decode_bytes"]

logger = logging.getLogger(__name__)

DELIMITERS = ",;\t|"
_SEP_HINT_RE = re.compile(r"^sep=(.)\r?\n")
SNIFF_BYTES = 64_000
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".duckdb": "duckdb",
    ".ddb": "duckdb",
    ".db": "duckdb",
}


@dataclass(frozen=True)
class SourceData:
    """A source read as text.

    Attributes
    ----------
    frame : pandas.DataFrame
        The mapped columns under their canonical names, all text.
    fingerprint : str
        ``"sha256:<hex>"`` of the file bytes (of the query text for SQL).
    label : str
        The file or URL, for messages.
    encoding : str or None
        The text encoding used (CSV/TSV only).
    duplicated : numpy.ndarray or None
        Per row of ``frame``: True when the row repeats an earlier row in
        every column of the source, mapped or not.
    """

    frame: pd.DataFrame
    fingerprint: str
    label: str
    encoding: str | None = None
    duplicated: np.ndarray | None = None


def fingerprint_file(path: Path) -> str:
    """Return ``"sha256:<hex>"`` of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _fingerprint_text(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def decode_bytes(raw: bytes, *, encoding: str = "auto") -> tuple[str, str]:
    """Decode file bytes, detecting the encoding when ``encoding`` is "auto".

    A UTF-8 or UTF-16 byte-order mark wins, then strict UTF-8, then the
    best guess of charset-normalizer (cp1252 and other Windows encodings).

    Returns
    -------
    tuple of (str, str)
        The text and the name of the encoding used.
    """
    if encoding != "auto":
        return raw.decode(encoding), encoding
    if raw.startswith(codecs.BOM_UTF8):
        return raw.decode("utf-8-sig"), "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export: UTF-16 with a byte-order mark.
        return raw.decode("utf-16"), "utf-16"
    for name in ("utf-8", "cp1252"):
        # Windows CRM exports are cp1252; a detector can mistake short
        # Western text for a Central European code page, so cp1252 is tried
        # first whenever every byte of the file is valid in it.
        try:
            return raw.decode(name), name
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(raw, cp_isolation=["cp1252", "latin_1", "cp1250", "utf_16"])
    match = best.best()
    name = match.encoding if match is not None else "cp1252"
    return raw.decode(name, errors="replace"), name


def _sniff_delimiter(text: str, *, default: str) -> str:
    sample = text[:SNIFF_BYTES]
    # Cut the sample at a line end so the sniffer sees whole rows.
    sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else default


def _read_delimited(path: Path, source: SourceConfig, fmt: str) -> tuple:
    text, encoding = decode_bytes(path.read_bytes(), encoding=source.encoding)
    default = "\t" if fmt == "tsv" else ","
    hint = _SEP_HINT_RE.match(text)
    if hint:
        # Excel writes "sep=;" as a first line to say which delimiter it used.
        text = text[hint.end() :]
    if source.delimiter == "auto" and hint:
        delimiter = hint.group(1)
    elif source.delimiter != "auto":
        delimiter = source.delimiter.replace("\\t", "\t")
    else:
        delimiter = _sniff_delimiter(text, default=default)
    frame = pd.read_csv(
        io.StringIO(text),
        sep=delimiter,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skip_blank_lines=True,
    )
    logger.info("read %s as %s, delimiter %r", path, encoding, delimiter)
    return frame, encoding


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    def to_text(column: pd.Series) -> pd.Series:
        if pd.api.types.is_datetime64_any_dtype(column):
            column = column.dt.strftime("%Y-%m-%d %H:%M:%S")
        return column.astype("str")

    return frame.apply(to_text) if len(frame.columns) else frame


def _duckdb_query(path: Path, source: SourceConfig) -> pd.DataFrame:
    import duckdb

    if path.is_dir():
        con = duckdb.connect(":memory:")
        con.execute("SET file_search_path = ?", [str(path)])
    else:
        con = duckdb.connect(str(path), read_only=True)
    try:
        if source.query:
            return con.sql(source.query).df()
        if source.table:
            return con.table(source.table).df()
        if path.is_dir():
            raise DataError(
                f"source {path} is a folder: format 'duckdb' needs a 'query' "
                "that reads files inside it"
            )
        tables = [row[0] for row in con.sql("SHOW TABLES").fetchall()]
        if len(tables) != 1:
            raise DataError(
                f"DuckDB file {path} holds tables {tables}; set 'table' or 'query' "
                "in the source config"
            )
        return con.table(tables[0]).df()
    except duckdb.Error as exc:
        raise DataError(f"DuckDB could not read {path}: {exc}") from None
    finally:
        con.close()


def _read_parquet(path: Path) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(":memory:") as con:
        return con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()


def _read_sql(source: SourceConfig) -> pd.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(source.url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(source.query), conn)
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(f"SQL source could not be read: {exc}") from None
    finally:
        engine.dispose()


def detect_format(source: SourceConfig, path: Path | None) -> str:
    """Return the source format, from the config or the file suffix."""
    if source.format != "auto":
        return source.format
    if path is not None and path.is_dir():
        return "duckdb"
    suffix = path.suffix.lower() if path is not None else ""
    return _SUFFIX_FORMATS.get(suffix, "csv")


def _read_raw(source: SourceConfig, path: Path | None, fmt: str) -> tuple:
    if fmt == "sql":
        return _read_sql(source), _fingerprint_text(source.query or ""), None
    if fmt in ("csv", "tsv"):
        frame, encoding = _read_delimited(path, source, fmt)
        return frame, fingerprint_file(path), encoding
    if fmt == "excel":
        frame = pd.read_excel(
            path,
            sheet_name=source.table or 0,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
        )
        return frame, fingerprint_file(path), None
    if fmt == "parquet":
        return _read_parquet(path), fingerprint_file(path), None
    return _duckdb_query(path, source), _fingerprint_duckdb(path, source), None


def _fingerprint_duckdb(path: Path, source: SourceConfig) -> str:
    if not path.is_dir():
        return fingerprint_file(path)
    # A query over a folder: hash the query and the files it names.
    query = source.query or ""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name in query)
    parts = [query] + [f"{p.name}={fingerprint_file(p)}" for p in files]
    return _fingerprint_text(*parts)


def _check_exists(path: Path, role: str) -> None:
    if not path.exists():
        raise DataError(
            f"{role} source {path.resolve()} not found; relative paths resolve "
            f"against the config's data_dir, else the {DATA_DIR_ENV} "
            "environment variable, else ../shared/data (from the current "
            "folder). Set data_dir or ICP_DATA_DIR to the folder holding the data."
        )


def _select_mapped(frame: pd.DataFrame, source: SourceConfig, *, label: str, role):
    frame = frame.rename(columns=lambda c: str(c).strip().lstrip("\ufeff"))
    present = list(frame.columns)
    for canonical, column in source.columns.items():
        if column not in frame.columns:
            close = difflib.get_close_matches(column, present, n=1, cutoff=0.75)
            maybe = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"column {column!r} not found in {role} source {label}; the "
                f"config maps {canonical} to it; columns present: {present}."
                f"{maybe} Fix the mapping under sources.{role}.columns."
            )
    selected = {canon: frame[col] for canon, col in source.columns.items()}
    return pd.DataFrame(selected, index=frame.index).reset_index(drop=True)


def read_source(
    source: SourceConfig, *, role: str, path: Path | None = None
) -> SourceData:
    """Read one source as text, keeping only its mapped columns.

    Parameters
    ----------
    source : SourceConfig
        The source section of the config.
    role : str
        The source role (``"opportunities"``, ``"accounts"``, ...), for
        messages.
    path : Path, optional
        The resolved file or folder (``Config.source_path(role)``); not used
        for format ``sql``.

    Returns
    -------
    SourceData
        The text frame with canonical column names, the sha256 fingerprint
        and the encoding used.

    Raises
    ------
    DataError
        If the file is missing or unreadable, or a mapped column is absent.
    """
    fmt = detect_format(source, path)
    if fmt != "sql":
        _check_exists(path, role)
    label = source.url.split("@")[-1] if fmt == "sql" else str(path)
    try:
        raw, fingerprint, encoding = _read_raw(source, path, fmt)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{role} source {label} could not be read: {exc}") from None
    except ImportError as exc:
        raise DataError(
            f"{role} source {label} needs a package that is not installed "
            f"({exc}); save it as .xlsx, .csv or .parquet instead"
        ) from None
    frame = _select_mapped(raw, source, label=label, role=role)
    duplicated = raw.duplicated().to_numpy()
    return SourceData(_as_text(frame), fingerprint, label, encoding, duplicated)
