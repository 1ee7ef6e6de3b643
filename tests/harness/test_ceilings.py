import torch

from menagerie.harness import ceilings


def test_cpu_ceilings_are_measured_then_cached(monkeypatch):
    cpu = torch.device("cpu")
    first = ceilings.get_ceilings(cpu, torch.float32)
    assert first["copy_gbps"].source == "measured" and first["copy_gbps"].value > 0
    assert first["matmul_tflops"].source == "measured" and first["matmul_tflops"].value > 0

    def must_not_measure(*args):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(ceilings, "_measure_copy", must_not_measure)
    monkeypatch.setattr(ceilings, "_measure_matmul", must_not_measure)
    assert ceilings.get_ceilings(cpu, torch.float32) == first


def test_datasheet_fallback_is_labelled(monkeypatch, tmp_path):
    monkeypatch.setenv("MENAGERIE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ceilings, "device_name", lambda device: "NVIDIA H100 80GB HBM3")

    def fails(*args):
        raise RuntimeError("no such device")

    monkeypatch.setattr(ceilings, "_measure_copy", fails)
    monkeypatch.setattr(ceilings, "_measure_matmul", fails)
    monkeypatch.setattr(ceilings, "_measure_microkernel", fails)
    found = ceilings.get_ceilings(torch.device("cpu"), torch.bfloat16)
    assert found["copy_gbps"].source == "datasheet" and found["copy_gbps"].value == 3350.0
    assert found["matmul_tflops"].source == "datasheet" and found["matmul_tflops"].value == 989.4
    assert found["fp32_tflops"].value == 66.9 and found["exp_tops"].value == 3.9
    assert not (tmp_path / "ceilings.json").exists() or "datasheet" not in (tmp_path / "ceilings.json").read_text()


def test_roofline_takes_the_binding_limit():
    limits = {
        "copy_gbps": ceilings.Ceiling(1000.0, "GB/s", "measured", ""),
        "matmul_tflops": ceilings.Ceiling(100.0, "TFLOP/s", "measured", ""),
        "fp32_tflops": ceilings.Ceiling(10.0, "TFLOP/s", "measured", ""),
        "exp_tops": ceilings.Ceiling(1.0, "T exp/s", "measured", ""),
    }
    assert ceilings.roofline(1e12, 1e9, 0, limits) == 0.01  # matmul-bound
    assert ceilings.roofline(1e12, 1e9, 0, limits, flop_ceiling="fp32") == 0.1  # CUDA-core-bound
    assert ceilings.roofline(1e9, 1e12, 0, limits) == 1.0  # memory-bound
    assert ceilings.roofline(1e9, 1e9, 2e12, limits) == 2.0  # special-function-bound
    assert ceilings.roofline(0, 0, 0, limits) is None
    assert ceilings.roofline(1e12, 0, 1e12, {}) is None  # nothing known about the device


def test_cpu_has_no_microkernel_ceilings():
    found = ceilings.get_ceilings(torch.device("cpu"), torch.float32)
    assert "fp32_tflops" not in found and "exp_tops" not in found


def test_microkernels_compute_what_they_claim():
    import triton

    from menagerie.harness import microkernels

    x = torch.rand(64)
    out = torch.empty_like(x)
    microkernels.fma_chain_kernel[(1,)](x, out, ITERATIONS=3, BLOCK=64)
    a, b = 0.999 + x * 1e-6, x * 1e-3
    chains = [x + offset for offset in (0.0, 1.0, 2.0, 3.0)]
    for _ in range(3):
        chains = [chain * a + b for chain in chains]
    torch.testing.assert_close(out, sum(chains))
    microkernels.exp_chain_kernel[(triton.cdiv(64, 64),)](x, out, ITERATIONS=2, BLOCK=64)
    chains = [x + offset for offset in (0.0, 0.25, 0.5, 0.75)]
    for _ in range(2):
        chains = [torch.exp(-chain) for chain in chains]
    torch.testing.assert_close(out, sum(chains))
