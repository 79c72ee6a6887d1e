"""Published measurements over the admin API: stored as their own cells, with their source and citation."""

import pytest

from edgeatlas.console.imports import import_nasbench201
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import Setting

pytestmark = pytest.mark.slow


def test_import_nasbench201_sample_then_again_replaces(coordinator, tmp_path):
    with coordinator.admin() as admin:
        names = import_nasbench201(admin, None, 2, tmp_path / "nb")
        first = admin.heatmap().cells
        import_nasbench201(admin, None, 2, tmp_path / "nb")
        again = admin.heatmap().cells
    assert len(names) == 2 and len(first) == 2 * 21
    assert all(c.source == "imported" and "HELP" in c.citation and c.n_devices == 1 for c in first)
    assert [(c.model_name, c.hardware_class, c.setting_key, c.metrics["latency_mean_ms"].value) for c in first] == \
        [(c.model_name, c.hardware_class, c.setting_key, c.metrics["latency_mean_ms"].value) for c in again]
    pixel = [c for c in first if c.hardware_class == "cpu:cortex-a75x4+cortex-a55x4"]
    assert len(pixel) == 2 and all(c.setting.runtime == "tflite" for c in pixel)


@pytest.mark.parametrize("case", ["no citation", "bad metric", "nan value", "missing target", "gpu on a cpu sheet"])
def test_bad_imports_are_refused_and_store_nothing(coordinator, tmp_path, case, prepared_zoo):
    from tests.conftest import register
    spec = '{"schema": "edgeatlas.spec/v1", "cpu": {"vendor": "intel", "model": "Xeon Gold 6240"}}'
    setting = Setting(target="cpu", runtime="pytorch", execution_provider="", batch=1, scenario="published")
    metrics, citation = {"latency_mean_ms": 3.0}, "a paper"
    if case == "no citation":
        citation = ""
    elif case == "bad metric":
        metrics = {"latency_median_ms": 3.0}
    elif case == "nan value":
        metrics = {"latency_mean_ms": float("nan")}
    elif case == "missing target":
        setting = Setting(target="", runtime="pytorch")
    elif case == "gpu on a cpu sheet":
        setting = Setting(target="gpu", runtime="pytorch")
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
        sha = admin.list_models()[0].sha256
        with pytest.raises(InvalidInput):
            admin.import_cells(sha, citation, [(spec, setting, metrics)])
        assert list(admin.heatmap().cells) == []
