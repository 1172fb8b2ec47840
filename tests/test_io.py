"""Tests of reading sources (icp_lib._io)."""

import csv
import hashlib
import io
import sqlite3

import duckdb
import pandas as pd
import pytest

from icp_lib._io import read_source
from icp_lib.config import SourceConfig
from icp_lib.errors import DataError

MAPPING = {"record_id": "Id", "industry": "Industry", "amount": "Amount"}


def _read(path, **options):
    source = SourceConfig(
        path=str(path), columns=options.pop("columns", MAPPING), **options
    )
    return read_source(source, role="opportunities", path=path)


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [
        ("utf-8", ","),
        ("utf-8-sig", ","),  # Excel's "CSV UTF-8" writes a byte-order mark
        ("cp1252", ";"),  # Windows export with a European delimiter
        ("cp1252", "\t"),
        ("utf-8", "|"),
    ],
)
def test_read_source_detects_encoding_and_delimiter(tmp_path, encoding, delimiter):
    rows = [["Id", "Industry", "Amount"], ["1", "Café", "€1.200,50"], ["2", "Ré", "5"]]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)  # quotes as needed
    path = tmp_path / "opps.csv"
    path.write_bytes(buffer.getvalue().encode(encoding))

    data = _read(path)

    assert list(data.frame.columns) == ["record_id", "industry", "amount"]
    assert data.frame["industry"].tolist() == ["Café", "Ré"]
    assert data.frame["amount"].iloc[0] == "€1.200,50"


def test_read_source_reads_utf16_tab_export(tmp_path):
    path = tmp_path / "opps.txt"
    path.write_bytes("Id\tIndustry\tAmount\n1\tCafé\t3\n".encode("utf-16"))
    data = _read(path)
    assert data.encoding == "utf-16"
    assert data.frame["industry"].tolist() == ["Café"]


def test_read_source_follows_excel_sep_hint(tmp_path):
    path = tmp_path / "opps.csv"
    path.write_text("sep=;\nId;Industry;Amount\n1;Retail, Food;3,5\n")
    assert _read(path).frame["amount"].tolist() == ["3,5"]


def test_read_source_suggests_close_column_name(tmp_path):
    path = tmp_path / "opps.csv"
    path.write_text("Id,industry ,Amount\n1,Retail,3\n")
    with pytest.raises(DataError, match=r"Did you mean 'industry'\?"):
        _read(path)


def test_read_source_keeps_quoted_delimiters_and_raw_text(tmp_path):
    path = tmp_path / "opps.csv"
    path.write_text(
        'Id,Industry,Amount\n"007","Retail, Food","$1,200.50"\n"008",NA,null\n',
        encoding="utf-8",
    )
    frame = _read(path).frame
    assert frame["record_id"].tolist() == ["007", "008"]  # leading zeros kept
    assert frame["industry"].tolist() == ["Retail, Food", "NA"]  # NA is text
    assert frame["amount"].tolist() == ["$1,200.50", "null"]


def test_read_source_honours_explicit_encoding_and_delimiter(tmp_path):
    path = tmp_path / "opps.txt"
    path.write_bytes("Id;Industry;Amount\n1;Métal;3\n".encode("cp1252"))
    frame = _read(path, encoding="cp1252", delimiter=";").frame
    assert frame["industry"].tolist() == ["Métal"]


def test_read_source_fingerprints_the_file_bytes(tmp_path):
    path = tmp_path / "opps.csv"
    path.write_text("Id,Industry,Amount\n1,Retail,3\n")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert _read(path).fingerprint == f"sha256:{expected}"


def test_read_source_writes_nothing_next_to_the_input(tmp_path):
    path = tmp_path / "opps.csv"
    path.write_text("Id,Industry,Amount\n1,Retail,3\n")
    _read(path)
    assert [p.name for p in tmp_path.iterdir()] == ["opps.csv"]


def test_read_source_reports_missing_file_with_data_dir_hint(tmp_path):
    path = tmp_path / "nowhere" / "opps.csv"
    with pytest.raises(DataError, match=r"nowhere/opps\.csv not found.*ICP_DATA_DIR"):
        _read(path)


