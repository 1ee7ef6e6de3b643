"""``menagerie mlperf``: check MLPerf logs for compliance, score time to train, compare with MLPerf v4.0."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from harness.cli.common import UsageError, console
from harness.formatting import format_number


def add_parser(commands) -> None:
    check = commands.add_parser("mlperf", help="check MLPerf logs (ruleset 4.0.0), time to train, compare with MLPerf v4.0")
    check.add_argument("logs", nargs="+", type=Path, help="MLLOG files, one per run (5 for an olympic mean)")
    check.add_argument("--out", type=Path, default=Path("results") / "mlperf",
                       help="folder for the compliance checker's reports")
    check.set_defaults(func=cmd_mlperf)


def cmd_mlperf(args) -> int:
    from models import mlperf

    table = Table(title=f"MLPerf Training ResNet-50 (compliance ruleset {mlperf.RULESET})")
    for column in ("log", "compliance", "status", "best top-1", "epochs", "minutes", "img/s", "img/s per accel."):
        table.add_column(column, justify="left" if column in ("log", "compliance", "status") else "right")
    args.out.mkdir(parents=True, exist_ok=True)
    scores, failed = [], []
    for log in args.logs:
        try:
            with console.status(f"checking {log}"):
                passed, report = mlperf.check_compliance(log, args.out / f"{log.stem}.compliance.log")
            score = mlperf.score(log)
        except mlperf.LogError as error:
            raise UsageError(str(error)) from None
        if not passed:
            failed.append(f"{log}: " + " | ".join(line for line in report.splitlines() if "ERROR" in line or "WARN" in line))
        scores.append(score)
        table.add_row(str(log), "[green]passed" if passed else "[red]FAILED", score.status, f"{score.best_accuracy:.4f}",
                      str(score.epochs), format_number(score.minutes, ".2f"), f"{score.img_per_s:,.0f}",
                      f"{score.img_per_s_per_accelerator:,.0f}")
    console.print(table)
    minutes = [score.minutes for score in scores if score.minutes is not None]
    if len(minutes) >= 3:
        our_minutes, how = mlperf.olympic_mean(minutes), f"olympic mean of {len(minutes)}"
    else:
        our_minutes, how = (minutes[0], "one run") if len(minutes) == 1 else (None, "no successful run")
    per_accelerator = max(score.img_per_s_per_accelerator for score in scores)
    published = mlperf.PUBLISHED
    versus = Table(title="against MLPerf Training v4.0 (published)")
    for column in ("", "time to train, minutes", "img/s per accelerator"):
        versus.add_column(column, justify="left" if not column else "right")
    versus.add_row(published["system"], f"{published['minutes']:.2f}", f"{published['img_per_s_per_accelerator']:,.0f}")
    versus.add_row(f"these logs ({scores[0].processes} process(es)): {how}", format_number(our_minutes, ".2f"),
                   f"{per_accelerator:,.0f}")
    versus.add_row("ours / published", format_number(our_minutes and our_minutes / published["minutes"], ".3g"),
                   f"{per_accelerator / published['img_per_s_per_accelerator']:.3g}")
    console.print(versus)
    if len(minutes) not in (0, 5):
        console.print(f"note: MLPerf scores ResNet over 5 runs; {len(minutes)} successful run(s) given")
    for line in failed:
        console.print(f"[red]compliance failed[/] {line}", highlight=False)
    return 1 if failed else 0
