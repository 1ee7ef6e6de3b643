"""The gate's verdicts where CI shows them: a pull-request comment in Markdown, a JUnit XML report, and on
GitHub Actions the job summary and error annotations.

- ``markdown``: at most ``MARKDOWN_LINES`` lines: the verdict, the uniform shift, failing record findings, the
  failing rows and the improvements as tables with each row's own threshold (the longest lists cut, saying how
  many more), the underpowered rows with their limit and the replicates per side they would need, and a count of
  the rest. With ``site_url``, each benchmark links to its page on the results site (``menagerie site``'s
  ``benchmarks/<slug>.html``).
- ``junit``: one test case per row (and one for the uniform shift), named ``benchmark``/``impl case dtype
  mode``; a failing verdict is a failure whose message is the verdict and whose text is its reason. GitLab
  reads the same file as a ``junit`` report artifact.
- ``github``: when ``GITHUB_STEP_SUMMARY`` is set the Markdown is appended to it, and under GitHub Actions
  (``GITHUB_ACTIONS=true``) every failing row is also an ``::error`` annotation.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree

from menagerie.harness.formatting import format_number, slug

MARKDOWN_LINES = 60
TABLE_ROWS = 12  # per table in the Markdown; the rest are counted


def _name(row, site_url: str | None) -> str:
    benchmark, case, impl, dtype, mode = row.key
    linked = f"[{benchmark}]({site_url.rstrip('/')}/benchmarks/{slug(benchmark)}.html)" if site_url else benchmark
    return f"{linked} | {impl} | {case} | {dtype} {mode}"


def _table(title: str, rows: list, site_url: str | None) -> list[str]:
    if not rows:
        return []
    lines = [
        f"**{title}** ({len(rows)})",
        "",
        "| benchmark | impl | case | dtype, mode | new/base | 95% CI | threshold | verdict |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for row in rows[:TABLE_ROWS]:
        ci = f"{row.ci[0]:.3f}–{row.ci[1]:.3f}" if row.ci else "-"
        lines.append(
            f"| {_name(row, site_url)} | {format_number(row.ratio, '.3f')} | {ci} | "
            f"{format_number(row.threshold, '.1%')} | {row.verdict} |"
        )
    if len(rows) > TABLE_ROWS:
        lines.append(f"| … and {len(rows) - TABLE_ROWS} more | | | | | | | |")
    return lines + [""]


def markdown(result, site_url: str | None = None) -> str:
    """A pull-request comment of at most ``MARKDOWN_LINES`` lines."""
    lines = [f"### menagerie gate: {'passed' if result.passed else 'failed'}", ""]
    if result.uniform and result.uniform.ratio is not None:
        uniform = result.uniform
        ci = f" (95% CI {uniform.ci[0]:.3f}–{uniform.ci[1]:.3f})" if uniform.ci else ""
        lines += [
            f"Uniform shift of whole runs: new/base {uniform.ratio:.3f}{ci}, "
            f"detectable {format_number(uniform.detectable, '.1%')}: **{uniform.verdict}**",
            "",
        ]
    lines += [f"- **{finding.kind}**: {finding.detail}" for finding in result.findings if finding.failing]
    underpowered = [row for row in result.rows if row.verdict == "underpowered"]
    failing = [row for row in result.rows if row.failing and row.verdict != "underpowered"]
    improved = [row for row in result.rows if row.verdict == "improvement"]
    lines += _table("Failing", sorted(failing, key=lambda row: -(row.ratio or 0)), site_url)
    lines += _table("Improvements", sorted(improved, key=lambda row: row.ratio or 0), site_url)
    if underpowered:
        limits = {row.max_undetectable for row in underpowered}
        limit = f"{result.max_undetectable:.0%}" if limits == {result.max_undetectable} else "each row's limit"
        lines += [f"**Underpowered** ({len(underpowered)}): a slowdown of {limit} could go unseen there", ""]
        for row in underpowered[:TABLE_ROWS]:
            needs = (
                f"{row.replicates_needed} replicates per side would do"
                if row.replicates_needed
                else "no replicate count brings it under the limit"
            )
            lines.append(
                f"- {'/'.join(row.key)}: detectable {format_number(row.detectable, '.1%')} "
                f"(limit {row.max_undetectable:.0%}); {needs}"
            )
        if len(underpowered) > TABLE_ROWS:
            lines.append(f"- … and {len(underpowered) - TABLE_ROWS} more")
        lines.append("")
    rest = len(result.rows) - len(failing) - len(improved) - len(underpowered)
    lines.append(
        f"{len(result.rows)} rows compared: {len(failing) + len(underpowered)} failing, {len(improved)} "
        f"improved, {rest} other."
    )
    return "\n".join(lines[:MARKDOWN_LINES]) + "\n"


def junit(result) -> str:
    """JUnit XML: one test case per row and one for the uniform shift; a failing verdict is a failure."""
    suite = ElementTree.Element(
        "testsuite", name="menagerie gate", tests=str(len(result.all_rows)), failures=str(len(result.failures))
    )
    for row in result.all_rows:
        benchmark, case, impl, dtype, mode = row.key
        case_element = ElementTree.SubElement(
            suite, "testcase", classname=benchmark, name=f"{impl} {case} {dtype} {mode}"
        )
        if row.failing:
            failure = ElementTree.SubElement(case_element, "failure", message=row.verdict)
            failure.text = row.detail
    root = ElementTree.Element("testsuites")
    root.append(suite)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def github(result, text: str) -> list[str]:
    """Appends ``text`` to GitHub's job summary when ``GITHUB_STEP_SUMMARY`` is set; returns the ``::error``
    annotations of the failing rows under GitHub Actions (empty elsewhere), for the caller to print."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as file:
            file.write(text)
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return []
    escape = lambda message: message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")  # noqa: E731
    return [
        f"::error title=menagerie gate: {row.verdict}::{escape('/'.join(row.key) + ': ' + row.detail)}"
        for row in result.failures
    ]
