"""``menagerie compile --diff BASE``: the compile record at a git ref against the tree's, unit by unit.

Matching
    A fingerprint changes with any edit to a kernel's source, so units are matched across the
    two records by what identifies them to a reader: the Triton version and architecture (the
    record's path), the kernel, its configuration (tile sizes, warps, stages) and its
    specialization (argument types, divisibility, constexpr values). A specialization key that
    only one side has (a constexpr added or removed) matches when its value is off (False,
    None or 0): a new flag that is off gives the kernel as it was. A unit with such a key on,
    or with no counterpart, is reported as new or gone, not compared.

Occupancy
    Theoretical, from the architecture's limits (``gpu_archs.Arch.occupancy``): resident blocks
    per SM = min(max blocks, max threads per SM // (32 warps), registers per SM //
    (registers per warp * warps), shared per SM // (shared bytes + the 1 KB each block
    reserves)), where registers per warp are ceil(registers * 32 / 256) * 256; the warp share
    is blocks * warps / (max threads per SM / 32).

Failing
    A matched unit fails when it spills and did not (its verdict turns to ``spills``), no longer
    compiles (``error``), its MMA class falls (tcgen05 -> wgmma -> mma -> none: wgmma to
    mma.sync to FMA), or its resident blocks per SM fall by more than ``max_occupancy_drop``,
    unless its label matches a pattern of ``accept``. Other changes (registers, stack, shared
    memory) are reported, worst first, and do not fail. New units are the compile check's to
    judge.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from menagerie.harness.compile_record import MMA_CLASSES, RecordError, load, specialization_label
from menagerie.harness.gpu_archs import ARCHS

MMA_RANK = {name: len(MMA_CLASSES) - index for index, (name, _) in enumerate(MMA_CLASSES)} | {"none": 0}
DEFAULT_MAX_OCCUPANCY_DROP = 1  # resident blocks per SM


class DiffError(ValueError):
    """A ref or record that cannot be read: the message says which and why."""


@dataclass(frozen=True)
class UnitChange:
    label: str  # "kernel@<triton version>/<arch> [specialization] config"
    kernel: str
    base: dict
    tree: dict
    base_blocks: int
    tree_blocks: int
    warps: int
    failures: tuple[str, ...]  # why it fails the diff; empty when it does not
    accepted: bool

    @property
    def fails(self) -> bool:
        return bool(self.failures) and not self.accepted

    @property
    def register_change(self) -> int:
        return self.tree["registers"] - self.base["registers"]


@dataclass
class Diff:
    base_ref: str
    changes: list[UnitChange]  # matched units whose results differ, worst first
    matched: int
    new: list[str]
    gone: list[str]

    @property
    def failing(self) -> list[UnitChange]:
        return [change for change in self.changes if change.fails]


def _is_off(value) -> bool:
    return value in (False, None, 0)


def _label(entry: dict, where: str) -> str:
    config = " ".join(f"{key}={value}" for key, value in entry["config"].items())
    return f"{entry['kernel']}@{where} [{specialization_label(entry['specialization'])}] {config}"


def _div16(special: dict) -> list[str]:
    return [name for name in special.get("div16", "").split(",") if name]


def _identities(entries: dict[str, dict], other: dict[str, dict]) -> dict[tuple, str]:
    """Each unit's match identity (kernel, config, specialization on the keys both records know for the kernel),
    to its fingerprint; units with a one-sided key on are left out. An integer argument that only one side
    specializes (an argument added or removed) is left out of the divisibility list."""
    keys_elsewhere: dict[str, set[str]] = {}
    divisible_elsewhere: dict[str, set[str]] = {}
    for entry in other.values():
        keys_elsewhere.setdefault(entry["kernel"], set()).update(entry["specialization"])
        divisible_elsewhere.setdefault(entry["kernel"], set()).update(_div16(entry["specialization"]))
    identities = {}
    for fingerprint, entry in entries.items():
        shared = keys_elsewhere.get(entry["kernel"], set())
        special = entry["specialization"]
        if any(key not in shared and not _is_off(value) for key, value in special.items()):
            continue
        kept = {key: value for key, value in special.items() if key in shared}
        if "div16" in kept:
            divisible = divisible_elsewhere.get(entry["kernel"], set())
            kept["div16"] = ",".join(name for name in _div16(special) if name in divisible)
        identities[(entry["kernel"], json.dumps(entry["config"], sort_keys=True), json.dumps(kept, sort_keys=True))] = (
            fingerprint
        )
    return identities


def _change(
    base: dict, tree: dict, where: str, arch: str, max_occupancy_drop: int, accept: tuple[str, ...]
) -> UnitChange | None:
    compared = ("verdict", "registers", "stack_bytes", "local_bytes", "shared_bytes", "mma_class")
    if all(base.get(name) == tree.get(name) for name in compared):
        return None
    warps = tree["config"].get("num_warps", 4)
    limits = ARCHS[arch]
    base_blocks = limits.occupancy(base["registers"], base["shared_bytes"], warps)[0] if base["registers"] else 0
    tree_blocks = limits.occupancy(tree["registers"], tree["shared_bytes"], warps)[0] if tree["registers"] else 0
    failures = []
    if tree["verdict"] != base["verdict"] and tree["verdict"] in ("spills", "error"):
        failures.append("no longer compiles" if tree["verdict"] == "error" else "spills")
    if MMA_RANK.get(tree["mma_class"], 0) < MMA_RANK.get(base["mma_class"], 0):
        failures.append(f"MMA {base['mma_class']} -> {tree['mma_class']}")
    if tree["verdict"] != "error" and base_blocks - tree_blocks > max_occupancy_drop:
        failures.append(f"occupancy {base_blocks} -> {tree_blocks} blocks/SM")
    label = _label(tree, where)
    accepted = any(pattern == tree["kernel"] or fnmatch.fnmatchcase(label, pattern) for pattern in accept)
    return UnitChange(label, tree["kernel"], base, tree, base_blocks, tree_blocks, warps, tuple(failures), accepted)


def diff_records(
    base: dict[str, dict],
    tree: dict[str, dict],
    where: str,
    arch: str,
    max_occupancy_drop: int = DEFAULT_MAX_OCCUPANCY_DROP,
    accept: tuple[str, ...] = (),
) -> tuple[list[UnitChange], int, list[str], list[str]]:
    """One record file's two versions: (changed units, matched count, new labels, gone labels). A fingerprint in
    both is the same unit, unchanged; the others are matched by identity."""
    same = base.keys() & tree.keys()
    base = {fingerprint: entry for fingerprint, entry in base.items() if fingerprint not in same}
    tree = {fingerprint: entry for fingerprint, entry in tree.items() if fingerprint not in same}
    base_ids, tree_ids = _identities(base, tree), _identities(tree, base)
    changes, matched = [], len(same)
    for identity, fingerprint in tree_ids.items():
        if identity in base_ids:
            matched += 1
            change = _change(base[base_ids[identity]], tree[fingerprint], where, arch, max_occupancy_drop, accept)
            if change:
                changes.append(change)
    matched_tree = {tree_ids[identity] for identity in tree_ids if identity in base_ids}
    matched_base = {base_ids[identity] for identity in base_ids if identity in tree_ids}
    new = [_label(entry, where) for fingerprint, entry in tree.items() if fingerprint not in matched_tree]
    gone = [_label(entry, where) for fingerprint, entry in base.items() if fingerprint not in matched_base]
    return changes, matched, sorted(new), sorted(gone)


def worst_first(change: UnitChange) -> tuple:
    """Failing units, then accepted ones, then by the size of the register change."""
    return not change.fails, not change.failures, -abs(change.register_change), change.label


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise DiffError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def merge_base(record_dir: Path, branch: str = "main") -> str:
    """The merge base of HEAD with ``branch``: what a change on a branch is compared with."""
    try:
        return _git("merge-base", "HEAD", branch, cwd=record_dir).strip()
    except DiffError as error:
        raise DiffError(f"{error}; give the base as `--diff REF`") from None


def _record_at(ref: str, path: Path, top: Path) -> dict[str, dict]:
    relative = path.resolve().relative_to(top)
    done = subprocess.run(["git", "show", f"{ref}:{relative.as_posix()}"], cwd=top, capture_output=True, text=True)
    if done.returncode:
        return {}  # no record there at that ref: every unit is new
    try:
        entries = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise DiffError(f"{ref}:{relative}: not valid JSON at line {error.lineno}, column {error.colno}") from None
    return entries


def diff(
    base_ref: str, record_dir: Path, max_occupancy_drop: int = DEFAULT_MAX_OCCUPANCY_DROP, accept: tuple[str, ...] = ()
) -> Diff:
    """Every record under ``record_dir`` (``<triton version>/<arch>.json``) against its version at ``base_ref``."""
    record_dir = Path(record_dir)
    if not record_dir.is_dir():
        raise DiffError(f"{record_dir}: no compile record folder")
    top = Path(_git("rev-parse", "--show-toplevel", cwd=record_dir).strip()).resolve()
    _git("rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}", cwd=top)
    result = Diff(base_ref, [], 0, [], [])
    for path in sorted(record_dir.glob("*/*.json")):
        arch = path.stem
        if arch not in ARCHS:
            continue
        try:
            tree = load(path)
        except RecordError as error:
            raise DiffError(str(error)) from None
        where = f"{path.parent.name}/{arch}"
        changes, matched, new, gone = diff_records(
            _record_at(base_ref, path, top), tree, where, arch, max_occupancy_drop, accept
        )
        result.changes += changes
        result.matched += matched
        result.new += new
        result.gone += gone
    result.changes.sort(key=worst_first)
    return result
