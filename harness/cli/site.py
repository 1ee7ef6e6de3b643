"""``menagerie site``: a static, offline website over stored run records (``harness/site.py``)."""

from __future__ import annotations

from pathlib import Path

from menagerie.harness.cli.common import UsageError, console, errors, positive

# The commands this module adds, with the help `menagerie --help` lists (without building their parsers).
COMMANDS = {
    "site": "a static, offline results website over run records: history, change points, verdicts, rooflines",
}


def add_parser(commands) -> None:
    site = commands.add_parser("site", help=COMMANDS["site"])
    site.add_argument(
        "results",
        nargs="+",
        type=Path,
        metavar="RESULTS_DIR",
        help="folders of run records, searched recursively (e.g. results/history)",
    )
    site.add_argument("-o", "--out", type=Path, required=True, metavar="SITE_DIR", help="folder the site is written to")
    site.add_argument(
        "--by-device",
        action="store_true",
        help="allow records of several devices: one section per device (refused otherwise)",
    )
    site.add_argument(
        "--strict",
        action="store_true",
        help="fail on a file that is not a readable run record (default: skip it with a warning)",
    )
    site.add_argument(
        "--baseline",
        type=Path,
        help="folder of baseline run records: the latest commit is gated against them instead of "
        "against the commit before it",
    )
    site.add_argument(
        "--reports",
        type=Path,
        default=Path("results") / "reports",
        help="where `menagerie report` wrote the runs' reports, <REPORTS>/<run file stem>/; found ones "
        "are copied into the site and linked from each point (default: %(default)s)",
    )
    site.add_argument(
        "--recent", type=positive(int), default=30, help="commits in each sparkline (default: %(default)s)"
    )
    site.add_argument("--cache-dir", type=Path, help="folder for the SQLite indexes (default: inside each folder)")
    site.add_argument(
        "--docs-url",
        metavar="URL",
        help="where the documentation is published (`make docs` builds it): each benchmark page links to its family's",
    )
    site.set_defaults(func=cmd_site)


def cmd_site(args) -> int:
    try:
        from menagerie.harness import site
    except ImportError as error:
        raise UsageError(
            f"the site needs Jinja2 and plotly ({error}); install them with: pip install 'menagerie[site]'"
        ) from None
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    with console.status("building the site") as status:
        try:
            built = site.build(
                args.results,
                args.out,
                by_device=args.by_device,
                strict=args.strict,
                baseline=args.baseline,
                reports=args.reports,
                recent=args.recent,
                cache_dir=args.cache_dir,
                docs_url=args.docs_url,
                on_progress=lambda message: status.update(message),
            )
        except site.SiteError as error:
            raise UsageError(str(error)) from None
    for warning in built.warnings:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"{len(built.benchmarks)} benchmark pages; {len(built.written)} files written, "
        f"{len(built.unchanged)} unchanged, {len(built.removed)} removed",
        highlight=False,
    )
    console.print(f"open {built.out / 'index.html'}", markup=False, highlight=False)
    return 0
