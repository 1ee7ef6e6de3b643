"""``menagerie compile``: planted faults are caught, a clean kernel passes, the pieces read cubins right.

Compiling needs a process whose kernels were imported without the interpreter, so the
command runs as a subprocess (its workers are subprocesses in any case).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from menagerie.harness import cli, compile_record, cubin, nvrtc, registry
from menagerie.harness.gpu_archs import ARCHS, parse_archs

ROOT = Path(__file__).resolve().parents[2]


def compile_command(tmp_path, *args) -> tuple[int, str, dict | None]:
    out = tmp_path / "compile.json"
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "menagerie.harness.cli", "compile", *args, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    record = json.loads(out.read_text()) if out.exists() else None
    return done.returncode, done.stdout + done.stderr, record


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    return compile_command(
        tmp_path_factory.mktemp("faults"),
        "faults.global_read",
        "faults.tiles",
        "faults.register_hungry",
        "--import",
        "tests.harness.compile_faults",
        "--size",
        "tiny",
        "--arch",
        "sm_80,sm_90",
    )


def builds_of(record, kernel, arch):
    return [build for build in record["builds"] if build["kernel"] == kernel and build["arch"] == arch]


def test_planted_faults_fail_the_check(faults):
    code, output, record = faults
    assert code == 1, output
    assert record is not None and len(record["failures"]) == 6, record and record["failures"]


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_a_non_constexpr_global_fails_to_compile(faults, arch):
    _, _, record = faults
    rows = [row for row in record["rows"] if row["benchmark"] == "faults.global_read" and row["arch"] == arch]
    assert len(rows) == 1 and "global variable SCALE" in rows[0]["error"]
    assert any(f"{arch} faults.global_read" in failure for failure in record["failures"])


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_tiles_over_the_shared_memory_limit_are_reported(faults, arch):
    _, _, record = faults
    builds = {build["config"]["BLOCK"]: build for build in builds_of(record, "_tile_kernel", arch)}
    assert set(builds) == {32, 256}
    limit = ARCHS[arch].max_shared_per_block
    assert builds[256]["shared_bytes"] > limit and f"over the {arch} limit of {limit} B" in builds[256]["error"]
    small = builds[32]
    assert small["error"] == "" and small["spills"] is False and 0 < small["registers"] <= 255
    assert "HMMA" in small["tensor_core_ops"]  # tl.dot on fp16 runs on tensor cores
    assert any("_tile_kernel" in failure and "BLOCK=256" in failure for failure in record["failures"])


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_a_register_hungry_kernel_is_reported_as_spilling(faults, arch):
    _, _, record = faults
    [build] = builds_of(record, "_hungry_kernel", arch)
    assert build["spills"] is True and build["stack_bytes"] > 0 and build["tensor_core_ops"] == []
    assert any(
        failure.startswith("_hungry_kernel[") and f"@{arch}: no configuration is spill-free" in failure
        for failure in record["failures"]
    )


def test_a_clean_suite_kernel_passes_with_its_resources(tmp_path):
    code, output, record = compile_command(tmp_path, "elementwise.bias_gelu", "--arch", "sm_90", "--dtype", "fp16")
    assert code == 0, output
    assert record["failures"] == [] and record["config"]["archs"] == ["sm_90"]
    assert record["provenance"]["triton"] and record["provenance"]["git"]
    kernels = {build["kernel"] for build in record["builds"]}
    assert kernels == {"_bias_gelu_fwd_kernel", "_bias_gelu_bwd_kernel"}
    for build in record["builds"]:
        assert build["spills"] is False and build["registers"] > 0 and build["launches"] > 0
        assert 0 < build["occupancy"] <= 1
    # Every row of the call path launched a kernel, forward and backward.
    assert {row["mode"] for row in record["rows"]} == {"fwd", "bwd", "fwd_bwd"}
    assert all(row["launched"] and not row["error"] for row in record["rows"])
    assert "every kernel compiled" in output


def test_bad_arguments_exit_2(capsys):
    assert cli.main(["compile", "--arch", "sm_70"]) == 2
    assert "unknown architecture 'sm_70'" in capsys.readouterr().err
    assert cli.main(["compile", "--import", "no_such_module_here"]) == 2


def test_parse_archs():
    assert [arch.name for arch in parse_archs("80, sm_90,sm_90")] == ["sm_80", "sm_90"]
    with pytest.raises(ValueError, match="expected a comma-separated list"):
        parse_archs(",")


def test_occupancy_follows_registers_threads_and_shared_memory():
    hopper = ARCHS["sm_90"]
    # 255 registers round to 256 per thread: one 8-warp block fills the register file.
    assert hopper.occupancy(255, 0, 8) == (1, 8 * 32 / 2048)
    # 32 registers, 4 warps: 16 blocks by threads.
    assert hopper.occupancy(32, 0, 4) == (16, 1.0)
    # 100 KiB of shared memory per block: two blocks fit in 228 KiB.
    assert hopper.occupancy(32, 100 * 1024, 4)[0] == 2
    assert hopper.max_threads_for(255) == 256 and hopper.max_threads_for(64) == 1024


LOCAL_ARRAY = r"""
extern "C" __global__ void indexed(const int* where, float* out) {
    float scratch[256];
    for (int i = 0; i < 256; ++i) scratch[i] = i * out[i];
    out[threadIdx.x] = scratch[where[threadIdx.x] & 255];  // dynamic index: the array lives in local memory
}
extern "C" __global__ void plain(float* out) { out[threadIdx.x] += 1.0f; }
"""


def test_cubin_resources_of_a_cuda_c_program():
    binary = nvrtc.compile_cubin(LOCAL_ARRAY, "probe", (), 90)
    indexed, plain = cubin.resources(binary, "indexed"), cubin.resources(binary, "plain")
    assert indexed.stack_bytes >= 1024 and indexed.spills
    assert plain.stack_bytes == 0 and not plain.spills and plain.registers > 0
    assert cubin.tensor_core_ops(binary, ARCHS["sm_90"].tensor_core_sass) == []
    with pytest.raises(cubin.ToolError, match="no resource usage for 'missing'"):
        cubin.resources(binary, "missing")


def test_nvrtc_reports_the_compiler_log():
    with pytest.raises(nvrtc.NvrtcError, match="did not compile for sm_80"):
        nvrtc.compile_cubin('extern "C" __global__ void broken() { undeclared = 1; }', "broken", (), 80)


# ----------------------------------------------------------------------------------------------
# The compile record: only new units are compiled, a spot check recompiles known ones
# ----------------------------------------------------------------------------------------------

PLANTED = '''
"""A kernel for the compile record's tests; ROWS x COLS floats of accumulator per program, in one warp."""
import torch
import triton
import triton.language as tl

