import json

import pytest

from edgeatlas.agent.probe import parse_cpu_list, probe
from edgeatlas.protos.spec import SCHEMA

from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "devices"


def test_live_probe_fills_what_this_machine_exposes():
    spec = probe("/")
    cpu = spec.data["cpu"]
    assert spec.data["schema"] == SCHEMA
    assert cpu["threads"] >= 1 and cpu["cores"] >= 1 and cpu["cores"] <= cpu["threads"]
    assert cpu["arch"] in ("x86_64", "arm64")
    assert spec.get("memory.size_gb") > 0
    assert spec.get("memory.bandwidth_gbs") > 0.1
    assert spec.get("memory.bandwidth_method").startswith("measured")
    assert "CPUExecutionProvider" in spec.get("runtimes.onnxruntime.providers")
    assert spec.hardware_class().startswith("cpu:")


def test_unknown_fields_are_null_not_guessed(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz\n"
        "flags\t\t: fpu sse2 avx avx2 fma\nphysical id\t: 0\ncore id\t\t: 0\n\n"
        "processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz\n"
        "flags\t\t: fpu sse2 avx avx2 fma\nphysical id\t: 0\ncore id\t\t: 0\n\n")
    spec = probe(tmp_path)
    cpu = spec.data["cpu"]
    assert (cpu["vendor"], cpu["simd"], cpu["threads"], cpu["cores"]) == ("intel", "avx2", 2, 1)
    assert cpu["max_ghz"] is None and cpu["l2_kb"] is None  # no /sys: unknown, not guessed
    assert spec.get("memory.bandwidth_gbs") is None  # never measured on a recorded tree
    assert spec.hardware_class() == "cpu:intel-core-i7-8700"


@pytest.mark.parametrize("device", ["galaxy-s9-us", "galaxy-s8-us"])
def test_big_little_clusters_from_a_real_phone(device):
    expected = json.loads((FIXTURES / device / "expected.json").read_text())
    spec = probe(FIXTURES / device)
    assert spec.get("cpu.threads") == expected["processors"]
    clusters = spec.get("cpu.clusters")
    assert [c["cores"] for c in clusters] == [c["cores"] for c in expected["clusters"]]
    assert clusters[0]["core"] == expected["clusters"][0]["core"]


def test_cpu_list_parsing():
    assert parse_cpu_list("0-3,6\n") == [0, 1, 2, 3, 6]


def test_gpu_through_nvml(monkeypatch):
    """NVML's answers map onto the accelerator section (a stand-in module: this machine has no GPU)."""
    import types

    from edgeatlas.agent.probe import probe_gpu

    calls = []
    fake = types.SimpleNamespace(
        NVML_CLOCK_SM=1,
        nvmlInit=lambda: calls.append("init"), nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlDeviceGetName=lambda h: "NVIDIA H200",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=141 * 1024**3),
        nvmlDeviceGetMaxClockInfo=lambda h, clock: 1980)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    gpu = probe_gpu()
    assert gpu == {"kind": "gpu", "vendor": "nvidia", "name": "NVIDIA H200", "memory_gb": 141.0,
                   "clock_ghz": 1.98, "count": 2}
    assert calls == ["init", "shutdown"]


def test_no_nvidia_driver_means_no_accelerator(monkeypatch):
    import types

    from edgeatlas.agent.probe import probe_gpu

    def no_driver():
        raise RuntimeError("NVML Shared Library Not Found")
    monkeypatch.setitem(__import__("sys").modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    assert probe_gpu() is None
