"""The SQL export scores exactly like Python, in every warehouse we can run.

Expected values come from ``score_records`` (the Python scorer): the query
printed by ``to_sql`` runs on DuckDB, SQLite and a private PostgreSQL
server started by ``tests/_pg.py``, and must return the same score and
grade for every record. The other dialects' queries must parse.
"""

from __future__ import annotations

import copy
import math
import sqlite3

import _pg
import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlglot

from icp_lib._card import ScoreCard, points_by_field, score_records
from icp_lib._clean import clean_multi
from icp_lib.errors import ConfigError, ModelError
from icp_lib.export import SUPPORTED_DIALECTS, to_sql

CARD = {
    "schema_version": 1,
    "model_id": "test-all-2026Q3-0123abcd",
    "max_score": 100,
    "verdict": {"usable": True, "reasons": []},
    "fields": [
        {
            "name": "industry",
            "label": "Industry",
            "kind": "categorical",
            "levels": [
                {"values": ["Software", "SaaS"], "label": "Software", "points": 40},
                {
                    "values": ["O'Reilly; DROP TABLE x; --", "50%_off"],
                    "label": "odd text",
                    "points": 20,
                },
                {"values": ["Énergie", "Straße"], "label": "unicode", "points": 10},
            ],
            "other_points": 5,
            "missing_points": 1,
        },
        {
            "name": "employees",
            "label": "Employees",
            "kind": "numeric",
            "bins": [
                {"lower": None, "upper": 50.0, "label": "< 50", "points": 0},
                {"lower": 50.0, "upper": 200.5, "label": "50 to 200", "points": 10},
                {"lower": 200.5, "upper": None, "label": "> 200", "points": 25},
            ],
            "valid_range": [0.0, 1e6],  # -5 and 1e9 below score as missing
            "missing_points": 2,
        },
        {
            "name": "partner",
            "label": "Partner",
            "kind": "boolean",
            "levels": [
                {"values": [True], "label": "Yes", "points": 10},
                {"values": [False], "label": "No", "points": 0},
            ],
            "other_points": 0,
            "missing_points": 4,
        },
        {
            "name": "flag",
            "label": "Flag",
            "kind": "boolean",
            "levels": [{"values": [True], "label": "Yes", "points": 5}],
            "other_points": 1,
            "missing_points": 2,
        },
        {
            "name": "tech",
            "label": "Technologies",
            "kind": "multi",
            "separator": ";",
            "indicators": [
                {"value": "Salesforce", "points": 12},
                {"value": "100%_Cloud", "points": 8},
            ],
            "missing_points": 3,
        },
    ],
    "grades": {
        "method": "fixed",
        "cuts": {"A": 70, "B": 45, "C": 20},
        "not_for_deployment": False,
    },
}

# Each row probes one rule: quotes, LIKE wildcards, unicode case, spacing,
# placeholders, NULLs, unseen values, bin boundaries and multi pieces.
RECORDS = pd.DataFrame(
    {
        "record_id": [f"r{i:02d}" for i in range(16)],
        "industry": [
            "software",
            "  SaaS ",
            "O'Reilly; DROP TABLE x; --",
            "50%_off",
            "50x_off",
            "ÉNERGIE",
            "straße",
            "STRASSE",
            "Select",
            None,
            "--None--",
            "Health\t\u00a0Care",
            "Soft ware",
            "n/a",
            "  ",
            "Unseen Co",
        ],
        "employees": [
            49.999,
            50.0,
            200.5,
            200.49,
            None,
            0.0,
            1e9,
            -5.0,
            199.0,
            np.nan,
            50.0,
            10.0,
            300.0,
            None,
            75.0,
            200.0,
        ],
        "partner": [
            "Yes",
            " y ",
            "TRUE",
            "0",
            "no",
            "maybe",
            None,
            "Select",
            "1",
            "N",
            "false",
            "yes",
            "",
            "true",
            "No",
            "x",
        ],
        "flag": [1.0, 0.0, np.nan, 1.0, 0.0, 1.0, np.nan, 0.0] * 2,
        "tech": [
            "Salesforce;Slack",
            " salesforce ; 100%_cloud ",
            "100x_Cloud",
            "Select;unknown",
            None,
            "",
            ";;",
            "Slack",
            "SALESFORCE;SALESFORCE",
            "-;Salesforce",
            "100%_Cloud",
            "Salesforce Inc",
            "none;-;none",
            "Hub;100%_CLOUD;Salesforce",
            "  ;  ",
            "n/a",
        ],
    }
)


