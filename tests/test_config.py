"""Tests of client config loading and validation."""

import textwrap
from pathlib import Path

import pytest

from icp_lib.config import DATA_DIR_ENV, load_config, resolve_data_dir
from icp_lib.errors import ConfigError

MINIMAL = """
client: Test Co
sources:
  opportunities:
    path: opps.csv
    columns: {record_id: Id, stage: Stage}
outcome:
  won: [Closed Won]
  lost: [Closed Lost]
fields:
  industry: {kind: categorical}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_minimal_config_loads_with_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.client == "Test Co"
    assert [s.name for s in config.segments] == ["all"]
    assert config.training.quarters == 4
    assert config.fields["industry"].kind == "categorical"


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "client: [unclosed"))


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping.*found list"):
        load_config(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("trainning:\n  quarters: 2\n", "trainning: unknown key"),
        ("training:\n  quartrs: 2\n", "training.quartrs: unknown key"),
    ],
)
def test_misspelt_key_is_named(tmp_path, extra, where):
    with pytest.raises(ConfigError, match=where):
        load_config(write(tmp_path, MINIMAL + extra))


def test_unknown_field_kind_lists_what_was_found(tmp_path):
    text = MINIMAL.replace("kind: categorical", "kind: colour")
    with pytest.raises(ConfigError, match=r"fields\.industry\.kind.*'colour'"):
        load_config(write(tmp_path, text))


def test_stage_listed_as_won_and_lost_is_refused(tmp_path):
    text = MINIMAL.replace("lost: [Closed Lost]", "lost: [Closed Won]")
    with pytest.raises(ConfigError, match="both won and lost"):
        load_config(write(tmp_path, text))


def test_field_from_unlisted_source_is_refused(tmp_path):
    text = MINIMAL.replace(
        "{kind: categorical}", "{kind: categorical, source: accounts}"
    )
    with pytest.raises(ConfigError, match="source 'accounts'.*not listed"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "grades",
    [
        "grades: {method: fixed, thresholds: {A: 80, B: 85, C: 70}}",
        "grades: {method: fixed, thresholds: {A: 80, B: 80, C: 70}}",
        "grades: {method: fixed, thresholds: {A: 80, B: 70}}",
    ],
)
def test_overlapping_or_incomplete_thresholds_are_refused(tmp_path, grades):
    with pytest.raises(ConfigError, match="thresholds"):
        load_config(write(tmp_path, MINIMAL + grades + "\n"))


def test_repeated_segment_names_are_refused(tmp_path):
    segs = "segments:\n  - {name: eu}\n  - {name: eu}\n"
    with pytest.raises(ConfigError, match=r"repeated: \['eu'\]"):
        load_config(write(tmp_path, MINIMAL + segs))


def test_segment_filters_are_data_not_code(tmp_path):
    segs = "segments:\n  - {name: x, where: {region: \"__import__('os')\"}}\n"
    config = load_config(write(tmp_path, MINIMAL + segs))
    assert config.segments[0].where == {"region": "__import__('os')"}


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    config = load_config(write(tmp_path, MINIMAL))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(config) == Path("../shared/data")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir(config) == tmp_path
    pinned = config.model_copy(update={"data_dir": "elsewhere"})
    assert resolve_data_dir(pinned) == Path("elsewhere")


def test_path_is_set_by_the_kit_not_the_file(tmp_path):
    with pytest.raises(ConfigError, match="top-level key 'path' is set by the kit"):
        load_config(write(tmp_path, MINIMAL + "path: other.yaml\n"))
    assert load_config(write(tmp_path, MINIMAL)).path.endswith("client.yaml")


@pytest.mark.parametrize(
    ("segs", "message"),
    [
        ("segments:\n  - {name: index.html}\n", "files the runner writes"),
        (f"segments:\n  - {{name: {'s' * 65}}}\n", "at most 64 characters"),
    ],
)
def test_segment_names_that_cannot_be_report_folders_are_refused(
    tmp_path, segs, message
):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, MINIMAL + segs))


def test_max_score_is_bounded(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.max_score"):
        load_config(write(tmp_path, MINIMAL + "model: {max_score: 10000000000}\n"))
