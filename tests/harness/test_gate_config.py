"""Per-benchmark gate settings (``harness/gate_config.py``): a glob's threshold or limit takes effect on its rows
only, later tables win setting by setting, the table is read from ./pyproject.toml or ``--gate-config``, and a bad
one stops `menagerie compare` with one line and exit 2."""

import json

import pytest

from menagerie.harness import gate_config
from menagerie.harness.cli import main
from menagerie.harness.gate import DEFAULT_K, DEFAULT_THRESHOLD, gate
from menagerie.harness.gate_config import GateConfig, GateConfigError, RowSettings, Rule, resolve
from tests.harness.noise import Suite
from tests.harness.synthetic_history import synthetic_run

LIMIT = 0.2  # at 4 replicates a side every row here sees a slowdown under 20%: no row is underpowered by default


def benchmark_of(index: int) -> str:
    return "attention.sliding_window" if index < 10 else "attention.causal" if index < 20 else "synthetic.op"


@pytest.fixture(scope="module")
def sides():
    """30 rows of three benchmarks, four replicates a side; rows 0 (attention.sliding_window) and 20 (synthetic.op)
    30% slower in NEW."""
    suite = Suite(rows=30, seed=3)
    baseline = suite.runs(1, replicates=4, samples=20, seed=0)
    new = suite.runs(1, replicates=4, samples=20, seed=1, slowdowns={0: 0.3, 20: 0.3})
    for record in baseline + new:
        for row in record["rows"]:
            row["benchmark"] = benchmark_of(row["params"]["index"])
    return baseline, new


def rows_by_index(result):
    return {int(row.key[1][3:]): row for row in result.rows}


def write(path, text: str):
    path.write_text(text)
    return path


def test_a_globs_threshold_and_limit_apply_to_its_rows_only(sides, tmp_path):
    before = rows_by_index(gate(*sides, max_undetectable=LIMIT))
    assert before[0].verdict == before[20].verdict == "regression"
    assert {before[i].verdict for i in before if i not in (0, 20)} == {"unchanged"}

    config = gate_config.load(
        write(tmp_path / "gate.toml", '[benchmarks."attention.*"]\nthreshold = 0.5\nmax_undetectable = 1.0\n')
    )
    rows = rows_by_index(gate(*sides, max_undetectable=LIMIT, per_benchmark=config.rules))
    assert rows[0].verdict == "unchanged" and rows[20].verdict == "regression"  # 30% slower is under 50%
    for index in range(20):  # the glob's rows: its values, the rest of the defaults
        assert (rows[index].threshold, rows[index].spread_factor, rows[index].max_undetectable) == (0.5, DEFAULT_K, 1.0)
    for index in range(20, 30):  # the others: the defaults, T = max(threshold, K x spread)
        row = rows[index]
        assert row.threshold == pytest.approx(max(DEFAULT_THRESHOLD, DEFAULT_K * row.spread))
        assert (row.spread_factor, row.max_undetectable) == (DEFAULT_K, LIMIT)
        assert row.threshold == before[index].threshold and row.p_value == before[index].p_value

    # A lower limit for one benchmark: its unchanged rows become underpowered, the others stay unchanged.
    stricter = [Rule("synthetic.*", {"max_undetectable": 0.05})]
    rows = rows_by_index(gate(*sides, max_undetectable=LIMIT, per_benchmark=stricter))
    assert {rows[i].verdict for i in range(21, 30)} == {"underpowered"}
    assert all("over the 5% limit" in rows[i].detail for i in range(21, 30))
    assert {rows[i].verdict for i in range(1, 20)} == {"unchanged"} and rows[20].verdict == "regression"


def test_later_tables_override_earlier_ones_setting_by_setting(tmp_path):
    general = '[benchmarks."attention.*"]\nthreshold = 0.5\nspread_factor = 2.0\n'
    specific = '[benchmarks."attention.causal"]\nthreshold = 0.3\n'
    defaults = RowSettings(0.02, 0.5, 0.1)
    rules = gate_config.load(write(tmp_path / "a.toml", general + specific)).rules
    assert resolve(rules, "attention.causal", defaults) == RowSettings(0.3, 2.0, 0.1)
    assert resolve(rules, "attention.sliding_window", defaults) == RowSettings(0.5, 2.0, 0.1)
    assert resolve(rules, "synthetic.op", defaults) == defaults
    # The general table last: it wins for the settings it sets.
    rules = gate_config.load(write(tmp_path / "b.toml", specific + general)).rules
    assert resolve(rules, "attention.causal", defaults) == RowSettings(0.5, 2.0, 0.1)


def test_pyproject_in_the_current_directory_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert gate_config.load() == GateConfig()  # no pyproject.toml
    write(tmp_path / "pyproject.toml", '[project]\nname = "mine"\n')
    assert gate_config.load() == GateConfig()  # one without the table: nothing changes
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "mine"\n[tool.menagerie.gate]\nthreshold = 0.03\n'
        '[tool.menagerie.gate.benchmarks."attention.*"]\nmax_undetectable = 0.2\n',
    )
    config = gate_config.load()
    assert config.path.name == "pyproject.toml" and config.defaults == {"threshold": 0.03}
    assert config.rules == (Rule("attention.*", {"max_undetectable": 0.2}),)


