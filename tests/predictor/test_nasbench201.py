import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeatlas.predictor.datasets.nasbench201 import nasbench201, parse_nb201
from edgeatlas.predictor.onnx_build import trainable_parameters
from edgeatlas.predictor.datasets import nasbench201 as nb
from edgeatlas.protos.errors import InvalidInput

from tests.conftest import SHARED

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def test_parameter_counts_of_known_architectures():
    # By hand, as PyTorch counts them (BN running statistics are buffers, convs have no bias):
    # stem 3·16·9 + 2·16; per cell 6 edges of 9C² + 2C; reductions 9·Ci·Co + 2Co + 9·Co² + 2Co + Ci·Co;
    # final BN 2·64; classifier 64·10 + 10.
    cells = sum(5 * 6 * (9 * c * c + 2 * c) for c in (16, 32, 64))
    reductions = sum(9 * a * b + 2 * b + 9 * b * b + 2 * b + a * b for a, b in ((16, 32), (32, 64)))
    total = 3 * 16 * 9 + 32 + cells + reductions + 128 + 650
    assert trainable_parameters(nasbench201("x", ALL_3X3)) == total == 1_531_546  # NB201's 1.53 MB
    assert trainable_parameters(nasbench201("x", ALL_NONE)) == 73_306  # NB201's smallest, 0.073 MB


def test_network_runs_with_batch_and_disconnected_cells():
    for arch in (ALL_NONE, "|avg_pool_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"):
        session = ort.InferenceSession(nasbench201("x", arch).SerializeToString())
        out = session.run(None, {"input": np.ones((3, 3, 32, 32), np.float32)})[0]
        assert out.shape == (3, 10) and np.all(np.isfinite(out))


