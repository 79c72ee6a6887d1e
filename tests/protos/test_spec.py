import pytest

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.spec import SpecSheet, hardware_class, slug

from tests.conftest import SHARED

SPECS = SHARED / "datasets" / "nasbench201" / "specs"


def test_shared_spec_sheets_load_and_keep_unknown_fields():
    spec = SpecSheet.load(SPECS / "rtx_2080_ti.yaml")
    assert spec.get("accelerator.tensor_fp16_tflops") == 107.6  # not in the schema; kept
    assert spec.get("cpu.cores") is None  # missing stays missing
    assert hardware_class(spec, "gpu") == "gpu:nvidia-rtx-2080-ti"


@pytest.mark.parametrize("file,target,expected", [
    ("pixel_3.yaml", "cpu", "cpu:cortex-a75x4+cortex-a55x4"),
    ("xeon_gold_6240.yaml", "cpu", "cpu:intel-xeon-gold-6240"),
    ("gtx_1080_ti.yaml", "gpu", "gpu:nvidia-gtx-1080-ti"),
])
def test_hardware_class(file, target, expected):
    assert SpecSheet.load(SPECS / file).hardware_class(target) == expected


def test_aliases_fold_to_one_class():
    a = SpecSheet.from_dict({"accelerator": {"kind": "gpu", "vendor": "NVIDIA", "name": "NVIDIA GeForce RTX 4090"}})
    b = SpecSheet.from_dict({"accelerator": {"kind": "gpu", "vendor": "nvidia", "name": "RTX 4090"}})
    assert a.hardware_class("gpu") == b.hardware_class("gpu") == "gpu:nvidia-rtx-4090"
    assert slug("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz") == "intel-xeon-platinum-8375c"


@pytest.mark.parametrize("data,field", [
    ({"cpu": {"cores": "eight"}}, "cpu.cores"),
    ({"cpu": {"cores": 0}}, "cpu.cores"),
    ({"cpu": {"cores": 2.5}}, "cpu.cores"),
    ({"memory": {"bandwidth_gbs": -3}}, "memory.bandwidth_gbs"),
    ({"cpu": {"max_ghz": float("nan")}}, "cpu.max_ghz"),
    ({"device_class": "toaster"}, "device_class"),
    ({"schema": "other/v9"}, "schema"),
    ({"cpu": {"clusters": [{"cores": -1}]}}, "cpu.clusters[0].cores"),
])
def test_bad_spec_sheets_name_the_field(data, field):
    with pytest.raises(InvalidInput, match=field.replace("[", r"\[").replace("]", r"\]")):
        SpecSheet.from_dict(data)


def test_target_the_sheet_lacks_is_an_error():
    with pytest.raises(InvalidInput, match="no gpu accelerator"):
        SpecSheet.load(SPECS / "xeon_gold_6240.yaml").hardware_class("gpu")


def test_malformed_yaml_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cpu: {cores: [1,\n")
    with pytest.raises(InvalidInput) as info:
        SpecSheet.load(bad)
    assert "\n" not in str(info.value)