def test_read_source_names_file_column_and_columns_present(tmp_path):
    path = tmp_path / "opps.csv"
    path.write_text("Id,Sector,Amount\n1,Retail,3\n")
    with pytest.raises(
        DataError,
        match=r"'Industry' not found in opportunities source .*opps\.csv.*maps "
        r"industry.*columns present: \['Id', 'Sector', 'Amount'\]",
    ):
        _read(path)


def test_read_source_flags_exact_duplicate_rows_on_all_columns(tmp_path):
    path = tmp_path / "opps.csv"
    path.write_text("Id,Industry,Amount,Note\n1,A,3,x\n1,A,3,x\n1,A,3,y\n")
    data = _read(path)
    # The third row differs only in an unmapped column: not an exact duplicate.
    assert data.duplicated.tolist() == [False, True, False]


def test_read_source_reads_excel_sheet_as_text(tmp_path):
    path = tmp_path / "opps.xlsx"
    frame = pd.DataFrame(
        {"Id": [1, 2], "Industry": ["Retail", None], "Amount": [3.5, 4]}
    )
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"x": [1]}).to_excel(writer, sheet_name="Notes", index=False)
        frame.to_excel(writer, sheet_name="Deals", index=False)
    data = _read(path, table="Deals").frame
    assert data["record_id"].tolist() == ["1", "2"]
    assert pd.isna(data["industry"].iloc[1])


def test_read_source_reads_parquet_through_duckdb(tmp_path):
    path = tmp_path / "opps.parquet"
    frame = pd.DataFrame(
        {"Id": ["a", "b"], "Industry": ["X", "Y"], "Amount": [1.5, None]}
    )
    frame.to_parquet(path)
    data = _read(path).frame
    assert data["amount"].iloc[0] == "1.5"
    assert pd.isna(data["amount"].iloc[1])


def test_read_source_reads_duckdb_table_and_query(tmp_path):
    path = tmp_path / "crm.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE deals (Id VARCHAR, Industry VARCHAR, Amount INT)")
        con.execute("INSERT INTO deals VALUES ('a', 'X', 10), ('b', 'Y', 20)")
    by_table = _read(path, table="deals").frame
    by_query = _read(path, query="SELECT * FROM deals WHERE Amount > 15").frame
    assert by_table["amount"].tolist() == ["10", "20"]
    assert by_query["record_id"].tolist() == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["crm.duckdb"]  # opened read-only


def test_read_source_runs_duckdb_query_over_files_of_a_folder(tmp_path):
    (tmp_path / "deals.csv").write_text("Id,Industry\n1,X\n2,Y\n")
    (tmp_path / "amounts.csv").write_text("Id,Amount\n1,100\n")
    query = (
        "SELECT d.*, a.Amount FROM read_csv('deals.csv', all_varchar = true) d "
        "LEFT JOIN read_csv('amounts.csv', all_varchar = true) a USING (Id)"
    )
    data = _read(tmp_path, format="duckdb", query=query)
    frame = data.frame.sort_values("record_id")
    assert frame["amount"].tolist()[0] == "100"
    assert pd.isna(frame["amount"].tolist()[1])
    assert data.fingerprint.startswith("sha256:")


def test_read_source_runs_sql_query_over_sqlalchemy_url(tmp_path):
    db = tmp_path / "crm.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE deals (Id TEXT, Industry TEXT, Amount REAL)")
        con.execute("INSERT INTO deals VALUES ('a', 'X', 10.5)")
    source = SourceConfig(
        format="sql",
        url=f"sqlite:///{db}",
        query="SELECT * FROM deals",
        columns=MAPPING,
    )
    data = read_source(source, role="opportunities")
    assert data.frame.to_dict("records") == [
        {"record_id": "a", "industry": "X", "amount": "10.5"}
    ]
    expected = hashlib.sha256(b"SELECT * FROM deals").hexdigest()
    assert data.fingerprint == f"sha256:{expected}"


def test_western_windows_text_is_read_as_cp1252():
    from icp_lib._io import decode_bytes

    # expected: the cp1252 bytes of these words, which a detector once read
    # as cp1250 ("Compańía", "Crčme")
    words = "Compañía de Software;Alimentação;Crème;Società\n"
    text, name = decode_bytes(words.encode("cp1252"))
    assert (text, name) == (words, "cp1252")
