"""The LLM half of the model zoo: llama-architecture GGUF models written locally, no downloads.

Seeded random weights: two small sizes for fast tests, and real-size ones at a published configuration
(REAL_GGUF: SmolLM2-135M, grouped-query attention and tied embeddings, quantised to Q4_K_M by llama.cpp's
own quantizer, as GGUF files are shipped). Each has a working SentencePiece-style vocabulary (llama.cpp's "llama"
tokenizer): control tokens, 256 byte-fallback tokens, and English words with every prefix on their
merge path, so any text tokenizes and common words become single tokens.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

WORDS = """the of and to in is that for it as was with be by on not he this are or his from at which but
have an they you were her she there been one all we their has would when if so no what can more about
said out them some could into only time other then its these two may first any like new now our such
over very man me even most made after also did many before must through back years where much your way
well down should because each just those people how too little state good make world still own see men
work long get here between both life being under never day same another know while last might us great
old year off come since against go came right used take three states himself few house use during without
again place american around however home small found thought went say part once general high upon
school every don does got united left number course war until always away something fact though water
less public put think almost hand enough far took head yet government system better set told nothing
night end why called didn find look going asked later knew point next program city business give group
toward young let room president side social given present several order national possible rather second
face per among form important often things looked early white case john become large big need four within
felt along children saw best church ever least power development light thing seemed family interest want
members mind country area others done turned although open god service certain kind problem began
different door thus help sense means whole matter perhaps itself york times law human line above name
example action company hands local show whether five history gave today either act feet across taken past
quite anything seen having death week experience body word half really field am car words already
themselves information tell college together money period held keep sure free real probably seems
behind cannot miss political air question office making brought whose special heard major problems ago
became federal moment study available known result street economic boy position reason change south board
individual job society areas west close turn love community true court force full model device latency
energy token tokens inference benchmark fleet phone laptop server board memory processor""".split()
SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2: llama.cpp's unknown, bos and eos
SPACE = "\u2581"  # SentencePiece's word boundary


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """(pieces, scores, token types): specials, byte fallback, single characters, then word prefixes."""
    from gguf import TokenType

    pieces = list(SPECIALS)
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    seen = set(pieces)
    words = [SPACE + w for w in WORDS] + list(WORDS)
    chars = sorted({c for w in words for c in w} | set("0123456789.,;:!?'\"()-"))
    ordered = chars + [w[:n] for w in words for n in range(2, len(w) + 1)]
    for piece in ordered:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)
            types.append(TokenType.NORMAL)
    # longer pieces score higher, so merges run to whole words
    scores = [0.0] * (len(SPECIALS) + 256) + [float(len(p)) - i * 1e-6 for i, p in enumerate(pieces[259:])]
    return pieces, scores, [int(t) for t in types]


@dataclass(frozen=True)
class LlamaSize:
    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_ff: int
    dtype: str  # f32 | f16: what the weights are written in
    seed: int
    n_ctx: int = 512
    n_head_kv: int | None = None  # grouped-query attention; None: as many as n_head
    n_vocab: int | None = None  # the published vocabulary's rows (the working vocabulary padded with unused ids)
    tied: bool = False  # the output projection is the token embedding (no output.weight)
    rope_theta: float = 10000.0
    quant: str | None = None  # then quantised by llama.cpp's own quantizer, e.g. "Q4_K_M"
    published: str = ""  # where the configuration comes from
    parameters: int = 0  # the published count, where one is (checked by the tests)


GGUF_ZOO: list[LlamaSize] = [
    LlamaSize("llama-s", n_embd=128, n_layer=4, n_head=4, n_ff=352, dtype="f32", seed=11),
    LlamaSize("llama-m", n_embd=256, n_layer=8, n_head=8, n_ff=704, dtype="f16", seed=12),
]
# Real-size LLMs at a published architecture's configuration (random weights): the tensor shapes, and so
# the parameters, memory traffic and per-token work, are the published model's; the text it writes is not.
REAL_GGUF: list[LlamaSize] = [
    LlamaSize("smollm2-135m", n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, n_vocab=49152,
              tied=True, rope_theta=100000.0, n_ctx=8192, dtype="f16", quant="Q4_K_M", seed=13,
              published="Allal et al. 2025, SmolLM2-135M (llama architecture, grouped-query attention, "
                        "tied embeddings), quantised to Q4_K_M as it is shipped",
              parameters=134_515_008),
]


def write_llama(path: str | Path, size: LlamaSize) -> Path:
    """Writes one llama-architecture GGUF with seeded random weights (scaled like an initialised model)."""
    import gguf

    logging.getLogger("gguf").setLevel(logging.WARNING)  # its writer narrates every step at INFO
    path = Path(path)
    if size.quant:  # written in f16 beside it, then quantised the way GGUF files are shipped
        if importlib.util.find_spec("llama_cpp") is None:
            from edgeatlas.protos.errors import InvalidInput
            raise InvalidInput(f"{size.name} is quantised by llama.cpp's quantizer: pip install \"edgeatlas[llm]\"")
        return quantize(write_llama(path.with_suffix(".f16.part"), replace(size, quant=None)), path, size.quant)
    pieces, scores, types = vocabulary()
    if size.n_vocab:
        pad = size.n_vocab - len(pieces)
        if pad < 0:
            raise ValueError(f"{size.name}: the working vocabulary has {len(pieces)} pieces, more than {size.n_vocab}")
        pieces += [f"<unused{i}>" for i in range(pad)]
        scores += [-1e9] * pad
        types += [int(gguf.TokenType.UNUSED)] * pad
    rng = np.random.default_rng(size.seed)
    dtype = np.float16 if size.dtype == "f16" else np.float32

    def weight(*shape: int) -> np.ndarray:  # numpy [out, in]; GGUF stores it as ne = [in, out]
        return (rng.standard_normal(shape) * 0.02).astype(dtype)

    def norm(n: int) -> np.ndarray:
        return np.ones(n, np.float32)  # norms stay f32, as llama.cpp's converters write them

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(size.name)
    w.add_context_length(size.n_ctx)
    w.add_embedding_length(size.n_embd)
    w.add_block_count(size.n_layer)
    w.add_feed_forward_length(size.n_ff)
    w.add_rope_dimension_count(size.n_embd // size.n_head)
    w.add_head_count(size.n_head)
    w.add_head_count_kv(size.n_head_kv or size.n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(size.rope_theta)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if size.dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    n_vocab, d, ff = len(pieces), size.n_embd, size.n_ff
    d_kv = d // size.n_head * (size.n_head_kv or size.n_head)
    w.add_tensor("token_embd.weight", weight(n_vocab, d))
    for i in range(size.n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", norm(d))
        for name, rows in (("attn_q", d), ("attn_k", d_kv), ("attn_v", d_kv), ("attn_output", d)):
            w.add_tensor(f"blk.{i}.{name}.weight", weight(rows, d))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", norm(d))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ff, d))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weight(ff, d))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weight(d, ff))
    w.add_tensor("output_norm.weight", norm(d))
    if not size.tied:
        w.add_tensor("output.weight", weight(n_vocab, d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def quantize(source: Path, path: Path, quant: str) -> Path:
    """`source` (f16) → `path` through llama.cpp's own quantizer (llama_model_quantize); `source` is removed."""
    import llama_cpp

    from edgeatlas.protos.gguf import FILE_TYPES  # llama.h's file types, the one table of them

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = next(code for code, kind in FILE_TYPES.items() if kind.name == quant.lower())
    params.nthread = 0  # all cores
    tmp = path.with_suffix(".part")
    try:
        with _stderr_silenced():  # the C library narrates every tensor on file descriptor 2
            failed = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
        if failed:
            raise RuntimeError(f"llama.cpp could not quantise {source.name} to {quant}")
        tmp.replace(path)
    finally:
        source.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def _stderr_silenced():
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def build_gguf_zoo(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Writes <name>.gguf for each LLM of the zoo (all by default); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_llama(out / f"{s.name}.gguf", s) for s in GGUF_ZOO if not names or s.name in names]
