import sys
import types

import pytest
import torch

from menagerie.harness import provenance


class FakeNvml(types.ModuleType):
    """Just enough of nvidia-ml-py's pynvml for ``provenance.gpu_state``."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    class NVMLError(Exception):
        pass

    def __init__(self, sm_clock=1980, reasons=0x0):
        super().__init__("pynvml")
        self.sm_clock, self.reasons, self.handles = sm_clock, reasons, []

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.handles.append(uuid)
        return uuid

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return self.sm_clock if kind == self.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetMaxClockInfo(self, handle, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self.reasons

    def nvmlDeviceGetUUID(self, handle):
        return handle

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 41

    def nvmlDeviceGetPowerUsage(self, handle):
        return 350_500

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 700_000


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(uuid="1234-abcd"))

    def install(**settings):
        fake = FakeNvml(**settings)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return install


def test_gpu_state_reads_nvml_for_the_device_by_uuid(fake_gpu):
    fake = fake_gpu()
    state = provenance.gpu_state(torch.device("cuda", 0))
    assert fake.handles == ["GPU-1234-abcd"]
    assert state == {
        "uuid": "GPU-1234-abcd",
        "sm_clock_mhz": 1980,
        "memory_clock_mhz": 3201,
        "max_sm_clock_mhz": 1980,
        "max_memory_clock_mhz": 3201,
        "temperature_c": 41,
        "power_draw_w": 350.5,
        "power_limit_w": 700.0,
        "slowdowns": [],
    }


def test_no_gpu_state_on_the_cpu_or_without_nvml(monkeypatch):
    assert provenance.gpu_state(torch.device("cpu")) is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # an import that fails
    assert provenance.gpu_state(torch.device("cuda", 0)) is None


def test_steady_clocks_give_no_warning(fake_gpu):
    fake_gpu()
    states = [provenance.gpu_state(torch.device("cuda", 0)) for _ in range(3)]
    assert provenance.clock_warnings(states) == []
    summary = provenance.load_summary(states)
    assert summary["readings"] == 3 and summary["sm_clock_mhz"] == [1980, 1980]


def test_varying_clocks_and_slowdowns_are_warned_about(fake_gpu):
    fake_gpu()
    states = [provenance.gpu_state(torch.device("cuda", 0)) for _ in range(2)]
    fake_gpu(sm_clock=1410, reasons=0x04 | 0x40)
    states.append(provenance.gpu_state(torch.device("cuda", 0)))
    warnings = provenance.clock_warnings(states)
    assert "SM clock under load varied from 1410 to 1980 MHz" in warnings[0]
    assert warnings[1] == "clocks held down during the run by: hardware thermal slowdown, software power cap"
    assert provenance.load_summary(states)["slowdowns"] == ["hardware thermal slowdown", "software power cap"]