from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register


@triton.jit
def _planted_kernel(x_ptr, y_ptr, steps, ROWS: tl.constexpr, COLS: tl.constexpr):
    offsets = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
    acc = tl.zeros((ROWS, COLS), dtype=tl.float32)
    for step in range(steps):
        acc = acc * 0.5 + tl.load(x_ptr + offsets).to(tl.float32) * step
    tl.store(y_ptr + offsets, acc.to(y_ptr.dtype.element_ty))


def planted(x):
    y = torch.empty_like(x)
    _planted_kernel[(1,)](x, y, 3, ROWS=ROWS, COLS=COLS, num_warps=1)
    return y


def make_inputs(case, dtype, device, seed):
    return {"x": torch.randn((ROWS, COLS), generator=torch.Generator().manual_seed(seed)).to(device, dtype)}


register(Benchmark(
    name="planted.accumulate", description="planted kernel", cases={"tiny": [Case("one", {})]},
    make_inputs=make_inputs, reference=Impl("reference", lambda x: x, role="reference"),
    variants=[Impl("triton", planted, triton=True)], cost=lambda case, mode, dtype: Cost(),
    tolerances={torch.float16: Tolerance(atol=1e-2, rtol=1e-2)}))
'''


def planted_compile(folder: Path, rows: int, cols: int, *args) -> tuple[int, str]:
    """``menagerie compile`` of the planted kernel with a ROWS x COLS accumulator, its record under ``folder``."""
    (folder / "planted_module.py").write_text(f"ROWS, COLS = {rows}, {cols}\n" + PLANTED)
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "menagerie.harness.cli",
            "compile",
            "planted.accumulate",
            "--import",
            "planted_module",
            "--size",
            "tiny",
            "--dtype",
            "fp16",
            "--mode",
            "fwd",
            "--arch",
            "sm_90",
            "--record-dir",
            str(folder / "record"),
            "--out",
            str(folder / "out"),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A record of the planted kernel in its small, spill-free form."""
    folder = tmp_path_factory.mktemp("record")
    code, output = planted_compile(folder, 16, 32, "--update")
    assert code == 0, output
    return folder


def test_update_writes_a_sorted_record_of_one_entry_per_line(recorded):
    import triton

    path = compile_record.record_path(triton.__version__, "sm_90", recorded / "record")
    lines = path.read_text().splitlines()
    entries = compile_record.load(path)
    assert lines[0] == "{" and lines[-1] == "}" and len(lines) == len(entries) + 2 == 3
    [(fingerprint, entry)] = entries.items()
    assert entry["kernel"] == "_planted_kernel" and entry["verdict"] == "ok" and entry["mma_class"] == "none"
    assert entry["registers"] > 0 and entry["stack_bytes"] == 0 and entry["config"]["num_warps"] == 1
    assert lines[1].startswith(f'"{fingerprint}": ')


def test_an_unchanged_tree_replays_the_record_and_spot_checks_it(recorded):
    code, output = planted_compile(recorded, 16, 32, "--frozen", "--seed", "7")
    assert code == 0, output
    assert "1 units, 1 replayed from the record, 0 compiled" in output
    assert "spot check: 1 recorded units compiled again (seed 7" in output and "all match" in output


def test_a_spot_check_that_differs_from_the_record_fails_naming_the_unit(recorded, tmp_path):
    import shutil

    import triton

    shutil.copytree(recorded / "record", tmp_path / "record")
    path = compile_record.record_path(triton.__version__, "sm_90", tmp_path / "record")
    entries = compile_record.load(path)
    [fingerprint] = entries
    entries[fingerprint]["registers"] += 8  # as if a toolchain input were missing from the fingerprint
    compile_record.write(entries, path)
    code, output = planted_compile(tmp_path, 16, 32, "--frozen")
    assert code == 1, output
    assert "spot check: _planted_kernel@sm_90" in output and fingerprint in output and "registers:" in output


def test_a_planted_kernel_change_that_spills_is_compiled_and_caught(recorded, tmp_path):
    import shutil

    shutil.copytree(recorded / "record", tmp_path / "record")
    # The same kernel with a 32 x 256 fp32 accumulator in one warp (256 values a thread, past the 255 registers):
    # a new unit, which spills.
    code, output = planted_compile(tmp_path, 32, 256, "--frozen")
    assert code == 1, output
    assert "0 replayed from the record, 1 compiled" in output
    assert "no configuration is spill-free" in output and "missing from the record" in output


def test_a_record_that_does_not_parse_exits_2_with_its_path_and_position(tmp_path):
    import triton

    path = compile_record.record_path(triton.__version__, "sm_90", tmp_path / "record")
    path.parent.mkdir(parents=True)
    path.write_text('{\n"abc": {"verdict": "ok"},\n"def": {oops}\n}\n')
    code, output = planted_compile(tmp_path, 16, 32)
    assert code == 2, output
    assert f"{path}: not valid JSON at line 3, column 9" in output and "Traceback" not in output


def test_records_are_kept_per_triton_version(tmp_path):
    assert compile_record.record_path("3.6.0", "sm_90", tmp_path) == tmp_path / "3.6.0" / "sm_90.json"
    # Another version's record is never read: the planted kernel compiles although a record sits beside it.
    other = compile_record.record_path("0.0.0", "sm_90", tmp_path / "record")
    other.parent.mkdir(parents=True)
    other.write_text("{}\n")
    code, output = planted_compile(tmp_path, 16, 32)
    assert code == 0 and "0 replayed from the record, 1 compiled" in output, output


def test_spot_checks_cover_every_kernel_and_the_fraction():
    from menagerie.harness.compile_check import choose_spot_checks

    entries = {f"{kernel}{index}": {"kernel": kernel} for kernel in "abc" for index in range(100)}
    chosen = choose_spot_checks(entries, list(entries), 0.03, "1")
    assert len(chosen) == 9 and len(set(chosen)) == 9
    assert {entries[fingerprint]["kernel"] for fingerprint in chosen} == {"a", "b", "c"}
    assert choose_spot_checks(entries, list(entries), 0.03, "1") == chosen  # the seed decides
    assert len(choose_spot_checks(entries, list(entries)[:10], 0.03, "1")) == 1  # one per kernel at least
    assert choose_spot_checks(entries, list(entries), 0.0, "1") == []


def test_rows_a_gpu_run_skips_are_not_compiled():
    # The packed benchmark's padded variant applies to causal cases without end sinks only: a GPU run skips the
    # BERT-like case for it, so the compile check must not drive it (it would raise), while the interpreter-only
    # bf16 skip must not hide a row from a GPU build.
    from menagerie.harness.compile_check import compile_plan

    [varlen] = registry.select(["attention.varlen"])
    plan = compile_plan([varlen], "small", [], ["fwd"])
    padded = {(case.name, dtype) for _, case, dtype, _, impl in plan if impl.name == "triton_padded"}
    packed = {(case.name, dtype) for _, case, dtype, _, impl in plan if impl.name == "triton"}
    bert = [case.name for case in varlen.cases["small"] if case.params["end_sinks"]]
    assert bert and not any(name in bert for name, _ in padded)
    assert {name for name, _ in packed} == {case.name for case in varlen.cases["small"]}
    assert torch.bfloat16 in {dtype for _, dtype in packed}


def test_mma_class_names_the_strongest_tensor_core_instruction():
    assert compile_record.mma_class(["HGMMA", "HMMA"]) == "wgmma"
    assert compile_record.mma_class(["HMMA"]) == "mma"
    assert compile_record.mma_class([]) == "none"
