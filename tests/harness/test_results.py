import json
import subprocess
from pathlib import Path

import pytest

from menagerie.harness import results, runner
from menagerie.harness.registry import Impl
from tests.harness.toy import correct, never_here, quick_config, toy_benchmark

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def record():
    bench = toy_benchmark(
        [Impl("correct", correct), Impl("absent", correct, skip_reason=never_here)], modes=("fwd", "bwd")
    )
    return runner.run([bench], quick_config(), command=["menagerie", "run", "toy"])


def test_record_matches_schema_and_carries_provenance(record):
    results.validate(record)
    prov = record["provenance"]
    assert prov["command"] == "menagerie run toy"
    assert prov["torch"] and prov["python"] and prov["device"]
    assert set(prov["git"]) == {"sha", "dirty", "message"}
    if prov["git"]["sha"]:  # in a checkout: the commit's subject line, as `git log` prints it
        assert (
            prov["git"]["message"]
            == subprocess.run(
                ["git", "show", "-s", "--format=%s", prov["git"]["sha"]], capture_output=True, text=True, cwd=ROOT
            ).stdout.strip()
        )
    assert record["schema_version"] == results.SCHEMA_VERSION
    assert record["ceilings"]["float32"]["copy_gbps"]["source"] == "measured"


def test_round_trip(tmp_path, record):
    path = results.write_run(record, tmp_path)
    assert path.parent == tmp_path and path.suffix == ".json"
    assert results.load_run(path) == json.loads(json.dumps(record))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_explicit_json_path(tmp_path, record):
    path = results.write_run(record, tmp_path / "nested" / "baseline.json")
    assert path == tmp_path / "nested" / "baseline.json" and path.exists()


def test_invalid_record_is_rejected_and_not_written(tmp_path, record):
    broken = json.loads(json.dumps(record))
    broken["rows"][0]["status"] = "great"
    with pytest.raises(results.ResultError, match="status"):
        results.write_run(broken, tmp_path)
    assert not list(tmp_path.iterdir())


def test_unreadable_files_give_clear_errors(tmp_path, record):
    with pytest.raises(results.ResultError, match="cannot read"):
        results.load_run(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(results.ResultError, match="not JSON"):
        results.load_run(tmp_path / "bad.json")
    newer = dict(record, schema_version=99)
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(results.ResultError, match="schema_version 99"):
        results.load_run(tmp_path / "newer.json")
