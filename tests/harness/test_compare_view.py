"""`menagerie compare`'s terminal view leads with the answer: the verdict, the uniform shift, then the failing rows
and the improvements; unchanged rows are a count unless --all; at 100 columns no name wraps."""

import pytest
from rich.console import Console

from menagerie.harness.cli import compare
from menagerie.harness.gate import gate
from tests.harness.noise import planted_comparison

LONG_NAME, LONG_IMPL = "attention.sliding_window_with_sinks", "triton_fused_persistent"


@pytest.fixture(scope="module")
def result():
    """300 rows, 5 of them 30% slower and 2 of them 30% faster, under long benchmark and implementation names."""
    baseline, new = planted_comparison()
    for record in baseline + new:
        for row in record["rows"]:
            row["benchmark"], row["impl"] = LONG_NAME, LONG_IMPL
            row["case"] = f"b8h32kv8s4096d128w4096k4-{row['case']}"
    return gate(baseline, new, max_undetectable=0.5)  # three runs a side: only the planted rows fail


def view(result, monkeypatch, width=100, **options) -> list[str]:
    recorded = Console(width=width, record=True, force_terminal=False)
    monkeypatch.setattr(compare, "console", recorded)
    compare.print_gate(result, **options)
    return recorded.export_text().splitlines()


def test_the_answer_comes_first_and_unchanged_rows_are_counted(result, monkeypatch):
    lines = view(result, monkeypatch)
    assert lines[0] == "gate failed: 5 reason(s), listed at the end"
    assert lines[1].startswith("uniform shift of whole runs: new/base")
    text = "\n".join(lines)
    assert text.index("failing: 5 row(s)") < text.index("improvements: 2 row(s)") < text.index("293 other row(s)")
    assert "293 other row(s): 293 unchanged (--all lists them)" in text
    assert "row100" not in text and "row010" in text  # an unchanged row is counted, an improvement listed
    assert text.index("why the gate failed:") > text.index("293 other row(s)")


def test_no_name_wraps_at_100_columns(result, monkeypatch):
    lines = view(result, monkeypatch, show_all=True)
    assert max(len(line) for line in lines) <= 100
    # every row's benchmark and implementation each whole on a line: the table's 300, and the 5 failing again below
    assert sum(LONG_NAME in line for line in lines) == 300 + 5
    assert sum(f"{LONG_IMPL} float32 fwd" in line for line in lines) == 300 + 5


def test_sort_orders_rows_within_a_section(result, monkeypatch):
    def failing_cases(sort):
        lines = view(result, monkeypatch, sort=sort)
        table = lines[lines.index(next(line for line in lines if line.startswith("failing:"))) :]
        return [line.split()[0] for line in table if "b8h32kv8s4096d128w4096k4-row" in line][:5]

    by_name = failing_cases("name")
    assert by_name == sorted(by_name) and failing_cases("ratio") != by_name
    ratios = [row.ratio for row in sorted((row for row in result.rows if row.failing), key=compare.ROW_ORDERS["ratio"])]
    assert ratios == sorted(ratios, reverse=True)
