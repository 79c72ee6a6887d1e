"""What `models add` and `predict` cost, side by side in one run.

1. A GGUF header with a 262,144-token vocabulary and 200,000 merges (Gemma 3's size): the project's one
   bounds-checked walk (protos/gguf.read_header) beside gguf.GGUFReader, which it replaced.
2. `prepare` (what `models add` does before the upload: check, summarise, reference outputs) on real
   models: an OCR detector at 640×640 and the zoo's GGUF llamas.
3. `predict` on a checkpoint: the first query of a process (load + featurize) and the next ones (warm).

    python bench/model_prep.py [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def big_vocab_gguf(path: Path) -> Path:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(2), w.add_context_length(2048), w.add_embedding_length(64)
    w.add_feed_forward_length(128), w.add_head_count(2), w.add_head_count_kv(1)
    tokens = [f"token{i}" for i in range(262_144)]
    w.add_tokenizer_model("llama"), w.add_token_list(tokens), w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([1] * len(tokens)), w.add_token_merges([f"a{i} b{i}" for i in range(200_000)])
    w.add_tensor("token_embd.weight", np.zeros((1000, 64), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from gguf import GGUFReader

    from edgeatlas.console.gguf_zoo import REAL_GGUF, build_gguf_zoo
    from edgeatlas.console.real_zoo import build_real_zoo
    from edgeatlas.console.models import prepare
    from edgeatlas.predictor.commands import predict, train
    from edgeatlas.predictor.datasets.nasbench201 import SAMPLE_DIR
    from edgeatlas.predictor.models import TrainConfig
    from edgeatlas.protos.gguf import read_header
    from edgeatlas.protos.inputs import request_from_flags
    from tests.models.third_party import fetch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = big_vocab_gguf(tmp / "vocab.gguf")
        walk, _ = timed(lambda: read_header(path), args.reps)
        reader, _ = timed(lambda: GGUFReader(str(path)), args.reps)
        print(f"1. GGUF header, 262,144 tokens + 200,000 merges ({path.stat().st_size / 2**20:.1f} MiB), "
              f"median of {args.reps}")
        print(f"   protos/gguf.read_header (one checked walk)  {walk:7.2f} s")
        print(f"   gguf.GGUFReader                             {reader:7.2f} s   ratio {reader / walk:5.1f}×")

        print("2. prepare (models add before its upload), median of", args.reps)
        det = fetch("ch-pp-ocrv4-det-infer")
        seconds, _ = timed(lambda: prepare(det, "det", request_from_flags(["x=batchx3x640x640"])), args.reps)
        print(f"   OCR detector at 640×640 ({det.stat().st_size / 2**20:.1f} MiB ONNX)     {seconds:7.2f} s")
        real = build_real_zoo(tmp / "zoo", [m.name for m in REAL_GGUF])  # SmolLM2-135M in Q4_K_M, 49,152 tokens
        for gguf_path in build_gguf_zoo(tmp / "zoo") + real:
            seconds, _ = timed(lambda: prepare(gguf_path), args.reps)
            print(f"   {gguf_path.name} ({gguf_path.stat().st_size / 2**20:.1f} MiB, reference logits)   "
                  f"{seconds:7.2f} s")

        print("3. predict, this process")
        checkpoint = tmp / "p.pt"
        train([str(SAMPLE_DIR)], str(checkpoint), TrainConfig(members=2, epochs=1), lambda text: None)
        spec = ROOT / ".." / "shared" / "datasets" / "nasbench201" / "specs" / "pixel_3.yaml"
        if not spec.is_file():
            spec = next((SAMPLE_DIR / "specs").glob("*.yaml"))
        cls = fetch("ch-ppocr-mobile-v2-0-cls-infer")
        request = request_from_flags(["x=batchx3x48x192"])
        t0 = time.perf_counter()
        predict(str(checkpoint), str(spec), [str(cls)], "cpu", 1, 1, "onnxruntime", request)
        cold = time.perf_counter() - t0
        warm, _ = timed(lambda: predict(str(checkpoint), str(spec), [str(cls)], "cpu", 1, 1, "onnxruntime",
                                        request), args.reps)
        import subprocess
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edgeatlas", "predict", "--checkpoint", str(checkpoint), "--spec",
                        str(spec), "--model", str(cls), "--input", "x=batchx3x48x192", "--json"], check=True,
                       capture_output=True)
        process = time.perf_counter() - t0
        print(f"   `edgeatlas predict`, a new process (imports, load, featurize, answer)   {process:7.2f} s")
        print(f"   first query of this process (load the checkpoint, featurize)   {cold:7.2f} s")
        print(f"   warm query (median of {args.reps})                                {warm:7.2f} s   "
              f"ratio to a new process {process / warm:5.1f}×")


if __name__ == "__main__":
    main()
