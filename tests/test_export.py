"""scores.csv: columns per CRM, formula-safe cells, and a clean read-back.

Expected values are the scored records themselves: every file is read back
with pandas and with the csv module and compared cell by cell with what was
written (after the documented leading quote on formula-like cells).
"""

from __future__ import annotations

import copy
import csv
import datetime as dt

import pandas as pd
import pytest

from icp_lib._card import ScoreCard, score_records
from icp_lib.config import ExportConfig, load_config
from icp_lib.data import load_table
from icp_lib.demo import write_demo
from icp_lib.errors import ConfigError, DataError, ModelError
from icp_lib.export import (
    CRM_PRESETS,
    FORMULA_PREFIXES,
    export_columns,
    neutralize_cell,
    write_scores,
)

GRADES = {"method": "fixed", "cuts": {"A": 70, "B": 40, "C": 20}}
DATE = dt.date(2026, 12, 4)
# Ids and values a CRM import must survive: quotes, commas, formula starts.
NASTY = ["=1+1", "+4412345", "-42", "@SUM(A1)", 'id,"quoted"', "\tTab", "ok é"]


def _card_json(fields, **changes) -> dict:
    data = {
        "schema_version": 1,
        "model_id": "test-all-2026Q3-89abcdef",
        "max_score": 100,
        "verdict": {"usable": True, "reasons": []},
        "fields": fields,
        "grades": GRADES,
    }
    data.update(changes)
    return data


def _levels(values, points, label):
    return {"values": values, "label": label, "points": points}


DEMO_FIELDS = [
    {
        "name": "industry",
        "label": 'Industry, "sector"',
        "kind": "categorical",
        "levels": [_levels(["Software", "SaaS"], 40, "Software, SaaS")],
        "other_points": 10,
        "missing_points": 0,
    },
    {
        "name": "employees",
        "label": "=Employees",
        "kind": "range",
        "bins": [
            {"lower": None, "upper": 50.0, "label": "< 50", "points": 0},
            {"lower": 50.0, "upper": 500.0, "label": "50 to 499", "points": 10},
            {"lower": 500.0, "upper": None, "label": "500 or more", "points": 30},
        ],
        "missing_points": 0,
    },
    {
        "name": "technologies",
        "label": "Technologies",
        "kind": "multi",
        "separator": "|",
        "indicators": [
            {"value": "Salesforce", "points": 20},
            {"value": "Slack", "points": 10},
        ],
        "missing_points": 0,
    },
]


def _small_scored() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": NASTY,
            "score": [90, 55, 30, 10, 70, 0, 100],
            "grade": ["A", "B", "C", "D", "A", "D", "A"],
            "reasons": [
                ["=cmd|' /C calc'!A0", 'Industry: "big", bold (+40)'],
                ["+plus (+10)"],
                [],
                ["-minus", "@at", "\rcr", "x"],
                ["Región: Café (+5)"],
                None,
                ["a\nb (+1)"],
            ],
        }
    )


def _read_back(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def _expected_cells(scored: pd.DataFrame, n_reasons: int = 3) -> list[list[str]]:
    rows = []
    for rec, score, grade, reasons in scored.itertuples(index=False):
        texts = list(reasons or [])[:n_reasons]
        texts += [""] * (n_reasons - len(texts))
        cells = [str(rec), str(score), grade, *texts, "test-all-2026Q3-89abcdef"]
        rows.append([neutralize_cell(c) for c in cells] + ["2026-12-04"])
    return rows


@pytest.fixture
def card() -> ScoreCard:
    return ScoreCard.from_json(_card_json(DEMO_FIELDS))


def test_scores_csv_reads_back_cell_for_cell(tmp_path, card):
    scored = _small_scored()
    path = tmp_path / "scores.csv"
    write_scores(scored, path, card=card, config=ExportConfig(), scoring_date=DATE)
    back = _read_back(path)
    assert back.columns.tolist() == list(export_columns(ExportConfig()).values())
    assert back.to_numpy().tolist() == _expected_cells(scored)
    with path.open(encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh))[1:] == _expected_cells(scored)


