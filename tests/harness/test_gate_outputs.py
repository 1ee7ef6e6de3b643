"""The gate's outputs for CI (``harness/gate_outputs.py``): Markdown within its line budget, JUnit that parses
with one case per row, GitHub's job summary and annotations, through `menagerie compare`."""

from pathlib import Path

import junitparser
import pytest

from menagerie.harness import gate_outputs
from menagerie.harness.cli import main
from menagerie.harness.gate import gate
from tests.harness.noise import planted_comparison


@pytest.fixture(scope="module")
def sides():
    """A 300-row comparison: 5 rows 30% slower, 2 faster, three runs a side."""
    return planted_comparison()


def test_the_markdown_fits_its_budget_and_names_the_regressions(sides):
    result = gate(*sides)  # at the default limit most rows are underpowered too: the lists are cut
    text = gate_outputs.markdown(result, site_url="https://example.org/site/")
    lines = text.splitlines()
    assert len(lines) <= gate_outputs.MARKDOWN_LINES and lines[0] == "### menagerie gate: failed"
    assert sum("| regression |" in line for line in lines) == 5
    assert "(https://example.org/site/benchmarks/synthetic.op.html)" in text
    assert "**Underpowered**" in text and "replicates per side would do" in text


def test_junit_has_one_case_per_row_and_one_failure_per_failing_row(sides, tmp_path):
    result = gate(*sides, max_undetectable=0.5)
    path = tmp_path / "gate.xml"
    path.write_text(gate_outputs.junit(result))
    [suite] = list(junitparser.JUnitXml.fromfile(str(path)))
    cases = list(suite)
    assert len(cases) == len(result.all_rows) == 301
    failed = [case for case in cases if not case.is_passed]
    assert len(failed) == len(result.failures) == 5
    assert all(case.result[0].message == "regression" for case in failed)


def test_github_gets_the_summary_and_an_error_per_failing_row(sides, tmp_path, monkeypatch):
    result = gate(*sides, max_undetectable=0.5)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    annotations = gate_outputs.github(result, "the comment\n")
    assert summary.read_text() == "the comment\n"
    assert len(annotations) == 5 and all(
        line.startswith("::error title=menagerie gate: regression::") for line in annotations
    )
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert gate_outputs.github(result, "again\n") == [] and summary.read_text() == "the comment\nagain\n"


def test_compare_writes_every_output_in_one_call(sides, tmp_path, capsys, monkeypatch):
    """What `menagerie compare ... --markdown PATH --junit PATH` writes after its table (synthetic records are not
    run records on disk, so the command's last step is called with its options)."""
    from types import SimpleNamespace

    from menagerie.harness.cli import compare

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    result = gate(*sides, max_undetectable=0.5)
    compare.write_ci_outputs(
        result, SimpleNamespace(markdown=tmp_path / "c.md", junit=tmp_path / "g.xml", site_url=None)
    )
    assert f"wrote {tmp_path / 'c.md'}" in capsys.readouterr().out
    assert (tmp_path / "c.md").read_text().startswith("### menagerie gate: failed")
    assert len(list(next(iter(junitparser.JUnitXml.fromfile(str(tmp_path / "g.xml")))))) == 301
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "--junit PATH" in capsys.readouterr().out


def test_the_json_validates_against_its_schema(sides):
    import json

    import jsonschema

    from menagerie.harness.cli.compare import GATE_JSON_VERSION, gate_json

    schema = json.loads((Path(gate_outputs.__file__).with_name("gate_schema.json")).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for result in (gate(*sides), gate(*sides, max_undetectable=0.5), gate(sides[0][:1], sides[1][:1])):
        document = json.loads(json.dumps(gate_json(result)))  # as written: tuples become lists
        jsonschema.validate(document, schema)
        assert document["schema_version"] == GATE_JSON_VERSION == 1
    document["rows"][0]["verdict"] = "slower"  # a verdict the schema does not know fails it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
