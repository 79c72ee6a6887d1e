"""A real-size LLM at a published configuration (console/gguf_zoo.REAL_GGUF): SmolLM2-135M's architecture
written as GGUF and quantised to Q4_K_M by llama.cpp's own quantizer. Its parameters are the published
count, it is labelled as what it is, and a bench with the defaults a user gets is valid."""

import json

import pytest

from edgeatlas.console.gguf_zoo import GGUF_ZOO, REAL_GGUF
from edgeatlas.console.models import prepare
from edgeatlas.console.real_zoo import build_real_zoo, flags_of

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    out = tmp_path_factory.mktemp("real-llm")
    (path,) = build_real_zoo(out, ["smollm2-135m"])
    return prepare(path, path.stem)


def test_parameters_and_precision_are_the_published_models(smollm2):
    published = REAL_GGUF[0]
    s = smollm2.summary
    assert s["parameters"] == published.parameters == 134_515_008  # SmolLM2-135M's own count
    assert s["tied_embedding"] and s["precision"] == "q4_k_m"
    # quantised as llama.cpp ships it: ~6 bits a weight (576-wide rows fall back to Q5_0), not f16's 16
    assert 5.5 < smollm2.size_bytes * 8 / s["parameters"] < 7
    assert flags_of("smollm2-135m") == [] and smollm2.reference_npz  # reference logits for fidelity


def test_a_bench_with_the_defaults_is_valid(smollm2, tmp_path):
    ref = tmp_path / "ref.npz"
    ref.write_bytes(smollm2.reference_npz)
    proc = run_cli("agent", "bench", str(smollm2.path), "--reference", str(ref), "--format", "json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["valid"] and result["fidelity"]["passed"], result
    assert result["setting"]["precision"] == "q4_k_m" and result["stats"]["iterations"] >= 10
    llm = result["figures"]
    assert 0 < llm["ttft_ms"] and llm["decode_tps"] > 5  # a phone does tens of tokens/s on 135M in Q4


def test_the_toys_stay_small(smollm2):
    """The fast tests' LLMs are not real-size: the real one is only where it is asked for."""
    assert all(size.quant is None and size.n_vocab is None for size in GGUF_ZOO)
    assert smollm2.summary["parameters"] > 100 * 1_000_000
