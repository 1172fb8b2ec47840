"""Client configuration: one YAML file per client, validated when loaded.

A config says where the data is, how the client's columns map to the kit's
canonical names, what counts as won, lost and qualified, which fields are
candidates for the ICP score, and how records split into segments. It is read
with ``yaml.safe_load`` and validated by pydantic: nothing in it is ever run as
code. Every key is documented in ``params/README.md``; ``params/demo.yaml`` is
the worked example.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

__all__ = [
    "Config",
    "FieldConfig",
    "Segment",
    "SourceConfig",
    "load_config",
    "resolve_data_dir",
    "FIELD_KINDS",
    "SOURCE_FORMATS",
    "UNITS",
    "DATA_DIR_ENV",
]

FIELD_KINDS = ("categorical", "numeric", "range", "multi", "boolean")
SOURCE_FORMATS = ("auto", "csv", "tsv", "excel", "parquet", "duckdb", "sql")
UNITS = ("opportunity", "account", "lead")
SOURCE_ROLES = (
    "opportunities",
    "accounts",
    "contacts",
    "outcomes",
    "history",
    "feedback",
)
DATA_DIR_ENV = "ICP_DATA_DIR"
RESERVED_SEGMENT_NAMES = {"index.html", "manifest.json", "_table"}
DEFAULT_DATA_DIR = "../shared/data"

Scalar = str | int | float | bool


class _Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One table the kit reads.

    ``columns`` maps canonical names (keys) to the client's column names
    (values). Only mapped columns are read, under their canonical names.
    """

    path: str | None = None
    format: Literal[SOURCE_FORMATS] = "auto"  # type: ignore[valid-type]
    table: str | None = None  # DuckDB table or Excel sheet
    query: str | None = None  # SQL query, for format sql or duckdb
    url: str | None = None  # SQLAlchemy URL, for format sql
    encoding: str = "auto"
    delimiter: str = "auto"
    dayfirst: bool = False
    date_format: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_location(self) -> SourceConfig:
        if self.format == "sql":
            if not (self.url and self.query):
                raise ValueError("format 'sql' needs both 'url' and 'query'")
        elif not self.path:
            raise ValueError("needs 'path' (or format 'sql' with 'url' and 'query')")
        return self


class JoinConfig(_Strict):
    """How opportunities find their account.

    ``account_key`` is the canonical column present in both the
    opportunities and the accounts source. With ``normalize_ids`` the
    15-character form of a Salesforce id is matched to its 18-character form.
    """

    account_key: str = "account_id"
    normalize_ids: bool = True


class OutcomeConfig(_Strict):
    """Which stage values mean won, lost, open and qualified.

    With ``rule: stage`` (the default) the ``stage`` column is compared to
    the lists below; values in none of them follow ``unlisted``. With
    ``rule: filled`` a record is won when ``column`` is filled and lost when
    it is empty (for lead lists joined to a closed-deals table).
    """

    rule: Literal["stage", "filled"] = "stage"
    column: str = "stage"
    won: list[Scalar] = Field(default_factory=list)
    lost: list[Scalar] = Field(default_factory=list)
    open: list[Scalar] = Field(default_factory=list)
    qualified: list[Scalar] = Field(default_factory=list)
    unlisted: Literal["error", "open", "lost"] = "error"

    @model_validator(mode="after")
    def _check_lists(self) -> OutcomeConfig:
        if self.rule == "stage":
            if not self.won:
                raise ValueError("'won' must list at least one stage value")
            if not self.lost and self.unlisted != "lost":
                raise ValueError(
                    "'lost' must list at least one stage value (or set unlisted: lost)"
                )
            both = {str(v) for v in self.won} & {str(v) for v in self.lost}
            if both:
                raise ValueError(f"values listed as both won and lost: {sorted(both)}")
        return self


class FieldConfig(_Strict):
    """One candidate field of the ICP score."""

    kind: Literal[FIELD_KINDS]  # type: ignore[valid-type]
    label: str | None = None
    source: Literal["opportunities", "accounts", "contacts", "outcomes"] = (
        "opportunities"
    )
    known_late: bool = False
    separator: str = ";"  # for kind multi
    valid_range: tuple[float | None, float | None] | None = None  # numeric, range
    decision: Literal["use", "exclude"] | None = None  # overrides the audit


class Segment(_Strict):
    """A named subset of records: every ``where`` condition must hold.

    A condition maps a canonical column to one value (equals) or a list of
    values (in list). Values compare as text, ignoring case and spacing.
    """

    # A segment name is a folder of the reports: short, and never a name
    # the runner writes itself.
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
    label: str | None = None
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)


class TrainingConfig(_Strict):
    """The training window and the point of optimization."""

    quarters: Annotated[int, Field(ge=1, le=12)] = 4
    min_wins: Annotated[int, Field(ge=1)] = 50
    qualified_months: Annotated[int, Field(ge=1, le=36)] = 6
    min_records: Annotated[int, Field(ge=10)] = 100
    min_outcomes: Annotated[int, Field(ge=5)] = 20
    random_state: int = 20240101


