"""The layers, checked from the import graph: what each of the four folders may import.

``kernels`` imports none of the other three; ``harness`` (the engine) imports no model and no
benchmark family; ``models`` may import ``harness`` and ``kernels``; ``benchmarks`` may import
all three. Every import statement counts, those inside functions too.
"""

import ast
import gc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("kernels", "harness", "models", "benchmarks")
MAY_IMPORT = {
    "kernels": {"kernels"},
    "harness": {"harness", "kernels"},
    "models": {"models", "harness", "kernels"},
    "benchmarks": set(LAYERS),
}
GENERIC_NAMES = set(LAYERS)  # never imported at the top level: the suite imports as menagerie.*


def parse(path: Path) -> ast.Module:
    # CPython 3.11 keeps one AST-building depth counter per interpreter: a garbage collection during
    # ast.parse whose finalizer parses too corrupts it (SystemError "AST constructor recursion depth
    # mismatch", python/cpython#106905). No collection runs while the tree is built.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(), filename=str(path))
    finally:
        if was_enabled:
            gc.enable()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_each_layer_imports_only_what_it_may():
    wrong = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            for line, module in imported_modules(path):
                parts = module.split(".")
                if parts[0] in GENERIC_NAMES:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} (not under menagerie.)")
                elif parts[0] == "menagerie" and len(parts) > 1 and parts[1] not in MAY_IMPORT[layer]:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_arrow(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def late():\n    from menagerie.benchmarks import attention\n")
    assert imported_modules(planted) == [(2, "menagerie.benchmarks")]


class ParsesWhenCollected:
    def __del__(self):
        ast.parse("x = [1, (2, 3)]")


def test_the_check_survives_a_collection_that_parses():
    path = ROOT / "kernels" / "ssm" / "selective_scan.py"
    for _ in range(100):
        for _ in range(50):  # cycles, so only the collector frees them, at any allocation
            first, second = ParsesWhenCollected(), ParsesWhenCollected()
            first.other, second.other = second, first
            del first, second
        assert imported_modules(path)
    gc.collect()