def _card(**changes) -> ScoreCard:
    data = copy.deepcopy(CARD)
    data.update(changes)
    return ScoreCard.from_json(data)


def _expected(card: ScoreCard, frame: pd.DataFrame = RECORDS) -> pd.DataFrame:
    out = score_records(card, frame)[["record_id", "score", "grade"]]
    return out.astype({"record_id": "str", "score": "int64", "grade": "str"})


def _normalize(result: pd.DataFrame) -> pd.DataFrame:
    result = result[["record_id", "score", "grade"]].sort_values("record_id")
    return result.reset_index(drop=True).astype(
        {"record_id": "str", "score": "int64", "grade": "str"}
    )


def _run_duckdb(sql: str, frame: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    con.register("frame_view", frame)
    con.execute("CREATE TABLE source_table AS SELECT * FROM frame_view")
    return con.execute(sql).df()


def _run_sqlite(sql: str, frame: pd.DataFrame) -> pd.DataFrame:
    con = sqlite3.connect(":memory:")
    frame.to_sql("source_table", con, index=False)
    return pd.read_sql_query(sql, con)


def _pg_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(series):
        return "BIGINT"
    return "DOUBLE PRECISION" if pd.api.types.is_float_dtype(series) else "TEXT"


def _cell(value):
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _run_postgres(conn, sql: str, frame: pd.DataFrame) -> pd.DataFrame:
    cols = ", ".join(f"{c} {_pg_type(frame[c])}" for c in frame.columns)
    marks = ", ".join(["%s"] * frame.shape[1])
    rows = [tuple(_cell(v) for v in row) for row in frame.itertuples(index=False)]
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS source_table")
        cur.execute(f"CREATE TABLE source_table ({cols})")
        cur.executemany(f"INSERT INTO source_table VALUES ({marks})", rows)
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)


@pytest.fixture(scope="session")
def pg_conn():
    yield from _pg.postgres_connection()


def test_probe_records_cover_every_kind_of_points():
    # Sanity check of the probe data itself: missing, other and level
    # points all occur, so agreement below is not trivial.
    result = score_records(_card(), RECORDS)
    assert result["score"].nunique() >= 8
    assert set(result["grade"]) == {"A", "B", "C", "D"}


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_sql_scores_match_python_scores(engine):
    card = _card()
    sql = to_sql(card, dialect=engine)
    run = _run_duckdb if engine == "duckdb" else _run_sqlite
    got = _normalize(run(sql, RECORDS))
    pd.testing.assert_frame_equal(got, _expected(card))


