"""``menagerie compile --diff``: a record against another commit's, unit by unit.

The rules on synthetic entries first; then two planted kernel changes, compiled for real and committed in a
scratch git repository: a wider accumulator that costs resident blocks, and a product taken off the tensor
cores.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from menagerie.harness import compile_record
from menagerie.harness.cli import main
from menagerie.harness.compile_diff import diff_records, worst_first

ROOT = Path(__file__).resolve().parents[2]


def entry(kernel="_k", registers=40, stack=0, shared=0, mma="mma", warps=4, verdict=None, **special):
    return {
        "kernel": kernel,
        "config": {"BLOCK": 32, "num_warps": warps, "num_stages": 2},
        "specialization": {"x_ptr": "*fp16", "div16": "n,m", **special},
        "registers": registers,
        "stack_bytes": stack,
        "local_bytes": stack,
        "shared_bytes": shared,
        "mma_class": mma,
        "verdict": verdict or ("spills" if stack else "ok"),
        "tensor_core_ops": [],
        "error": "",
    }


def compare(base, tree, **options):
    return diff_records({"a": base}, {"b": tree}, "3.8.0/sm_90", "sm_90", **options)


def test_an_unchanged_unit_under_a_new_fingerprint_is_matched_and_quiet():
    changes, matched, new, gone = compare(entry(), entry())
    assert (changes, matched, new, gone) == ([], 1, [], [])
    # the same fingerprint on both sides is the same unit, whatever else shares its identity
    changes, matched, new, gone = diff_records({"a": entry()}, {"a": entry(), "b": entry()}, "3.8.0/sm_90", "sm_90")
    assert (changes, matched, len(new), gone) == ([], 1, 1, [])


def test_register_and_shared_changes_are_reported_without_failing():
    # 130 -> 136 registers at 4 warps: 3 resident blocks on sm_90 either way
    [change], matched, _, _ = compare(entry(registers=130), entry(registers=136, shared=1024))
    assert matched == 1 and change.register_change == 6 and not change.failures and not change.fails


@pytest.mark.parametrize(
    "tree, reason",
    [
        (entry(stack=16), "spills"),
        (entry(verdict="error", registers=0), "no longer compiles"),
        (entry(mma="none"), "MMA mma -> none"),
        # 40 -> 168 registers at 4 warps: 12 -> 3 resident blocks on sm_90 (registers per warp 1280 -> 5376)
        (entry(registers=168), "occupancy 12 -> 3 blocks/SM"),
    ],
)
def test_a_unit_that_got_worse_fails_saying_how(tree, reason):
    [change], _, _, _ = compare(entry(), tree)
    assert change.fails and change.failures == (reason,)


def test_an_mma_upgrade_and_a_one_block_drop_pass():
    [change], _, _, _ = compare(entry(mma="mma"), entry(mma="wgmma"))
    assert not change.failures
    [change], _, _, _ = compare(entry(registers=128), entry(registers=168), max_occupancy_drop=1)
    assert (change.base_blocks, change.tree_blocks) == (4, 3) and not change.fails


def test_accept_names_a_kernel_or_a_label_pattern():
    assert not compare(entry(), entry(mma="none"), accept=("_k",))[0][0].fails
    assert not compare(entry(), entry(mma="none"), accept=("_k@3.8.0/sm_90 [fp16*",))[0][0].fails
    assert compare(entry(), entry(mma="none"), accept=("_other",))[0][0].fails


def test_a_new_flag_that_is_off_matches_the_old_kernel_and_one_that_is_on_is_new():
    base = {"a": entry()}
    tree = {"off": entry(HAS_X=False, div16="n,m,x_count"), "on": entry(HAS_X=True, div16="n,m,x_count")}
    changes, matched, new, gone = diff_records(base, tree, "3.8.0/sm_90", "sm_90")
    assert (changes, matched, gone) == ([], 1, []) and len(new) == 1 and "HAS_X=True" in new[0]


def test_another_specialization_is_new_and_the_old_one_gone():
    changes, matched, new, gone = compare(entry(x_ptr="*fp16"), entry(x_ptr="*bf16"))
    assert (changes, matched, len(new), len(gone)) == ([], 0, 1, 1)


def test_failing_units_come_first():
    base = {name: entry(kernel=name, registers=130) for name in ("_a", "_b", "_c")}
    tree = {
        "a2": entry(kernel="_a", registers=140),
        "b2": entry(kernel="_b", registers=130, mma="none"),
        "c2": entry(kernel="_c", registers=132),
    }
    changes, *_ = diff_records(base, tree, "3.8.0/sm_90", "sm_90")
    changes.sort(key=worst_first)
    assert [change.kernel for change in changes] == ["_b", "_a", "_c"]


PLANTED = '''
"""Two kernels for the compile diff's tests: WIDTH sets the accumulator, USE_DOT the product's unit."""
import torch
import triton
import triton.language as tl

from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register

WIDTH = tl.constexpr({width})
USE_DOT = tl.constexpr({use_dot})


@triton.jit
def _wide_kernel(x_ptr, y_ptr, steps, ROWS: tl.constexpr):
    offsets = tl.arange(0, ROWS)[:, None] * WIDTH + tl.arange(0, WIDTH)[None, :]
    acc = tl.zeros((ROWS, WIDTH), dtype=tl.float32)
    for step in range(steps):
        acc = acc * 0.5 + tl.load(x_ptr + offsets).to(tl.float32) * step
    tl.store(y_ptr + offsets, acc.to(y_ptr.dtype.element_ty))


@triton.jit
def _product_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
    offsets = tl.arange(0, N)[:, None] * N + tl.arange(0, N)[None, :]
    a = tl.load(a_ptr + offsets)
    b = tl.load(b_ptr + offsets)
    if USE_DOT:
        c = tl.dot(a, b)
    else:
        c = tl.sum(a[:, :, None].to(tl.float32) * b[None, :, :].to(tl.float32), axis=1)
    tl.store(c_ptr + offsets, c.to(c_ptr.dtype.element_ty))


def planted(x, a, b):
    y, c = torch.empty_like(x), torch.empty_like(a)
    _wide_kernel[(1,)](x, y, 3, ROWS=64, num_warps=4)
    _product_kernel[(1,)](a, b, c, N=16, num_warps=4)
    return y, c


def make_inputs(case, dtype, device, seed):
    generator = torch.Generator().manual_seed(seed)
    return {{"x": torch.randn((64, WIDTH), generator=generator).to(device, dtype),
             "a": torch.randn((16, 16), generator=generator).to(device, dtype),
             "b": torch.randn((16, 16), generator=generator).to(device, dtype)}}


register(Benchmark(
    name="planted.diff", description="planted kernels", cases={{"tiny": [Case("one", {{}})]}},
    make_inputs=make_inputs, reference=Impl("reference", lambda x, a, b: (x, a @ b), role="reference"),
    variants=[Impl("triton", planted, triton=True)], cost=lambda case, mode, dtype: Cost(),
    tolerances={{torch.float16: Tolerance(atol=1e-2, rtol=1e-2)}}))
'''


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def record_planted(repo: Path, width: int, use_dot: bool) -> None:
    """``menagerie compile --update`` of the planted kernels for sm_80, into ``repo``'s record."""
    (repo / "planted_diff.py").write_text(PLANTED.format(width=width, use_dot=use_dot))
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": f"{repo}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "menagerie.harness.cli",
            "compile",
            "planted.diff",
            "--import",
            "planted_diff",
            "--size",
            "tiny",
            "--dtype",
            "fp16",
            "--mode",
            "fwd",
            "--arch",
            "sm_80",
            "--record-dir",
            str(repo / "record"),
            "--out",
            str(repo / "out"),
            "--update",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def planted_repo(tmp_path_factory):
    """main: the kernels narrow and on the tensor cores; the branch `wider`: 8 times the accumulator, and the
    product as a sum of elementwise products."""
    repo = tmp_path_factory.mktemp("repo")
    git(repo, "init", "-q", "-b", "main")
    record_planted(repo, width=16, use_dot=True)
    git(repo, "add", "record")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "wider")
    shutil.rmtree(repo / "record")  # a fresh record of the tree, as a whole-suite `make compile-record` writes
    record_planted(repo, width=128, use_dot=False)
    git(repo, "commit", "-q", "-am", "wider")
    return repo


