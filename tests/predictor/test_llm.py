"""GGUF headers and transformer configs → operator graphs, FLOPs and weights checked by hand."""

import json
import struct

import pytest

from edgeatlas.predictor import llm
from edgeatlas.protos.errors import InvalidInput

TINY = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100,
        "torch_dtype": "bfloat16"}


def write_gguf(path, kv: dict, magic=b"GGUF"):
    def s(text):
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw
    body = b""
    for key, value in kv.items():
        body += s(key)
        if isinstance(value, str):
            body += struct.pack("<I", 8) + s(value)
        elif isinstance(value, list):
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(s(v) for v in value)
        else:
            body += struct.pack("<II", 4, value)
    path.write_bytes(magic + struct.pack("<IQQ", 3, 0, len(kv)) + body)


def test_config_graph_flops_and_weights_by_hand(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    cfg = llm.from_hf_config(tmp_path / "config.json")
    assert (cfg.hidden, cfg.kv_heads, cfg.gated, cfg.weight_bits) == (64, 2, True, 16)
    graph = llm.to_graph(cfg, tokens=10)
    T, d, h, dh, kv, f, V = 10, 64, 4, 16, 32, 128, 100
    matmuls = [i for i, op in enumerate(graph.ops) if op == "MatMul"]
    q, k, _, scores = matmuls[:4]
    assert graph.flops[q] == 2 * T * d * d and graph.flops[k] == 2 * T * d * kv
    assert graph.flops[scores] == 2 * h * T * T * dh
    per_layer = 2 * d + 2 * d * d + 2 * d * kv + 3 * d * f
    assert graph.params == V * d + 2 * per_layer + d + d * V
    assert graph.weight_bytes.sum() == graph.params * 2  # bfloat16
    assert graph.edges.shape[0] == 2 and graph.summary()["depth"] > 2 * 10


def test_gguf_header_gives_architecture_and_quantisation(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, {"general.architecture": "llama", "general.name": "tiny", "llama.embedding_length": 64,
                      "llama.block_count": 2, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
                      "llama.feed_forward_length": 128, "general.file_type": 15,
                      "tokenizer.ggml.tokens": [f"t{i}" for i in range(100)]})
    cfg = llm.from_gguf(path)
    assert (cfg.name, cfg.hidden, cfg.layers, cfg.vocab, cfg.weight_bits) == ("tiny", 64, 2, 100, 4.8)
    graph = llm.to_graph(cfg)
    assert cfg.tied  # no output.weight: the logits reuse the embedding, read twice and counted once
    assert graph.weight_bytes.sum() == pytest.approx((graph.params + 100 * 64) * 4.8 / 8)


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_parameters_are_its_tensors_as_llama_cpp_counts_them(tmp_path, tied):
    import gguf
    import numpy as np

    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in [("add_block_count", 1), ("add_embedding_length", 32), ("add_head_count", 2),
                       ("add_head_count_kv", 2), ("add_feed_forward_length", 64), ("add_context_length", 128)]:
        getattr(w, key)(value)
    w.add_token_list([f"t{i}" for i in range(50)])
    w.add_tensor("token_embd.weight", np.zeros((50, 32), np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    if not tied:
        w.add_tensor("output.weight", np.zeros((50, 32), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    cfg = llm.from_gguf(path)
    expected = 50 * 32 + 32 * 32 + (0 if tied else 50 * 32)
    assert cfg.tied is tied and llm.to_graph(cfg).params == expected
    from edgeatlas.console.models import gguf_summary
    from edgeatlas.protos.gguf import read_header
    assert gguf_summary(read_header(path))["parameters"] == expected  # what `models add` shows


def test_bad_gguf_and_config_are_refused_naming_what(tmp_path):
    bad = tmp_path / "bad.gguf"
    write_gguf(bad, {"general.architecture": "llama"}, magic=b"NOPE")
    with pytest.raises(InvalidInput, match="not a GGUF file"):
        llm.from_gguf(bad)
    missing = tmp_path / "missing.gguf"
    write_gguf(missing, {"general.architecture": "llama"})
    with pytest.raises(InvalidInput, match="llama.embedding_length"):
        llm.from_gguf(missing)
    (tmp_path / "c.json").write_text(json.dumps({**TINY, "hidden_size": "big"}))
    with pytest.raises(InvalidInput, match="hidden_size"):
        llm.from_hf_config(tmp_path / "c.json")
