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

from harness import cli, cubin, nvrtc
from harness.gpu_archs import ARCHS, parse_archs

ROOT = Path(__file__).resolve().parents[2]


def compile_command(tmp_path, *args) -> tuple[int, str, dict | None]:
    out = tmp_path / "compile.json"
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "compile", *args, "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    record = json.loads(out.read_text()) if out.exists() else None
    return done.returncode, done.stdout + done.stderr, record


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    return compile_command(tmp_path_factory.mktemp("faults"), "faults.global_read", "faults.tiles",
                           "faults.register_hungry", "--import", "tests.harness.compile_faults",
                           "--size", "tiny", "--arch", "sm_80,sm_90")


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
    assert any(failure.startswith("_hungry_kernel[") and f"@{arch}: no configuration is spill-free" in failure
               for failure in record["failures"])


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