def test_scores_csv_is_utf8_without_bom_with_crlf_lines(tmp_path, card):
    path = tmp_path / "scores.csv"
    write_scores(
        _small_scored(), path, card=card, config=ExportConfig(), scoring_date=DATE
    )
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert raw.split(b"\r\n")[0] == (
        b"record_id,icp_score,icp_grade,icp_reason_1,"
        b"icp_reason_2,icp_reason_3,icp_model_version,icp_scoring_date"
    )
    assert "Región: Café".encode() in raw


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_formula_like_cells_get_a_leading_quote(prefix):
    assert neutralize_cell(prefix + "SUM(A1)") == "'" + prefix + "SUM(A1)"


@pytest.mark.parametrize("text", ["Software", "1+1", "a=b", "", "'already"])
def test_plain_cells_are_left_alone(text):
    assert neutralize_cell(text) == text


@pytest.mark.parametrize("crm", sorted(CRM_PRESETS))
def test_crm_presets_name_the_columns(tmp_path, card, crm):
    config = ExportConfig(crm=crm, top_reasons=2)
    path = tmp_path / "scores.csv"
    scored = _small_scored().assign(record_id=[f"r{i}" for i in range(7)])
    write_scores(scored, path, card=card, config=config, scoring_date=DATE)
    header = _read_back(path).columns.tolist()
    preset = CRM_PRESETS[crm]
    assert header[0] == preset["record_id"]
    assert header[3:5] == [preset["reason"].format(n=1), preset["reason"].format(n=2)]
    assert len(header) == 7


def test_column_names_can_be_overridden_per_client():
    config = ExportConfig(
        crm="hubspot", columns={"score": "ICP Fit", "reason_1": "Why"}
    )
    names = export_columns(config)
    assert names["score"] == "ICP Fit" and names["reason_1"] == "Why"
    assert names["record_id"] == "Record ID"


def test_unknown_column_key_names_the_allowed_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['points'\].*record_id"):
        export_columns(ExportConfig(columns={"points": "Points"}))


def test_two_columns_with_one_name_are_an_error():
    with pytest.raises(ConfigError, match="'score' and 'grade' are both named 'X'"):
        export_columns(ExportConfig(columns={"score": "X", "grade": "X"}))