class AuditConfig(_Strict):
    """Thresholds of the data audit."""

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    sparse_fill: Annotated[float, Field(ge=0, le=1)] = 0.2
    late_days: Annotated[int, Field(ge=0)] = 30
    late_stages: list[str] = Field(default_factory=list)
    asymmetry_ratio: Annotated[float, Field(gt=1)] = 2.0
    too_good_auc: Annotated[float, Field(gt=0.5, le=1)] = 0.95


class ModelConfig(_Strict):
    """Options of the model fit."""

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    min_bin_share: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    min_level_count: Annotated[int, Field(ge=1)] = 30
    max_bins: Annotated[int, Field(ge=2, le=20)] = 5
    max_score: Annotated[int, Field(ge=10, le=1000)] = 100


class GradesConfig(_Strict):
    """How scores become grades A to D.

    ``method: fixed`` uses ``thresholds`` (the lowest score of A, B and C;
    D is everything below C). ``method: data`` chooses cut points so that
    conversion falls from A to D, each grade holding at least
    ``min_share`` of records and ``min_wins`` wins.
    """

    method: Literal["fixed", "data"] = "data"
    thresholds: dict[Literal["A", "B", "C"], Annotated[int, Field(ge=0)]] | None = None
    min_share: Annotated[float, Field(gt=0, lt=0.25)] = 0.05
    min_wins: Annotated[int, Field(ge=0)] = 5

    @model_validator(mode="after")
    def _check_thresholds(self) -> GradesConfig:
        if self.method == "fixed":
            t = self.thresholds or {}
            if set(t) != {"A", "B", "C"}:
                raise ValueError("method 'fixed' needs thresholds for A, B and C")
            if not t["A"] > t["B"] > t["C"] > 0:
                raise ValueError(
                    "thresholds must fall strictly, A > B > C > 0; found "
                    f"A={t['A']}, B={t['B']}, C={t['C']}"
                )
        return self


class ExportConfig(_Strict):
    """Column names of the CRM import file, settable per client."""

    crm: Literal["generic", "salesforce", "hubspot"] = "generic"
    columns: dict[str, str] = Field(default_factory=dict)
    top_reasons: Annotated[int, Field(ge=0, le=10)] = 3


class ReviewConfig(_Strict):
    """Options of the quarterly review."""

    model: str | None = None  # path of the deployed model.json, per segment
    feedback_alert: Annotated[float, Field(gt=0, lt=1)] = 0.3
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05


class Config(_Strict):
    """A validated client config. Build it with :func:`load_config`."""

    client: str
    data_dir: str | None = None
    demo: bool = False
    unit: Literal[UNITS] = "opportunity"  # type: ignore[valid-type]
    sources: dict[Literal[SOURCE_ROLES], SourceConfig]  # type: ignore[valid-type]
    join: JoinConfig = JoinConfig()
    outcome: OutcomeConfig
    fields: dict[str, FieldConfig]
    segments: list[Segment] = Field(default_factory=lambda: [Segment(name="all")])
    training: TrainingConfig = TrainingConfig()
    audit: AuditConfig = AuditConfig()
    model: ModelConfig = ModelConfig()
    grades: GradesConfig = GradesConfig()
    export: ExportConfig = ExportConfig()
    review: ReviewConfig = ReviewConfig()
    path: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        if "opportunities" not in self.sources:
            raise ValueError(
                "sources must include 'opportunities' (the table with one row "
                "per opportunity or lead)"
            )
        for name, field in self.fields.items():
            if field.source not in self.sources:
                raise ValueError(
                    f"field '{name}' is read from source '{field.source}', "
                    f"which is not listed under sources"
                )
        names = [s.name for s in self.segments]
        taken = sorted(set(names) & RESERVED_SEGMENT_NAMES)
        if taken:
            raise ValueError(
                f"segment names {taken} are files the runner writes; rename them"
            )
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"segment names must be unique; repeated: {dup}")
        return self

    def source_path(self, role: str) -> Path:
        """Return the resolved path of source ``role``."""
        src = self.sources[role]
        p = Path(src.path or "")
        return p if p.is_absolute() else resolve_data_dir(self) / p


def resolve_data_dir(config: Config) -> Path:
    """Return the folder that relative source paths resolve against.

    The config's ``data_dir`` wins, then the environment variable
    ``ICP_DATA_DIR``, then ``../shared/data``. A relative folder is taken
    from the current working directory.
    """
    chosen = config.data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = [f"config {path} is not valid:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling against params/README.md"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"].startswith("literal"):
            msg = f"{msg}; found {err['input']!r}"
        lines.append(f"  - {where}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a client config.

    Parameters
    ----------
    path : str or path-like
        The YAML file.

    Returns
    -------
    Config
        The validated, frozen config.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or breaks the schema. The
        message lists every problem with the key where it was found.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {path} not found; pass an existing YAML file, "
            "for example params/demo.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config {path} must be a mapping of keys to values; "
            f"found {type(raw).__name__}"
        )
    if "path" in raw:
        raise ConfigError(
            f"config {path}: the top-level key 'path' is set by the kit to the "
            "file a config was read from; remove it"
        )
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None
    return config.model_copy(update={"path": str(path)})