@pytest.fixture
def records(tmp_path):
    """Run records on disk: nine rows over synthetic.bench0-2, two replicates a side, every row 30% slower in NEW."""
    baseline, new = tmp_path / "base.json", tmp_path / "new.json"
    baseline.write_text(json.dumps(synthetic_run(0, rows=9, benchmarks=3)))
    new.write_text(json.dumps(synthetic_run(1, rows=9, benchmarks=3, scale=1.3)))
    return baseline, new


def compare(capsys, *args):
    capsys.readouterr()
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


GATE_TABLE = 'max_undetectable = 10.0\n[benchmarks."synthetic.bench1"]\nthreshold = 0.5\n'
IN_PYPROJECT = (
    '[project]\nname = "mine"\n[tool.menagerie.gate]\nmax_undetectable = 10.0\n'
    '[tool.menagerie.gate.benchmarks."synthetic.bench1"]\nthreshold = 0.5\n'
)


@pytest.mark.parametrize("where", ["--gate-config", "pyproject.toml"])
def test_compare_applies_the_config(records, tmp_path, capsys, monkeypatch, where):
    if where == "--gate-config":  # a plain file whose top level is the gate table
        options = ["--gate-config", write(tmp_path / "gate.toml", GATE_TABLE)]
    else:
        monkeypatch.chdir(tmp_path)
        write(tmp_path / "pyproject.toml", IN_PYPROJECT)
        options = []
    code, out, err = compare(capsys, *records, *options, "--all", "--json", tmp_path / "v.json")
    assert code == 1, out + err
    rows = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert {(row["key"][0], row["verdict"], row["max_undetectable"]) for row in rows} == {
        ("synthetic.bench0", "regression", 10.0),  # the table's top-level limit for every row
        ("synthetic.bench1", "unchanged", 10.0),  # its glob's threshold is over the 30% slowdown
        ("synthetic.bench2", "regression", 10.0),
    }
    assert {row["threshold"] for row in rows if row["key"][0] == "synthetic.bench1"} == {0.5}
    assert all(row["threshold"] < 0.1 for row in rows if row["key"][0] != "synthetic.bench1")
    assert "50.0%" in out  # the row's own threshold, in the table
    assert "gate config" in err and "1 of 1 benchmark glob(s) applied" in err


def test_flags_override_the_top_level_and_globs_override_flags(records, tmp_path, capsys):
    config = write(tmp_path / "gate.toml", GATE_TABLE)
    code, out, err = compare(
        capsys, *records, "--gate-config", config, "--max-undetectable", "0.001", "--json", tmp_path / "v.json"
    )
    assert code == 1, out + err
    rows = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert {row["max_undetectable"] for row in rows} == {0.001}  # the flag, over the table's top-level 10.0
    bench1 = [row for row in rows if row["key"][0] == "synthetic.bench1"]
    assert {(row["threshold"], row["verdict"]) for row in bench1} == {(0.5, "underpowered")}


@pytest.mark.parametrize(
    "text, message",
    [
        ("threshold = \n", "not valid TOML: Invalid value (at line 1, column"),
        ('[benchmarks."synthetic.*"]\nthresold = 0.05\n', "unknown key 'thresold' (allowed: threshold,"),
        ("threshold = -0.1\n", "threshold must be >= 0, got -0.1"),
        ("max_undetectable = 0\n", "max_undetectable must be > 0"),
        ("spread_factor = true\n", "spread_factor must be a number, got True"),
        ('[benchmarks]\n"synthetic.*" = 0.05\n', 'benchmarks."synthetic.*"] must be a table'),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(records, tmp_path, capsys, text, message):
    config = write(tmp_path / "gate.toml", text)
    code, out, err = compare(capsys, *records, "--gate-config", config)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith(f"menagerie compare: error: {config}: ") and message in line, line


def test_a_bad_pyproject_in_the_current_directory_is_an_error_too(records, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pyproject.toml", '[tool.menagerie.gate.benchmarks."a.*"]\nthreshold = "5%"\n')
    code, _, err = compare(capsys, *records)
    assert code == 2 and err.strip().splitlines() == [
        'menagerie compare: error: pyproject.toml: [tool.menagerie.gate.benchmarks."a.*"]: threshold must be a '
        "number, got '5%'"
    ]
    # A pyproject.toml named by --gate-config must have the table.
    (tmp_path / "other").mkdir()
    with pytest.raises(GateConfigError, match=r"no \[tool.menagerie.gate\] table"):
        gate_config.load(write(tmp_path / "other" / "pyproject.toml", "[project]\n"))


def test_a_glob_that_matches_nothing_warns(records, tmp_path, capsys):
    config = write(
        tmp_path / "gate.toml",
        '[benchmarks."synthetic.bench*"]\nthreshold = 0.5\n[benchmarks."atention.*"]\nthreshold = 0.1\n',
    )
    code, out, err = compare(capsys, *records, "--gate-config", config, "--max-undetectable", "10")
    assert code == 0, out + err  # the one glob that matches raises every row's threshold over the 30% slowdown
    assert f"warning: {config}: benchmark glob 'atention.*' matches none of the compared benchmarks" in err
    assert "1 of 2 benchmark glob(s) applied" in err