def _sf18(id15: str) -> str:
    """Salesforce's documented suffix rule, written out independently."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = "".join("1" if c.isupper() else "0" for c in reversed(chunk))
        suffix += alphabet[int(bits, 2)]
    return id15 + suffix


def test_salesforce_preset_writes_18_character_ids(tmp_path, card):
    ids = ["0065g00000AbCdE", "0065g00000abcde", "0065g00000AbCdEXYZ", "not-an-id"]
    scored = pd.DataFrame(
        {"record_id": ids, "score": [1, 2, 3, 4], "grade": ["D"] * 4,
         "reasons": [[]] * 4}
    )  # fmt: skip
    path = tmp_path / "scores.csv"
    config = ExportConfig(crm="salesforce")
    write_scores(scored, path, card=card, config=config, scoring_date=DATE)
    got = _read_back(path)["Id"].tolist()
    assert got == [_sf18(ids[0]), _sf18(ids[1]), ids[2], "not-an-id"]


def test_model_not_for_deployment_is_not_exported_unless_allowed(tmp_path):
    data = _card_json(DEMO_FIELDS, verdict={"usable": False, "reasons": ["weak"]})
    card = ScoreCard.from_json(data)
    path = tmp_path / "scores.csv"
    with pytest.raises(ModelError, match="not for deployment"):
        write_scores(
            _small_scored(), path, card=card, config=ExportConfig(), scoring_date=DATE
        )
    assert not path.exists()
    write_scores(
        _small_scored(), path, card=card, config=ExportConfig(),
        scoring_date=DATE, allow_undeployable=True,
    )  # fmt: skip
    assert path.exists()


def test_records_without_grade_are_refused(tmp_path, card):
    scored = _small_scored().assign(grade=pd.NA)
    with pytest.raises(ModelError, match="no id, score or grade"):
        write_scores(
            scored, tmp_path / "s.csv", card=card, config=ExportConfig(),
            scoring_date=DATE,
        )  # fmt: skip


def test_bad_scoring_date_and_missing_column_are_data_errors(tmp_path, card):
    with pytest.raises(DataError, match="scoring_date must be a date"):
        write_scores(
            _small_scored(), tmp_path / "s.csv", card=card, config=ExportConfig(),
            scoring_date="next tuesday",
        )  # fmt: skip
    with pytest.raises(DataError, match=r"missing \['reasons'\]"):
        write_scores(
            _small_scored().drop(columns="reasons"), tmp_path / "s.csv", card=card,
            config=ExportConfig(), scoring_date=DATE,
        )  # fmt: skip


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, card):
    path = tmp_path / "scores.csv"
    path.write_text("old content\n", encoding="utf-8")
    scored = _small_scored().assign(score=[1, 2, 3, "not a number", 5, 6, 7])
    with pytest.raises(ValueError):
        write_scores(scored, path, card=card, config=ExportConfig(), scoring_date=DATE)
    assert path.read_text(encoding="utf-8") == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


# --- real tables ------------------------------------------------------------------


def _round_trip(frame: pd.DataFrame, card: ScoreCard, path) -> None:
    """Score, write, read back, and compare every cell."""
    scored = score_records(card, frame)
    write_scores(scored, path, card=card, config=ExportConfig(), scoring_date=DATE)
    back = _read_back(path)
    assert len(back) == len(frame)
    assert back.to_numpy().tolist() == _expected_cells(scored)


@pytest.fixture(scope="module")
def demo_frame(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder)
    config = load_config("params/demo.yaml").model_copy(
        update={"data_dir": str(folder)}
    )
    return load_table(config).frame


def test_demo_scores_csv_imports_cleanly(tmp_path, demo_frame, card):
    # Plant ids and values a spreadsheet would run, plus quotes and commas.
    n = len(NASTY)
    ids = demo_frame["record_id"].tolist()
    ids[:n] = NASTY
    industry = demo_frame["industry"].tolist()
    industry[n : 2 * n] = ['=HYPERLINK("x")', "+Retail, Inc.", 'say "hi"'] + ["-x"] * (
        n - 3
    )
    frame = demo_frame.assign(record_id=ids, industry=industry)
    _round_trip(frame, card, tmp_path / "scores.csv")


def test_crm_example_scores_csv_imports_cleanly(tmp_path, shared_data):
    config = load_config("params/examples/crm_sales_opportunities.yaml")
    frame = load_table(config.model_copy(update={"data_dir": str(shared_data)})).frame
    fields = [
        {
            "name": "sector",
            "label": "Sector",
            "kind": "categorical",
            "levels": [_levels(["software", "technolgy"], 50, "Software, tech")],
            "other_points": 10,
            "missing_points": 0,
        },
        {
            "name": "employees",
            "label": "Employees",
            "kind": "numeric",
            "bins": [
                {"lower": None, "upper": 1000.0, "label": "< 1000", "points": 0},
                {"lower": 1000.0, "upper": None, "label": ">= 1000", "points": 30},
            ],
            "missing_points": 0,
        },
        {
            "name": "office_location",
            "label": "Headquarters",
            "kind": "categorical",
            "levels": [_levels(["United States"], 20, "United States")],
            "other_points": 0,
            "missing_points": 0,
        },
    ]
    card = ScoreCard.from_json(_card_json(copy.deepcopy(fields)))
    _round_trip(frame, card, tmp_path / "scores.csv")
