"""The families' ``menagerie`` commands, one module each with ``add_parser(commands)``.

The harness finds them through the ``menagerie.commands`` entry points in pyproject.toml,
so that the engine never imports ``models``.
"""
