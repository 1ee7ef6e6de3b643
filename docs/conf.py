"""Sphinx configuration: `make docs` builds these pages into site-docs/, offline, warnings as errors.

Sphinx and Furo rather than MkDocs and Material: Material's offline search loads a script from
unpkg.com at page load, so with no network it fails and the console shows the error; Sphinx's
search reads its index as a local script and works from file://, and Furo loads no font or script
from elsewhere. Pages are Markdown (MyST); the CLI reference is generated from the argument
parsers (``cli_reference.py``) and the API reference from the docstrings (autodoc).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

project = "menagerie"
author = "the menagerie developers"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated"]
myst_heading_anchors = 3  # links to a page's sections, as GitHub renders them
html_theme = "furo"
html_title = "menagerie"
html_static_path = []
html_show_search_summary = False  # the summaries are fetched from each page, which browsers refuse from file://
autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = False  # type annotations name torch and numpy classes that have no page here


def write_cli_reference(app) -> None:
    """``_generated/cli_commands.md`` from the parsers of this checkout (argparse's usage at 100 columns)."""
    import cli_reference

    os.environ["COLUMNS"] = "100"
    from menagerie.harness.cli import build_parser

    generated = HERE / "_generated"
    generated.mkdir(exist_ok=True)
    # Written beside and renamed into place: two builds at once (parallel test workers) never read half a file.
    partial = generated / f"cli_commands.md.{os.getpid()}"
    partial.write_text(cli_reference.reference(build_parser()))
    os.replace(partial, generated / "cli_commands.md")


def setup(app):
    app.connect("builder-inited", write_cli_reference)
