"""The ``icp`` command line: help, error messages and exit codes."""

import csv
import json
import re
import subprocess
import sys

import duckdb
import pytest
from _runner_standins import install_fake_data, write_config, write_notebooks

from icp_lib.cli import main

SUBCOMMANDS = ["quarterly", "score", "sql", "demo"]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: icp {command}" in capsys.readouterr().out


def test_missing_config_file_is_one_clear_message(tmp_path, capsys):
    code = main(["quarterly", "--config", str(tmp_path / "acme.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "acme.yaml not found" in err
    assert "Traceback" not in err


def test_unknown_config_key_is_named_with_what_to_do(tmp_path, capsys):
    config = write_config(tmp_path / "acme.yaml", ["all"])
    config.write_text(config.read_text() + "trainig:\n  quarters: 4\n")
    code = main(["quarterly", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert "trainig: unknown key; check its spelling" in err
    assert "Traceback" not in err


def test_invalid_quarter_is_rejected_before_any_work(tmp_path, capsys):
    config = write_config(tmp_path / "acme.yaml", ["all"])
    code = main(["quarterly", "--config", str(config), "--quarter", "2026Q7"])
    assert code == 2
    assert "quarter '2026Q7' is not valid" in capsys.readouterr().err


def test_failed_segment_exits_1_and_is_named(tmp_path, monkeypatch, capsys):
    install_fake_data(monkeypatch)
    notebooks = write_notebooks(tmp_path / "notebooks")
    config = write_config(tmp_path / "acme.yaml", ["empty"])
    argv = [
        "quarterly",
        "--config",
        str(config),
        "--notebooks",
        str(notebooks),
        "--reports",
        str(tmp_path / "reports"),
    ]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert "segment empty failed: segment 'empty' has no rows" in err
    assert "1 segment(s) failed: empty" in err
    assert (tmp_path / "reports" / "2026Q3" / "index.html").is_file()


def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    code = main(["quarterly", "--debug", "--config", str(tmp_path / "x.yaml")])
    assert code == 2
    assert "Traceback" in capsys.readouterr().err


def test_installed_command_runs_as_a_module(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "icp_lib.cli",
            "quarterly",
            "--config",
            str(tmp_path / "nope.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: config file")
    assert "Traceback" not in done.stderr


def test_demo_writes_the_demo_files(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--accounts", "150"])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "demo").glob("*.csv"))
    assert names == [
        "accounts.csv",
        "contacts.csv",
        "feedback.csv",
        "field_history.csv",
        "opportunities.csv",
    ]


def test_demo_with_too_few_accounts_is_one_clear_message(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--accounts", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: n_accounts must be at least")


def test_score_with_missing_model_names_the_file(tmp_path, capsys):
    argv = ["score", "--model", str(tmp_path / "model.json"), "--input", "x.csv"]
    argv += ["--output", str(tmp_path / "out.csv")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "model.json not found" in err
    assert "Traceback" not in err


BAD_INPUT_CONFIG = """\
client: Acme
data_dir: {data}
sources:
  opportunities:
    path: opps.csv
    columns: {{record_id: Id, stage: Stage, industry: {industry}}}
outcome: {{won: [Closed Won], lost: [Closed Lost], open: [Open]}}
fields:
  industry: {{kind: categorical}}
"""

OPPS = "Id,Stage,Industry\n1,Closed Won,Retail\n2,Closed Lost,Retail\n3,Open,Tech\n"
DATED = (
    "Id,Stage,Industry,Created\n1,Closed Won,Retail,2026-01-05\n"
    "2,Closed Lost,Retail,2026-09-30\n3,Open,Tech,2026-08-01\n"
)
NO_WINS = "Id,Stage,Industry\n1,Closed Lost,Retail\n2,Closed Lost,Retail\n3,Open,Tech\n"


def _bad_input(tmp_path, *, industry="Industry", csv=OPPS, quarter="2026Q3"):
    data = tmp_path / "data"
    data.mkdir()
    if csv:
        (data / "opps.csv").write_text(csv)
    config = tmp_path / "acme.yaml"
    text = BAD_INPUT_CONFIG.format(data=data, industry=industry)
    if "Created" in (csv or ""):
        text = text.replace("stage: Stage,", "stage: Stage, record_date: Created,")
    config.write_text(text)
    old = tmp_path / "reports" / "2026Q3"
    old.mkdir(parents=True)
    (old / "index.html").write_text("earlier run")
    return [
        "quarterly",
        "--config",
        str(config),
        "--quarter",
        quarter,
        "--reports",
        str(tmp_path / "reports"),
    ]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"csv": ""}, "opps.csv"),
        ({"industry": "Sector"}, "column 'Sector' not found in opportunities"),
        ({"csv": NO_WINS}, "no record is won: outcome.won lists \\['Closed Won'\\]"),
        (
            {"csv": DATED, "quarter": "2027Q1"},
            "quarter 2027Q1 starts after the last record of the data \\(2026-09-30\\)",
        ),
    ],
    ids=["missing file", "absent column", "no won records", "quarter after data"],
)
def test_bad_data_is_one_message_and_keeps_earlier_reports(
    tmp_path, capsys, options, expected
):
    argv = _bad_input(tmp_path, **options)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(expected, err), err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    reports = tmp_path / "reports"
    assert (reports / "2026Q3" / "index.html").read_text() == "earlier run"
    assert [p.name for p in reports.iterdir()] == ["2026Q3"]


# A hand-made card: Software 100 points, Retail 40, anything else 0;
# grades A >= 80, B >= 30, C >= 10. Expected scores below follow by hand.
CARD = {
    "schema_version": 1,
    "model_id": "acme-all-2026Q3-00000000",
    "max_score": 100,
    "fields": [
        {
            "name": "industry",
            "label": "Industry",
            "kind": "categorical",
            "levels": [
                {"values": ["Software"], "label": "Software", "points": 100},
                {"values": ["Retail"], "label": "Retail", "points": 40},
            ],
            "other_points": 0,
            "missing_points": 0,
        }
    ],
    "metrics": {},
    "verdict": {"usable": True, "reasons": ["hand-made card"]},
    "grades": {
        "method": "fixed",
        "cuts": {"A": 80, "B": 30, "C": 10},
        "not_for_deployment": False,
    },
}
RECORDS = "record_id,industry\nr1,Software\nr2,retail\nr3,Mining\nr4,\n"
EXPECTED = {"r1": (100, "A"), "r2": (40, "B"), "r3": (0, "D"), "r4": (0, "D")}


@pytest.fixture
def card_and_records(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(CARD))
    (tmp_path / "records.csv").write_text(RECORDS)
    return tmp_path


def test_score_writes_scores_and_grades(card_and_records):
    folder = card_and_records
    argv = [
        "score",
        "--model",
        str(folder / "model.json"),
        "--input",
        str(folder / "records.csv"),
        "--output",
        str(folder / "scores.csv"),
    ]
    assert main(argv) == 0
    with open(folder / "scores.csv", newline="") as handle:
        rows = {
            r["record_id"]: (int(r["score"]), r["grade"])
            for r in csv.DictReader(handle)
        }
    assert rows == EXPECTED


def test_sql_prints_a_query_that_scores_like_python(card_and_records, capsys):
    folder = card_and_records
    argv = [
        "sql",
        "--model",
        str(folder / "model.json"),
        "--dialect",
        "duckdb",
        "--table",
        "records",
    ]
    assert main(argv) == 0
    query = capsys.readouterr().out
    con = duckdb.connect()
    con.execute(f"CREATE TABLE records AS SELECT * FROM '{folder / 'records.csv'}'")
    rows = {r[0]: (int(r[1]), r[2]) for r in con.execute(query).fetchall()}
    assert rows == EXPECTED


def test_sql_with_unknown_dialect_lists_the_supported_ones(card_and_records, capsys):
    folder = card_and_records
    argv = ["sql", "--model", str(folder / "model.json"), "--dialect", "oracle"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "SQL dialect 'oracle' is not supported; choose one of" in err


def test_sql_reads_fields_from_the_client_column_names(card_and_records, capsys):
    folder = card_and_records
    client = RECORDS.replace("record_id,industry", "Id,Industry Name")
    (folder / "client.csv").write_text(client)
    argv = ["sql", "--model", str(folder / "model.json"), "--dialect", "duckdb"]
    argv += ["--table", "client", "--id-column", "Id"]
    argv += ["--column", "industry=Industry Name"]
    assert main(argv) == 0
    query = capsys.readouterr().out
    con = duckdb.connect()
    con.execute(f"CREATE TABLE client AS SELECT * FROM '{folder / 'client.csv'}'")
    rows = {r[0]: (int(r[1]), r[2]) for r in con.execute(query).fetchall()}
    assert rows == EXPECTED


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("industry", "--column takes FIELD=COLUMN"),
        ("colour=Colour", "--column names field 'colour'.*its fields are: industry"),
    ],
)
def test_sql_column_option_is_checked(card_and_records, capsys, item, message):
    folder = card_and_records
    argv = ["sql", "--model", str(folder / "model.json"), "--dialect", "duckdb"]
    assert main([*argv, "--column", item]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_score_refuses_a_model_that_is_not_usable(card_and_records, capsys):
    folder = card_and_records
    card = json.loads((folder / "model.json").read_text())
    card["verdict"] = {"usable": False, "reasons": ["no field relates"]}
    (folder / "model.json").write_text(json.dumps(card))
    argv = ["score", "--model", str(folder / "model.json")]
    argv += ["--input", str(folder / "records.csv")]
    argv += ["--output", str(folder / "scores.csv")]

    assert main(argv) == 2
    assert "not for deployment (no field relates)" in capsys.readouterr().err
    assert not (folder / "scores.csv").exists()
    assert main([*argv, "--allow-undeployable"]) == 0


def test_score_reads_a_one_column_file_whole(card_and_records, capsys):
    folder = card_and_records
    (folder / "ids.csv").write_text("record_id\nr1\nr2\n")
    argv = ["score", "--model", str(folder / "model.json")]
    argv += ["--input", str(folder / "ids.csv")]
    argv += ["--output", str(folder / "scores.csv")]
    # the model needs industry: the message names it, not a split header
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "columns present: record_id;" in err


def test_sql_accepts_postgresql_as_a_dialect_name(card_and_records, capsys):
    argv = ["sql", "--model", str(card_and_records / "model.json")]
    assert main([*argv, "--dialect", "PostgreSQL"]) == 0
    assert "SELECT" in capsys.readouterr().out.upper()


@pytest.mark.parametrize("target", ["model.json", "records.csv"])
def test_score_never_writes_over_its_inputs(card_and_records, capsys, target):
    folder = card_and_records
    before = (folder / target).read_bytes()
    argv = ["score", "--model", str(folder / "model.json")]
    argv += ["--input", str(folder / "records.csv")]
    argv += ["--output", str(folder / target)]
    assert main(argv) == 2
    assert "is the same file as" in capsys.readouterr().err
    assert (folder / target).read_bytes() == before