def test_planted_changes_fail_the_diff_against_the_merge_base(planted_repo, capsys):
    code = main(["compile", "--diff", "--record-dir", str(planted_repo / "record")])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1, out
    assert "MMA mma -> none" in out and "_product_kernel@3" in out
    assert "_wide_kernel@3" in out and "blocks/SM" in out and "occupancy" in out
    assert "2 units matched, 2 changed, 0 new, 0 gone" in out


def test_accepted_changes_pass_and_an_unchanged_record_is_quiet(planted_repo, capsys):
    record = str(planted_repo / "record")
    assert (
        main(
            [
                "compile",
                "--diff",
                "main",
                "--record-dir",
                record,
                "--accept",
                "_wide_kernel",
                "--accept",
                "_product_kernel@*",
            ]
        )
        == 0
    )
    assert main(["compile", "--diff", "HEAD", "--record-dir", record]) == 0
    assert "2 units matched, 0 changed" in " ".join(capsys.readouterr().out.split())


def test_the_planted_units_are_real_compiles(planted_repo):
    import triton

    entries = compile_record.load(compile_record.record_path(triton.__version__, "sm_80", planted_repo / "record"))
    by_kernel = {entry["kernel"]: entry for entry in entries.values()}
    assert by_kernel["_product_kernel"]["mma_class"] == "none" and by_kernel["_wide_kernel"]["registers"] > 64


@pytest.mark.parametrize(
    "args, message",
    [
        (["--diff", "no-such-ref"], "no-such-ref"),
        (["--diff", "HEAD", "--max-occupancy-drop", "-1"], "--max-occupancy-drop"),
    ],
)
def test_bad_diff_arguments_exit_2(args, message, planted_repo, capsys):
    assert main(["compile", *args, "--record-dir", str(planted_repo / "record")]) == 2
    assert message in capsys.readouterr().err


def test_a_record_folder_outside_git_exits_2(tmp_path, capsys):
    (tmp_path / "record").mkdir()
    assert main(["compile", "--diff", "HEAD", "--record-dir", str(tmp_path / "record")]) == 2
    assert "git" in capsys.readouterr().err
