import copy

import pytest

from menagerie.harness import runner
from menagerie.harness.registry import Impl
from menagerie.harness.replicates import ReplicateError, merge
from menagerie.harness.results import validate
from tests.harness.toy import correct, quick_config, toy_benchmark


@pytest.fixture(scope="module")
def replicates():
    bench = toy_benchmark([Impl("correct", correct)])
    return [runner.run([bench], quick_config()) for _ in range(3)]


def test_replicates_stay_apart_in_the_merged_record(replicates):
    merged = merge(replicates, replicates[0]["provenance"])
    validate(merged)
    assert merged["config"]["repeat"] == 3 and len(merged["replicates"]) == 3
    for index, row in enumerate(merged["rows"]):
        versions = [record["rows"][index] for record in replicates]
        assert row["replicate_medians_s"] == [version["replicate_medians_s"][0] for version in versions]
        assert row["replicate_sample_counts"] == [len(version["samples_s"]) for version in versions]
        assert row["samples_s"] == [sample for version in versions for sample in version["samples_s"]]
        assert row["stats"]["replicates"] == 3 and row["stats"]["ci95_from"] == "replicates"
        assert len(row["calls_per_sample"]) == len(row["autotune"]) == 3
    reference, variant = merged["rows"]
    assert variant["metrics"]["speedup_vs_reference"] == pytest.approx(
        reference["stats"]["median_s"] / variant["stats"]["median_s"]
    )


def test_merging_merged_records_keeps_every_replicate(replicates):
    twice = merge([merge(replicates[:2], replicates[0]["provenance"]), replicates[2]], replicates[0]["provenance"])
    assert twice["config"]["repeat"] == 3
    assert twice["rows"][0]["replicate_medians_s"] == merge(replicates, {})["rows"][0]["replicate_medians_s"]


def test_a_row_that_failed_in_one_replicate_fails_in_the_merge(replicates):
    broken = copy.deepcopy(replicates)
    row = broken[1]["rows"][1]
    row.update(
        status="error",
        reason="RuntimeError: launch failed",
        samples_s=[],
        replicate_medians_s=[],
        replicate_sample_counts=[],
        stats=None,
        calls_per_sample=[],
        autotune=[],
    )
    merged = merge(broken, {})
    assert merged["rows"][1]["status"] == "error" and merged["rows"][1]["reason"] == "RuntimeError: launch failed"
    assert merged["rows"][1]["stats"] is None and merged["rows"][1]["replicate_medians_s"] == []
    assert merged["rows"][0]["stats"]["replicates"] == 3


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda record: record["config"].update(size="small"), "configuration"),
        (lambda record: record["provenance"].update(device="another"), "device"),
        (lambda record: record["rows"].pop(), "rows"),
    ],
)
def test_replicates_of_different_runs_are_refused(replicates, edit, message):
    other = copy.deepcopy(replicates[1])
    edit(other)
    with pytest.raises(ReplicateError, match=message):
        merge([replicates[0], other], {})
