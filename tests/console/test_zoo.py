import hashlib
from collections import Counter

import onnx
import pytest

from edgeatlas.console.models import prepare
from edgeatlas.predictor.graph import onnx_summary as summarise
from edgeatlas.console.zoo import ZOO, build_zoo, mlp, resnet
from edgeatlas.protos.errors import InvalidInput


def test_zoo_has_four_families_at_two_sizes_or_more():
    families = Counter(e.family for e in ZOO)
    assert set(families) >= {"mlp", "resnet", "mobilenet", "transformer"}
    assert all(n >= 2 for n in families.values())


def test_zoo_is_deterministic(tmp_path):
    a = build_zoo(tmp_path / "a", ["resnet-s", "transformer-s"])
    b = build_zoo(tmp_path / "b", ["resnet-s", "transformer-s"])
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    assert [digest(p) for p in a] == [digest(p) for p in b]


def test_every_zoo_model_checks_and_has_reference_outputs(prepared_zoo):
    assert len(prepared_zoo) == len(ZOO)
    for p in prepared_zoo.values():
        onnx.checker.check_model(onnx.load(str(p.path)))
        assert p.reference_npz and p.summary["parameters"] > 0


def test_flops_of_known_layers_by_hand():
    # MLP 784→256→10: MACs = 784·256 + 256·10 at batch 1; params add the biases.
    s = summarise(mlp("t", [784, 256, 10], seed=0))
    assert s["macs"] == 784 * 256 + 256 * 10
    assert s["parameters"] == 784 * 256 + 256 + 256 * 10 + 10
    # One-stage ResNet, width 8, 8×8 input: stem 3→8 3×3, block conv 8→8 3×3 twice, FC 8→10.
    s = summarise(resnet("t", [8], blocks=1, size=8, seed=0))
    per_pixel = 8 * (3 * 9) + 8 * (8 * 9) * 2
    assert s["macs"] == 64 * per_pixel + 8 * 10
    assert s["ops"]["Conv"] == 3


def test_prepare_refuses_a_corrupt_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InvalidInput, match="bad.onnx is not a valid ONNX model"):
        prepare(bad)
