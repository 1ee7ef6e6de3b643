"""``menagerie mlperf``: check a set of MLPerf ResNet logs (compliance, RCP), score it as the rules do, compare."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from menagerie.harness.cli.common import UsageError, console
from menagerie.harness.formatting import format_number

RUN_COLUMNS = (
    "log",
    "compliance",
    "status",
    "best top-1",
    "epochs",
    "minutes",
    "img/s",
    "img/s per accel.",
    "tracked img/s per accel.",
)


# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "mlperf": "check and score a set of MLPerf ResNet logs (ruleset 4.0.0) against MLPerf Training v4.0",
}


def add_parser(commands) -> None:
    check = commands.add_parser("mlperf", help=COMMANDS["mlperf"])
    check.add_argument("logs", nargs="+", type=Path, help="MLLOG files, one per run: a scored set is exactly 5")
    check.add_argument(
        "--out",
        type=Path,
        default=Path("results") / "mlperf",
        help="folder for the compliance and RCP checkers' reports",
    )
    check.add_argument(
        "--anchor",
        choices=("h100", "h200"),
        help="published result to compare with (default: the device the logs' platform names)",
    )
    check.set_defaults(func=cmd_mlperf)


def cmd_mlperf(args) -> int:
    """Exit status 1 when a log fails its compliance check, the RCP check fails or the set is not valid."""
    from menagerie.models import mlperf

    args.out.mkdir(parents=True, exist_ok=True)
    scores, compliance = _check_runs(mlperf, args.logs, args.out)
    console.print(_runs_table(mlperf, scores, compliance))
    minutes = [score.minutes if compliance[score.log][0] else None for score in scores]
    problem = mlperf.set_problem(minutes)
    with console.status("running the RCP checker"):
        rcp = mlperf.check_rcp(args.logs, scores, args.out / "rcp_checker.log")
    anchor, why = mlperf.choose_anchor([score.platform for score in scores], args.anchor)
    console.print(_versus_table(mlperf, anchor, scores, None if problem else mlperf.olympic_mean(minutes)))
    console.print(f"anchor: {anchor.system}, {why}; source: {anchor.source}", highlight=False)
    console.print(_set_line(mlperf, minutes, problem), highlight=False)
    console.print(f"RCP check: {rcp.status}: {rcp.message}", highlight=False)
    failed = [f"{log}: {_problems(report)}" for log, (passed, report) in compliance.items() if not passed]
    for line in failed:
        console.print(f"[red]compliance failed[/] {line}", highlight=False)
    return 1 if failed or problem or rcp.status == "failed" else 0


def _check_runs(mlperf, logs: list[Path], out: Path):
    """Each log's score and ``{log: (compliance passed, checker report)}``; an unreadable log is a UsageError."""
    scores, compliance = [], {}
    for log in logs:
        try:
            with console.status(f"checking {log}"):
                compliance[str(log)] = mlperf.check_compliance(log, out / f"{log.stem}.compliance.log")
            scores.append(mlperf.score(log))
        except mlperf.LogError as error:
            raise UsageError(str(error)) from None
    return scores, compliance


def _problems(report: str) -> str:
    """The checker report's ERROR and WARNING lines, joined."""
    return " | ".join(line for line in report.splitlines() if "ERROR" in line or "WARN" in line)


def _runs_table(mlperf, scores, compliance) -> Table:
    table = Table(title=f"MLPerf Training ResNet-50 runs (compliance ruleset {mlperf.RULESET})")
    for column in RUN_COLUMNS:
        table.add_column(column, justify="left" if column in ("log", "compliance", "status") else "right")
    for score in scores:
        passed = compliance[score.log][0]
        table.add_row(
            score.log,
            "[green]passed" if passed else "[red]FAILED",
            score.status,
            f"{score.best_accuracy:.4f}",
            str(score.epochs),
            format_number(score.minutes, ".2f"),
            f"{score.img_per_s:,.0f}",
            f"{score.img_per_s_per_accelerator:,.0f}",
            format_number(score.tracked_img_per_s_per_accelerator, ",.0f"),
        )
    return table


def _versus_table(mlperf, anchor, scores, our_minutes: float | None) -> Table:
    """Time to train and MLPerf's throughput (median over runs of tracked img/s per accelerator) vs ``anchor``."""
    tracked = mlperf.median_or_none([score.tracked_img_per_s_per_accelerator for score in scores])
    end_to_end = mlperf.median_or_none([score.img_per_s_per_accelerator for score in scores])
    versus = Table(title="against MLPerf Training v4.0 (published)")
    for column in (
        "",
        "global batch",
        "time to train, minutes",
        "tracked img/s per accel.",
        "end-to-end img/s per accel.",
    ):
        versus.add_column(column, justify="left" if not column else "right")
    versus.add_row(
        anchor.system,
        str(anchor.global_batch_size),
        f"{anchor.minutes:.2f}",
        f"{anchor.img_per_s_per_accelerator:,.0f}",
        "-",
    )
    batches = ", ".join(sorted({str(score.global_batch_size) for score in scores}))
    versus.add_row(
        f"these logs ({scores[0].processes} process(es), median over runs)",
        batches,
        format_number(our_minutes, ".2f"),
        format_number(tracked, ",.0f"),
        format_number(end_to_end, ",.0f"),
    )
    versus.add_row(
        "ours / published",
        "",
        format_number(our_minutes and our_minutes / anchor.minutes, ".3f"),
        format_number(tracked and tracked / anchor.img_per_s_per_accelerator, ".3f"),
        "",
    )
    return versus


def _set_line(mlperf, minutes: list[float | None], problem: str | None) -> str:
    if problem:
        return f"[red]not a valid set[/]: {problem}"
    failures = sum(mlperf.is_failure(m) for m in minutes)
    how = "1 failure counted as the slowest run" if failures else "no failure"
    return f"score: olympic mean of {mlperf.SET_SIZE} runs ({how}): {mlperf.olympic_mean(minutes):.2f} minutes"
