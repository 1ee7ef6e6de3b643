"""Sharded runs: ``run --shard K/N`` splits the rows by (benchmark, case) groups; ``merge`` joins them."""

import copy
import json

import pytest
import torch

from menagerie.harness import registry, results, runner, shards
from menagerie.harness.cli import main
from menagerie.harness.timing import Budget
from tests.harness.test_cli import ONE_SAMPLE

ROWS = ("elementwise", "ssm.ssd", "--impl", "torch*", *ONE_SAMPLE)


def every_task(size="small", device="cuda"):
    config = runner.RunConfig(size=size, device=torch.device(device), timer="events")
    return runner.plan(registry.select(), config), config.budget


@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/8", (2, 8)), (" 3 / 3 ", (3, 3))])
def test_parse_shard(text, expected):
    shard = shards.parse_shard(text)
    assert (shard.index, shard.count) == expected and str(shard) == f"{expected[0]}/{expected[1]}"


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "3", "a/b", "-1/2", "1/2/3", ""])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="K/N"):
        shards.parse_shard(text)


@pytest.fixture(scope="module")
def suite():
    """Every task of the whole registry at the small preset on a GPU (planned, not run), its budget and
    the expected seconds of each (benchmark, case) group."""
    tasks, budget = every_task()
    weights = {}
    for task in tasks:
        weights[shards.group_of(task)] = weights.get(shards.group_of(task), 0) + shards.expected_seconds(task, budget)
    return tasks, budget, weights


def test_every_row_of_the_whole_suite_lands_in_exactly_one_shard(suite):
    tasks, budget, weights = suite
    for count in (1, 8, 3):
        assignment = shards.assign(tasks, count, budget)  # whole groups: a group has one shard
        assert set(assignment) == set(weights) and set(assignment.values()) == set(range(1, count + 1))
    keys = lambda chosen: sorted((t.benchmark.name, t.case.name, str(t.dtype), t.mode) for t in chosen)  # noqa: E731
    pieces = [shards.select(tasks, shards.Shard(index, 3), budget)[0] for index in (1, 2, 3)]
    assert keys(task for piece in pieces for task in piece) == keys(tasks)
    assert all(assignment[shards.group_of(task)] == index for index, piece in enumerate(pieces, 1) for task in piece)


@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_take_about_the_same_time(suite, count):
    """Heaviest first to the lightest shard: no shard exceeds another by more than the heaviest group."""
    tasks, budget, weights = suite
    assignment = shards.assign(tasks, count, budget)
    loads = [sum(w for group, w in weights.items() if assignment[group] == index) for index in range(1, count + 1)]
    assert max(loads) - min(loads) <= max(weights.values()) + 1e-9
    assert max(loads) < 0.75 * sum(loads)  # not all on one shard


def test_the_split_depends_on_the_plan_alone(suite):
    tasks, budget, _ = suite
    first = shards.assign(tasks, 4, budget)
    assert shards.assign(list(tasks), 4, budget) == first
    assert shards.assign(tasks, 4, Budget()) == first  # the default budget, as every process parses it


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """An unsharded tiny run and the same run as three shards, in this process."""
    folder = tmp_path_factory.mktemp("shards")
    assert main(["run", *ROWS, "--out", str(folder / "whole.json")]) == 0
    for index in (1, 2, 3):
        assert main(["run", *ROWS, "--shard", f"{index}/3", "--out", str(folder / f"shard-{index}.json")]) == 0
    return folder


def test_merged_shards_equal_the_unsharded_run_row_for_row(sharded, capsys):
    assert (
        main(
            [
                "merge",
                str(sharded / "shard-1.json"),
                str(sharded / "shard-3.json"),
                str(sharded / "shard-2.json"),
                "--out",
                str(sharded / "merged.json"),
            ]
        )
        == 0
    )
    assert "merged 3 of 3 shards" in capsys.readouterr().out
    whole, merged = (results.load_run(sharded / name) for name in ("whole.json", "merged.json"))
    verdict = lambda row: (row["status"], row["accuracy"]["passed"] if row["accuracy"] else None)  # noqa: E731
    assert [(results.row_key(row), verdict(row)) for row in merged["rows"]] == [
        (results.row_key(row), verdict(row)) for row in whole["rows"]
    ]
    assert merged["config"]["merged_shards"] == {"count": 3, "merged": [1, 2, 3], "missing": []}
    assert "shard" not in merged["config"] and "partial" not in merged["config"]
    # The gate, the history and the report read it like any other record (the gate, with one replicate a
    # side, cannot decide, and says so).
    assert main(
        ["compare", str(sharded / "whole.json"), str(sharded / "merged.json"), "--max-undetectable", "1e9"]
    ) in (0, 1)
    assert "undecided" in capsys.readouterr().out
    store = sharded / "store"
    store.mkdir()
    (store / "merged.json").write_text((sharded / "merged.json").read_text())
    assert main(["history", "ssm.ssd", "--store", str(store), "--cache-dir", str(sharded / "cache")]) == 0
    assert "b2l45h2p8n8g1c16s3" in capsys.readouterr().out
    assert main(["report", str(sharded / "merged.json"), "--out", str(sharded / "report")]) == 0
    assert "b2l45h2p8n8g1c16s3" in (sharded / "report" / "report.md").read_text()