@pytest.mark.postgres
def test_sql_scores_match_python_scores_on_postgres(pg_conn):
    card = _card()
    got = _normalize(_run_postgres(pg_conn, to_sql(card, dialect="postgres"), RECORDS))
    pd.testing.assert_frame_equal(got, _expected(card))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Warehouse-typed columns: whole-number sizes and a real boolean."""
    return frame.assign(
        employees=frame["employees"].round().astype("Int64"),
        flag=frame["flag"].map({1.0: True, 0.0: False}).astype("boolean"),
    )


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_sql_scores_integer_and_boolean_columns_like_python(engine):
    card, frame = _card(), _typed(RECORDS)
    run = _run_duckdb if engine == "duckdb" else _run_sqlite
    got = _normalize(run(to_sql(card, dialect=engine), frame))
    pd.testing.assert_frame_equal(got, _expected(card, frame))


@pytest.mark.postgres
def test_sql_scores_integer_and_boolean_columns_on_postgres(pg_conn):
    card, frame = _card(), _typed(RECORDS)
    got = _run_postgres(pg_conn, to_sql(card, dialect="postgres"), frame)
    pd.testing.assert_frame_equal(_normalize(got), _expected(card, frame))


def test_sql_splits_raw_multi_values_on_the_clients_separator():
    data = copy.deepcopy(CARD)
    data["fields"][4] |= {"separator": "|", "source_separator": ";"}
    card = ScoreCard.from_json(data)
    raw = RECORDS
    # Expected: the modeling-table form ("|"-joined, as the data layer and
    # score_file build it from the client's ";"-separated text).
    joined = clean_multi(raw["tech"], separator=";").values
    expected = _expected(card, raw.assign(tech=joined))
    got = _normalize(_run_duckdb(to_sql(card, dialect="duckdb"), raw))
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("dialect", SUPPORTED_DIALECTS)
def test_sql_parses_in_every_supported_dialect(dialect):
    sql = to_sql(_card(), dialect=dialect)
    tree = sqlglot.parse_one(sql, read=dialect)
    assert tree.find(sqlglot.exp.Select) is not None
    literals = {lit.this for lit in tree.find_all(sqlglot.exp.Literal)}
    assert "nan" not in literals and "None" not in literals


def test_sql_values_are_escaped_literals_not_syntax():
    sql = to_sql(_card(), dialect="duckdb")
    statements = sqlglot.parse(sql, read="duckdb")
    assert len(statements) == 1
    assert "'o''reilly; drop table x; --'" in sql


# Client column names that need quoting: a space, a reserved word.
MAPPING = {"industry": "Industry Name", "tech": "select"}
CLIENT_FRAME = RECORDS.rename(columns={**MAPPING, "record_id": "Opp Id"})


def test_sql_reads_mapped_client_columns_and_table():
    card = _card()
    sql = to_sql(
        card, dialect="duckdb", table="main.source_table", id_column="Opp Id",
        columns=MAPPING,
    )  # fmt: skip
    got = _normalize(_run_duckdb(sql, CLIENT_FRAME))
    pd.testing.assert_frame_equal(got, _expected(card))


@pytest.mark.postgres
def test_sql_reads_mapped_client_columns_on_postgres(pg_conn):
    card = _card()
    sql = to_sql(
        card, dialect="postgres", table="public.source_table", id_column="Opp Id",
        columns=MAPPING,
    )  # fmt: skip
    frame = CLIENT_FRAME
    quoted = frame.rename(columns=lambda c: f'"{c}"')
    got = _normalize(_run_postgres(pg_conn, sql, quoted))
    pd.testing.assert_frame_equal(got, _expected(card))


def test_sql_on_card_without_fields_scores_zero_grade_d():
    card = _card(
        fields=[], grades={"method": "fixed", "cuts": {"A": 3, "B": 2, "C": 1}}
    )
    got = _run_duckdb(to_sql(card, dialect="duckdb"), RECORDS[["record_id"]])
    assert set(got["score"]) == {0}
    assert set(got["grade"]) == {"D"}


def test_sql_rejects_an_unsupported_dialect_naming_the_supported_ones():
    with pytest.raises(ConfigError, match=r"'mysql' is not supported.*duckdb"):
        to_sql(_card(), dialect="mysql")


def test_sql_refuses_a_card_without_grades():
    with pytest.raises(ModelError, match="has no grades yet"):
        to_sql(_card(grades=None), dialect="duckdb")


def test_sql_refuses_a_model_not_for_deployment_unless_allowed():
    card = _card(verdict={"usable": False, "reasons": ["no signal"]})
    with pytest.raises(ModelError, match="not for deployment"):
        to_sql(card, dialect="duckdb")
    assert "SELECT" in to_sql(card, dialect="duckdb", allow_undeployable=True)


def test_sql_rejects_a_mapping_of_unknown_fields():
    with pytest.raises(ConfigError, match=r"\['revenue'\].*industry"):
        to_sql(_card(), dialect="duckdb", columns={"revenue": "Revenue"})


def test_sql_rejects_a_multi_separator_with_spaces():
    data = copy.deepcopy(CARD)
    data["fields"][4]["separator"] = " "
    with pytest.raises(ModelError, match="separator ' '"):
        to_sql(ScoreCard.from_json(data), dialect="duckdb")


def test_sql_rejects_a_table_name_with_empty_parts():
    with pytest.raises(ConfigError, match="must be a name"):
        to_sql(_card(), dialect="duckdb", table="db..orders")


def test_values_outside_the_valid_range_score_as_missing():
    # expected by hand: employees -5 and 1e9 lie outside [0, 1e6], so they
    # earn the field's missing points (2), as in training; 0 is inside
    card = _card(fields=[copy.deepcopy(CARD["fields"][1])], max_score=25, grades=None)
    frame = pd.DataFrame({"record_id": ["a", "b", "c"], "employees": [-5.0, 1e9, 0.0]})
    points = points_by_field(card, frame)["employees"].tolist()
    assert points == [2, 2, 0]