@pytest.mark.parametrize("arch", ["", "|nor_conv_3x3~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                                  "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"])
def test_malformed_arch_strings_are_refused(arch):
    with pytest.raises(InvalidInput, match="arch"):
        parse_nb201(arch)


def test_shared_dataset_loads_with_its_specs():
    data = nb.load(SHARED / "datasets" / "nasbench201")
    assert len(data.rows) == 12_500 and len(data.columns) == 21
    assert data.columns["pixel3"].hardware_class == "cpu:cortex-a75x4+cortex-a55x4"
    assert data.columns["2080ti_32"].setting().batch == 32
    assert data.columns["gold_6240"].setting().batch == 0  # not published: unknown, not guessed
    assert data.row(1).latency_ms["pixel3"] == pytest.approx(17.238)


def test_bundled_sample_spreads_over_the_latency_range():
    sample = nb.load(nb.SAMPLE_DIR)
    picks = nb.spread_sample(sample, 4)
    latencies = [r.latency_ms["pixel3"] for r in picks]
    assert len(picks) == 4 and latencies == sorted(latencies) and latencies[-1] > 3 * latencies[0]
    assert all("none" not in r.arch for r in picks)


def test_fbnet_networks_have_the_published_parameter_counts_and_run():
    from edgeatlas.predictor.datasets.fbnet import fbnet

    data = nb.load(SHARED / "datasets" / "fbnet")
    assert data.family == "fbnet" and len(data.columns) == 19
    first = next(r for r in data.rows if r.index == 1)
    # the data set's README: the all-skip network has 780,660 parameters, architecture 1 has 1,695,572
    assert trainable_parameters(fbnet("x", "|".join(["skip"] * 22))) == 780_660
    assert trainable_parameters(fbnet("x", first.arch)) == 1_695_572
    session = ort.InferenceSession(fbnet("x", first.arch).SerializeToString())
    out = session.run(None, {"input": np.ones((3, 3, 32, 32), np.float32)})[0]
    assert out.shape == (3, 100) and np.all(np.isfinite(out))


@pytest.mark.parametrize("arch", ["", "skip", "|".join(["k7_e6"] * 22), "|".join(["skip"] * 21 + ["k3_e2"]),
                                  "|".join(["skip"] * 23)])
def test_malformed_fbnet_arch_strings_are_refused(arch):
    from edgeatlas.predictor.datasets.fbnet import parse_fbnet

    with pytest.raises(InvalidInput, match="FBNet arch"):
        parse_fbnet(arch)


def test_both_families_load_as_samples_that_know_their_family(tmp_path, monkeypatch):
    from edgeatlas.predictor.data import load_dir, merge
    from edgeatlas.predictor.datasets import fbnet

    monkeypatch.setenv("EDGEATLAS_CACHE", str(tmp_path))
    both = merge([load_dir(nb.SAMPLE_DIR, limit=30), load_dir(fbnet.SAMPLE_DIR, limit=20)])
    family = both.family_of()
    assert set(family) == {"nasbench201", "fbnet"}
    fb = both.where(family == "fbnet")
    assert len(np.unique(fb.graph)) == 20 and "Google Pixel 3" in fb.devices()
    assert set(fb.compact().families) == {"fbnet"} and len(fb.compact().graphs) == 20
    # the same device is one device in both families: leave-hardware-out holds it out of both
    assert set(both.where(both.device_of() == "Google Pixel 3").family_of()) == {"nasbench201", "fbnet"}


def test_a_data_directory_without_an_index_column_is_refused(tmp_path):
    shutil.copy(nb.SAMPLE_DIR / "settings.yaml", tmp_path / "settings.yaml")
    shutil.copytree(nb.SAMPLE_DIR / "specs", tmp_path / "specs")
    lines = (nb.SAMPLE_DIR / "latency_ms.csv").read_text().splitlines()
    (tmp_path / "latency_ms.csv").write_text("\n".join([lines[0].replace("nb201_index", "id")] + lines[1:3]))
    with pytest.raises(InvalidInput, match="index column"):
        nb.load(tmp_path)


def _corrupted(tmp_path, file: str, edit) -> Path:
    """The bundled sample with one file edited: `edit(text) -> text`."""
    root = tmp_path / "data"
    shutil.copytree(nb.SAMPLE_DIR, root)
    path = root / file
    path.write_bytes(edit(path.read_bytes().decode()).encode("utf-8", "surrogateescape"))
    return root


def _cell(line: int, value: str, field: int = 2):
    """An edit: the file's `line` (1 = the header) with its field `field` (2: the first latency) set to `value`."""
    def edit(text):
        lines = text.splitlines()
        fields = lines[line - 1].split(",")
        fields[field] = value
        lines[line - 1] = ",".join(fields)
        return "\n".join(lines) + "\n"
    return edit


MALFORMED = {  # file, edit, what the one-line error names
    "word in a cell": ("latency_ms.csv", _cell(3, "fast"), "line 3: column '1080ti_1' holds 'fast'"),
    "index not a number": ("latency_ms.csv", _cell(3, "x2", field=0), "line 3: nb201_index 'x2'"),
    "index twice": ("latency_ms.csv", _cell(3, "1", field=0), "line 3: nb201_index 1 appears twice"),
    "index a superscript": ("latency_ms.csv", _cell(3, "²", field=0), "line 3: nb201_index '²'"),
    "index of 40 digits": ("latency_ms.csv", _cell(3, "9" * 40, field=0), "is not a whole number"),
    "empty arch": ("latency_ms.csv", _cell(3, " ", field=1), "line 3: arch_str is empty"),
    "not UTF-8": ("latency_ms.csv", lambda t: "\udcff" + t, "not UTF-8"),
    "YAML broken": ("settings.yaml", lambda t: t + "- 1\n", "not valid YAML at line"),
    "a list, not a mapping": ("settings.yaml", lambda t: "- 1\n- 2\n", "expected a mapping"),
    "column without a spec": ("settings.yaml", lambda t: t.replace("spec: specs/gtx_1080_ti.yaml,", "", 1),
                              "column '1080ti_1': expected a mapping with spec"),
    "batch a word": ("settings.yaml", lambda t: t.replace("batch: 1,", "batch: one,", 1),
                     "batch 'one' is not a whole number"),
    "unknown target": ("settings.yaml", lambda t: t.replace("target: gpu", "target: gpu9", 1),
                       "target 'gpu9' is not one of"),
    "spec sheet missing": ("settings.yaml", lambda t: t.replace("specs/gtx_1080_ti.yaml", "specs/none.yaml", 1),
                           "cannot read spec sheet"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_data_directory_is_named_in_one_line(tmp_path, case):
    file, edit, needle = MALFORMED[case]
    with pytest.raises(InvalidInput) as err:
        nb.load(_corrupted(tmp_path, file, edit))
    message = str(err.value)
    assert needle in message and "\n" not in message and file.split(".")[0] in message


def test_data_cells_publishers_leave_empty_are_missing_not_errors(tmp_path):
    # -1, 0, NaN and inf are how published tables say "not timed": the cell is left out, the row kept
    for value in ("-1", "0", "nan", "inf", ""):
        root = _corrupted(tmp_path / value.replace("", "e"), "latency_ms.csv", _cell(2, value))
        first = nb.load(root).rows[0]
        assert "1080ti_1" not in first.latency_ms and "pixel3" in first.latency_ms


def test_a_malformed_arch_or_file_fails_the_command_in_one_line(tmp_path):
    from tests.conftest import run_cli
    from tests.test_cli import one_line_error

    bad_arch = _corrupted(tmp_path / "a", "latency_ms.csv", lambda t: t.replace("nor_conv_3x3~0", "conv_9x9~0", 1))
    one_line_error(run_cli("predictor", "eval", "--data", str(bad_arch), "--split", "leave-hardware-out"),
                   "index 1", "'conv_9x9~0'")
    bad_cell = _corrupted(tmp_path / "b", "latency_ms.csv", _cell(4, "12ms"))
    one_line_error(run_cli("predictor", "train", "--data", str(bad_cell), "--out", str(tmp_path / "p.pt")),
                   "line 4", "'12ms'")
    assert not (tmp_path / "p.pt").exists()
