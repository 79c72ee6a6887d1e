"""GGUF files and transformer configs → the same operator graph as an ONNX network (graph.OpGraph).

A decoder-only transformer's prefill over `tokens` tokens, layer by layer: norm, q/k/v projections,
attention scores, softmax, context, output projection, residual add; norm, (gate,) up, activation,
down, residual add; then the final norm and the head for the last token. Weight bytes follow the
quantisation (GGUF file type, or the config's torch_dtype); activations are FP32-sized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeatlas.predictor.graph import CATEGORIES, OpGraph
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.gguf import FILE_TYPES, read_header

PROMPT_TOKENS = 128
DTYPE_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "int4": 4}


@dataclass(frozen=True)
class TransformerConfig:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    gated: bool = True  # SwiGLU-style gate + up projections (llama, qwen, mistral, ...)
    weight_bits: float = 16.0
    tied: bool = False  # the output projection is the token embedding (no separate output.weight)
    parameters: int = 0  # as the file counts them (GGUF: every tensor's elements); 0: from the layout


def from_hf_config(path: str | Path) -> TransformerConfig:
    """A Hugging Face `config.json` (llama, gpt2, qwen, mistral and the like)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"model {path}: not a readable JSON transformer config ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"model {path}: a transformer config must be a JSON object")

    def field(*names, default=None):
        for n in names:
            if data.get(n) is not None:
                value = data[n]
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise InvalidInput(f"model {path}: field {n} must be a positive whole number, got {value!r}")
                return value
        if default is None:
            raise InvalidInput(f"model {path}: the config has none of the fields {', '.join(names)}")
        return default

    hidden = field("hidden_size", "n_embd", "d_model")
    heads = field("num_attention_heads", "n_head")
    arch = " ".join(data.get("architectures") or [str(data.get("model_type", ""))]).lower()
    return TransformerConfig(
        name=path.stem, hidden=hidden, layers=field("num_hidden_layers", "n_layer"), heads=heads,
        kv_heads=field("num_key_value_heads", default=heads), ffn=field("intermediate_size", "n_inner",
                                                                          default=4 * hidden),
        vocab=field("vocab_size"), gated="gpt2" not in arch and "bert" not in arch,
        weight_bits=DTYPE_BITS.get(str(data.get("torch_dtype", "float16")), 16),
        tied=bool(data.get("tie_word_embeddings", "gpt2" in arch)))


def from_gguf(path: str | Path) -> TransformerConfig:
    """The architecture and quantisation in a GGUF file's header (its tensors are not read)."""
    header = read_header(path)
    arch = header.architecture
    if not arch:
        raise InvalidInput(f"model {path}: GGUF header has no general.architecture")

    def key(suffix: str, default=None):
        value = header.value(f"{arch}.{suffix}", default)
        if value is None:
            raise InvalidInput(f"model {path}: GGUF header has no {arch}.{suffix}")
        return int(value)

    hidden, heads = key("embedding_length"), key("attention.head_count")
    vocab = header.value("tokenizer.ggml.tokens") or int(header.value(f"{arch}.vocab_size", 32000))
    file_type = FILE_TYPES.get(int(header.value("general.file_type", 1)))
    return TransformerConfig(
        name=str(header.value("general.name") or Path(path).stem), hidden=hidden, layers=key("block_count"),
        heads=heads, kv_heads=key("attention.head_count_kv", heads), ffn=key("feed_forward_length", 4 * hidden),
        vocab=vocab, gated=arch not in ("gpt2", "bert"), weight_bits=file_type.bits if file_type else 16,
        tied="output.weight" not in header.tensors, parameters=header.parameters)


def to_graph(cfg: TransformerConfig, tokens: int = PROMPT_TOKENS) -> OpGraph:
    """The prefill of `tokens` tokens as operators, at batch 1 (FLOPs and activations scale with batch)."""
    T, d, h, f = tokens, cfg.hidden, cfg.heads, cfg.ffn
    dh = d // h
    kv = cfg.kv_heads * dh
    wb = cfg.weight_bits / 8
    nodes: list[tuple] = []  # (op, category, flops, act elements, weight elements, out features, inputs)

    def add(op, category, flops, act, weights, out, inputs):
        nodes.append((op, category, flops, act, weights, out, inputs))
        return len(nodes) - 1

    x = add("Gather", "gather", 0, 2 * T * d, cfg.vocab * d, d, [])
    for _ in range(cfg.layers):
        n1 = add("RMSNorm", "norm", 8 * T * d, 2 * T * d, d, d, [x])
        q = add("MatMul", "matmul", 2 * T * d * d, T * d * 2, d * d, d, [n1])
        k = add("MatMul", "matmul", 2 * T * d * kv, T * (d + kv), d * kv, kv, [n1])
        v = add("MatMul", "matmul", 2 * T * d * kv, T * (d + kv), d * kv, kv, [n1])
        s = add("MatMul", "matmul", 2 * h * T * T * dh, T * d + T * kv + h * T * T, 0, T, [q, k])
        p = add("Softmax", "softmax", 5 * h * T * T, 2 * h * T * T, 0, T, [s])
        c = add("MatMul", "matmul", 2 * h * T * T * dh, h * T * T + T * kv + T * d, 0, d, [p, v])
        o = add("MatMul", "matmul", 2 * T * d * d, 2 * T * d, d * d, d, [c])
        x = add("Add", "elementwise", T * d, 3 * T * d, 0, d, [x, o])
        n2 = add("RMSNorm", "norm", 8 * T * d, 2 * T * d, d, d, [x])
        up = add("MatMul", "matmul", 2 * T * d * f, T * (d + f), d * f, f, [n2])
        if cfg.gated:
            gate = add("MatMul", "matmul", 2 * T * d * f, T * (d + f), d * f, f, [n2])
            act = add("Silu", "activation", 4 * T * f, 2 * T * f, 0, f, [gate])
            up = add("Mul", "elementwise", T * f, 3 * T * f, 0, f, [act, up])
        else:
            up = add("Gelu", "activation", 8 * T * f, 2 * T * f, 0, f, [up])
        down = add("MatMul", "matmul", 2 * T * f * d, T * (f + d), f * d, d, [up])
        x = add("Add", "elementwise", T * d, 3 * T * d, 0, d, [x, down])
    n = add("RMSNorm", "norm", 8 * T * d, 2 * T * d, d, d, [x])
    add("MatMul", "matmul", 2 * d * cfg.vocab, d + cfg.vocab, d * cfg.vocab, cfg.vocab, [n])  # last token's logits
    edges = [(src, i) for i, node in enumerate(nodes) for src in node[6]]
    weights = np.array([node[4] for node in nodes], dtype=np.float64)
    return OpGraph(name=cfg.name, ops=[node[0] for node in nodes],
                   category=np.array([CATEGORIES.index(node[1]) for node in nodes], dtype=np.int64),
                   flops=np.array([node[2] for node in nodes], dtype=np.float64),
                   act_bytes=np.array([node[3] for node in nodes], dtype=np.float64) * 4,
                   weight_bytes=weights * wb, kernel=np.zeros(len(nodes)), stride=np.zeros(len(nodes)),
                   channels=np.array([node[5] for node in nodes], dtype=np.float64),
                   edges=np.array(edges, dtype=np.int64).T.copy(), shapes_known=1.0,
                   params=cfg.parameters or int(weights.sum()) - (cfg.vocab * d if cfg.tied else 0))
