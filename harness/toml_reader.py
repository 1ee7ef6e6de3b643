"""TOML reading for the harness's configuration tables: the standard library's ``tomllib``, or on
Python 3.10 ``tomli``, the package it came from (same API; a dependency there)."""

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

__all__ = ["tomllib"]