def test_each_shard_says_which_it_is(sharded):
    seen = []
    for index in (1, 2, 3):
        shard = results.load_run(sharded / f"shard-{index}.json")["config"]["shard"]
        assert (shard["index"], shard["count"]) == (index, 3) and shard["groups"]
        seen += [tuple(group) for group in shard["groups"]]
    assert sorted(position for position, *_ in seen) == list(range(len(seen)))


def test_a_missing_shard_is_named_and_allow_partial_marks_the_record(sharded, capsys):
    paths = [str(sharded / "shard-1.json"), str(sharded / "shard-3.json")]
    assert main(["merge", *paths]) == 2
    assert "shard 2/3 missing" in capsys.readouterr().err
    assert main(["merge", *paths, "--allow-partial", "--out", str(sharded / "partial.json")]) == 0
    assert "missing 2/3 (partial)" in capsys.readouterr().out
    partial = results.load_run(sharded / "partial.json")
    assert partial["config"]["partial"] is True and partial["config"]["merged_shards"]["missing"] == [2]


def test_a_duplicated_shard_is_named(sharded, capsys):
    assert (
        main(
            [
                "merge",
                str(sharded / "shard-1.json"),
                str(sharded / "shard-2.json"),
                str(sharded / "shard-2.json"),
                str(sharded / "shard-3.json"),
            ]
        )
        == 2
    )
    assert "shard 2/3 is there twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda record: record["provenance"]["git"].update(sha="f" * 40), "differ in commit"),
        (lambda record: record["provenance"].update(device="NVIDIA H200"), "differ in device"),
        (lambda record: record["config"].update(seeds=7), "differ in configuration"),
    ],
)
def test_shards_of_different_runs_are_refused(sharded, tmp_path, capsys, change, message):
    record = json.loads((sharded / "shard-2.json").read_text())
    change(record)
    (tmp_path / "shard-2.json").write_text(json.dumps(record))
    assert (
        main(["merge", str(sharded / "shard-1.json"), str(tmp_path / "shard-2.json"), str(sharded / "shard-3.json")])
        == 2
    )
    assert message in capsys.readouterr().err


def test_a_record_that_is_not_a_shard_is_refused(sharded, capsys):
    assert main(["merge", str(sharded / "whole.json"), str(sharded / "shard-1.json")]) == 2
    assert "not shards" in capsys.readouterr().err


def test_merge_keeps_every_shards_warnings():
    record = {
        "provenance": {"git": {"sha": "a"}, "device": "cpu"},
        "ceilings": {},
        "rows": [],
        "config": {"size": "tiny", "shard": {"index": 1, "count": 2, "groups": []}},
        "replicates": [{"timestamp": "2026-12-07T00:00:01", "gpu_under_load": None, "warnings": ["hot"]}],
    }
    other = copy.deepcopy(record)
    other["config"]["shard"]["index"] = 2
    other["replicates"][0].update(timestamp="2026-12-07T00:00:00", warnings=["throttled"])
    merged = shards.merge([record, other])
    assert merged["replicates"] == [
        {"timestamp": "2026-12-07T00:00:00", "gpu_under_load": None, "warnings": ["shard 1: hot", "shard 2: throttled"]}
    ]


def test_a_shard_without_rows_and_a_shard_with_a_baseline_are_usage_errors(tmp_path, capsys):
    assert main(["run", "elementwise", *ONE_SAMPLE, "--shard", "3/3", "--out", str(tmp_path)]) == 2
    assert "shard 3/3 holds no rows" in capsys.readouterr().err
    assert main(["run", "elementwise", *ONE_SAMPLE, "--shard", "1/2", "--baseline", str(tmp_path)]) == 2
    assert "gate the merged record" in capsys.readouterr().err
