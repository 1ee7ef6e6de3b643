import torch

from harness import ceilings


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
    found = ceilings.get_ceilings(torch.device("cpu"), torch.bfloat16)
    assert found["copy_gbps"].source == "datasheet" and found["copy_gbps"].value == 3350.0
    assert found["matmul_tflops"].source == "datasheet" and found["matmul_tflops"].value == 989.4
    assert not (tmp_path / "ceilings.json").exists() or "datasheet" not in (tmp_path / "ceilings.json").read_text()


def test_roofline_takes_the_binding_limit():
    limits = {"copy_gbps": ceilings.Ceiling(1000.0, "GB/s", "measured", ""),
              "matmul_tflops": ceilings.Ceiling(100.0, "TFLOP/s", "measured", "")}
    assert ceilings.roofline(flops=1e12, nbytes=1e9, ceilings=limits) == 0.01  # compute-bound
    assert ceilings.roofline(flops=1e9, nbytes=1e12, ceilings=limits) == 1.0  # memory-bound
    assert ceilings.roofline(0, 0, limits) is None
