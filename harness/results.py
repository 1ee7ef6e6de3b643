"""Run records: one JSON file per run, validated against ``result_schema.json``.

Files are written atomically (a temporary file in the same folder, then a
rename), so an interrupted run never leaves a truncated record behind.
Validation needs ``jsonschema`` (a test dependency, and a core one when installed
from ``pyproject.toml``); where it is missing (the lent GPU machines' image) records
are written and read unvalidated, with one warning.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

try:
    import jsonschema
except ImportError:
    jsonschema = None

SCHEMA_VERSION = 2
READ_SCHEMA_VERSIONS = (1, 2)  # version 1: one process per record, no replicate fields
SCHEMA_PATH = Path(__file__).with_name("result_schema.json")
DEFAULT_RUNS_DIR = Path("results") / "runs"
# A row's statuses, best first: where records of one row disagree (replicates, repeated runs), the worst wins.
# noisy: timed, above --max-noise when its time ran out (harness/timing.py); throttled: blocks timed while the GPU
# slowed down were kept (harness/throttle.py); wrong-after-timing and mutates-inputs: harness/recheck.py.
STATUS_RANK = {
    "ok": 0,
    "noisy": 1,
    "throttled": 2,
    "skipped": 3,
    "accuracy_failed": 4,
    "wrong-after-timing": 5,
    "mutates-inputs": 6,
    "error": 7,
}
MEASURED_STATUSES = ("ok", "noisy")  # timed rows that the gate compares and the history keeps
FAILED_STATUSES = ("accuracy_failed", "wrong-after-timing", "mutates-inputs", "error")


class ResultError(ValueError):
    """A results file that cannot be read or does not match the schema."""


@functools.cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate(record: dict) -> None:
    if jsonschema is None:
        warnings.warn("jsonschema is not installed: run records are not validated", stacklevel=2)
        return
    try:
        jsonschema.validate(record, schema())
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ResultError(f"not a valid menagerie run record at {where}: {error.message}") from None


def run_filename(record: dict) -> str:
    provenance = record["provenance"]
    stamp = re.sub(r"[^0-9T]", "", provenance["timestamp"].split("+")[0])
    device = re.sub(r"[^A-Za-z0-9]+", "-", provenance["device"]).strip("-").lower()[:40]
    sha = (provenance["git"]["sha"] or "nogit")[:8]
    return f"{stamp}_{device}_{record['config']['size']}_{sha}.json"


def write_bytes_atomically(data: bytes, path: Path, exclusive: bool = False) -> Path:
    """Writes ``data`` to ``path`` through a temporary file beside it, flushed to disk and renamed into
    place, so a reader (or a crash, a kill, a full disk) never leaves half a file at ``path``: the suite
    writes every file this way. ``exclusive``: FileExistsError when ``path`` exists, never replacing it
    (the check and the placing are one step, so two writers cannot both take a name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # mkstemp makes it private; results are for sharing
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if exclusive:
            os.link(temporary, path)
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(text: str, path: Path) -> Path:
    """``write_bytes_atomically`` of ``text`` in UTF-8."""
    return write_bytes_atomically(text.encode("utf-8"), path)


def write_json_atomically(record: dict, path: Path) -> Path:
    """Writes ``record`` as indented JSON to ``path`` (``write_text_atomically``)."""
    return write_text_atomically(json.dumps(record, indent=1, allow_nan=False) + "\n", path)


def write_run(record: dict, out: Path) -> Path:
    """Validates and writes ``record``; ``out`` is a folder (a name is chosen that no other run there has, even
    one written at the same moment: ``-2``, ``-3``, ... after the name) or a .json path."""
    validate(record)
    out = Path(out)
    if out.suffix == ".json":
        return write_json_atomically(record, out)
    text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    name = run_filename(record)
    for attempt in range(1, 1000):
        candidate = out / (name if attempt == 1 else name.replace(".json", f"-{attempt}.json"))
        try:
            return write_bytes_atomically(text.encode("utf-8"), candidate, exclusive=True)
        except FileExistsError:
            continue
    raise FileExistsError(f"{out}: no free name for {name}")


def load_run(path: Path | str) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except OSError as error:
        raise ResultError(f"cannot read results file {path}: {error.strerror}") from None
    except ValueError as error:
        raise ResultError(f"{path} is not JSON: {error}") from None
    if isinstance(record, dict) and record.get("schema_version") not in (None, *READ_SCHEMA_VERSIONS):
        raise ResultError(
            f"{path} has schema_version {record.get('schema_version')}; this menagerie reads "
            f"{', '.join(map(str, READ_SCHEMA_VERSIONS))}"
        )
    try:
        validate(record)
    except ResultError as error:
        raise ResultError(f"{path}: {error}") from None
    return record


def load_runs(path: Path | str) -> tuple[list[dict], list[str]]:
    """The run records at ``path``: a record file, or every ``*.json`` below a folder (recursively,
    in name order) that is a run record; the other JSON files there (studies, compile records,
    indexes) are passed over and named in the second list. Raises ``ResultError`` for a path
    that does not exist, a file that is not a run record, or a folder without any."""
    path = Path(path)
    if path.is_file():
        return [load_run(path)], []
    if not path.is_dir():
        raise ResultError(f"{path}: no such run record or folder")
    records, passed_over = [], []
    for candidate in sorted(path.rglob("*.json")):
        try:
            records.append(load_run(candidate))
        except ResultError as error:
            passed_over.append(str(error))
    if not records:
        raise ResultError(
            f"{path}: no run record in this folder" + (f" ({len(passed_over)} other JSON files)" if passed_over else "")
        )
    return records, passed_over


def row_key(row: dict) -> tuple[str, str, str, str, str]:
    return (row["benchmark"], row["case"], row["impl"], row["dtype"], row["mode"])
