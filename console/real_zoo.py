"""The architectures people deploy, built here from their published configurations with random weights
and exported to ONNX at stated shapes: no download.

The networks are transformers' own implementations (its ResNet, MobileNetV2, EfficientNet, ViT, BERT and
GPT-2 classes), so their layers, and their parameter counts, are the published ones: ResNet-18 has
11,689,512 parameters as in torchvision. torchvision itself has no build here that matches the CPU torch
(its C++ operators fail to register), which is why transformers' vision models are used. An int8 variant
is made with onnxruntime's dynamic quantizer, as people ship int8 transformers, or with its static one
(QDQ), as people ship int8 CNNs; and a real-size LLM, SmolLM2-135M's architecture written as GGUF and
quantised to Q4_K_M by llama.cpp's own quantizer (console/gguf_zoo.py).

Each entry says the input flags it is registered with (protos/inputs.py). Built once and cached by name;
`build_real_zoo` says how long a cold build took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeatlas.console.gguf_zoo import REAL_GGUF, write_llama

IMAGE = ("pixel_values", (1, 3, 224, 224))


@dataclass(frozen=True)
class RealModel:
    name: str
    family: str
    published: str  # where its configuration comes from
    build: Callable[[], tuple]  # () → (torch module, example inputs by name)
    flags: list[str] = field(default_factory=list)  # --input/--dim/--values to register it with
    parameters: int = 0  # the published count, where one is (checked by the tests)


def _vision(cls_name: str, config_name: str, **config):
    def build():
        import torch
        import transformers

        torch.manual_seed(0)
        model = getattr(transformers, cls_name)(getattr(transformers, config_name)(**config)).eval()
        return model, {IMAGE[0]: torch.randn(IMAGE[1])}
    return build


def _text(cls_name: str, config_name: str, seq: int, **config):
    def build():
        import torch
        import transformers

        torch.manual_seed(0)
        cfg = getattr(transformers, config_name)(**config)
        inner = getattr(transformers, cls_name)(cfg).eval()

        class Text(torch.nn.Module):  # positional inputs for the tracer; the first output (hidden or logits)
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]

        ids = torch.randint(0, cfg.vocab_size, (1, seq))
        return Text().eval(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return build


REAL_ZOO: list[RealModel] = [
    RealModel("resnet-18", "resnet", "He et al. 2016, ResNet-18 (torchvision's resnet18)",
              _vision("ResNetForImageClassification", "ResNetConfig", depths=[2, 2, 2, 2],
                      hidden_sizes=[64, 128, 256, 512], layer_type="basic", num_labels=1000),
              ["--input", "pixel_values=batchx3x224x224"], parameters=11_689_512),
    RealModel("resnet-50", "resnet", "He et al. 2016, ResNet-50 (torchvision's resnet50)",
              _vision("ResNetForImageClassification", "ResNetConfig", num_labels=1000),
              ["--input", "pixel_values=batchx3x224x224"], parameters=25_557_032),
    RealModel("mobilenet-v2", "mobilenet", "Sandler et al. 2018, MobileNetV2 1.0 at 224",
              _vision("MobileNetV2ForImageClassification", "MobileNetV2Config", num_labels=1000),
              ["--input", "pixel_values=batchx3x224x224"]),
    RealModel("efficientnet-b0", "efficientnet", "Tan & Le 2019, EfficientNet-B0 (torchvision's efficientnet_b0)",
              _vision("EfficientNetForImageClassification", "EfficientNetConfig", width_coefficient=1.0,
                      depth_coefficient=1.0, image_size=224, hidden_dim=1280, num_labels=1000),
              ["--input", "pixel_values=batchx3x224x224"], parameters=5_288_548),
    RealModel("vit-tiny", "vit", "Touvron et al. 2021, DeiT-Tiny: ViT of 12 layers, width 192, 3 heads, patch 16",
              _vision("ViTForImageClassification", "ViTConfig", hidden_size=192, num_hidden_layers=12,
                      num_attention_heads=3, intermediate_size=768, num_labels=1000),
              ["--input", "pixel_values=batchx3x224x224"]),
    RealModel("bert-mini", "bert", "Turc et al. 2019, BERT-mini: 4 layers, width 256, 4 heads",
              _text("BertModel", "BertConfig", 128, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=1024),
              ["--dim", "seq=128", "--values", "attention_mask=fixed:1"]),
    RealModel("bert-base", "bert", "Devlin et al. 2019, BERT-base uncased: 12 layers, width 768",
              _text("BertModel", "BertConfig", 128),
              ["--dim", "seq=128", "--values", "attention_mask=fixed:1"]),
    RealModel("gpt2", "gpt2", "Radford et al. 2019, GPT-2 small (124M)",
              _text("GPT2LMHeadModel", "GPT2Config", 128, use_cache=False),
              ["--dim", "seq=128", "--values", "attention_mask=fixed:1"], parameters=124_439_808),
]
INT8_OF = {"resnet-18-int8": "resnet-18", "bert-mini-int8": "bert-mini"}  # onnxruntime's dynamic quantizer
QDQ_OF = {"resnet-18-qdq": "resnet-18", "mobilenet-v2-qdq": "mobilenet-v2"}  # its static quantizer (QDQ)
QUANTIZED_OF = {**INT8_OF, **QDQ_OF}
BY_NAME = {m.name: m for m in REAL_ZOO}
GGUF_BY_NAME = {m.name: m for m in REAL_GGUF}  # LLMs at published configurations, quantised by llama.cpp


def flags_of(name: str) -> list[str]:
    """The input flags a model of the zoo is registered with (a GGUF LLM needs none)."""
    return [] if name in GGUF_BY_NAME else BY_NAME[QUANTIZED_OF.get(name, name)].flags


def export(entry: RealModel, path: Path) -> Path:
    """The module exported with the batch (and a text model's sequence) dimension left dynamic."""
    import warnings

    import torch

    model, example = entry.build()
    names = list(example)
    dynamic = {n: ({0: "batch", 1: "seq"} if n != IMAGE[0] else {0: "batch"}) for n in names}
    tmp = path.with_suffix(".part")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow: the shapes are stated
        torch.onnx.export(model, tuple(example.values()), str(tmp), input_names=names, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    tmp.replace(path)
    return path


def quantize(source: Path, path: Path, static: bool = False) -> Path:
    """int8 weights through onnxruntime's dynamic quantizer, or int8 weights and activations through its
    static one (`predictor/datasets/zoo.quantize_file`, `quantize_static_file`), written beside and then
    moved into place."""
    from edgeatlas.predictor.datasets.zoo import quantize_file, quantize_static_file

    tmp = path.with_name(path.stem + ".part.onnx")
    (quantize_static_file if static else quantize_file)(source, tmp)
    tmp.replace(path)
    return path


def build_real_zoo(out_dir: str | Path, names: list[str] | None = None, say=None) -> list[Path]:
    """<name>.onnx for each wanted entry (all by default), kept between calls: a cached file is not rebuilt."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    known = list(BY_NAME) + list(QUANTIZED_OF) + list(GGUF_BY_NAME)
    wanted = names or known
    unknown = [n for n in wanted if n not in known]
    if unknown:
        from edgeatlas.protos.errors import InvalidInput
        raise InvalidInput(f"no real-zoo model {unknown[0]!r} (known: {', '.join(known)})")
    paths = []
    for name in wanted:
        path = out / f"{name}.{'gguf' if name in GGUF_BY_NAME else 'onnx'}"
        if not path.is_file():
            started = time.perf_counter()
            if name in GGUF_BY_NAME:
                write_llama(path, GGUF_BY_NAME[name])
            elif name in QUANTIZED_OF:
                source = out / f"{QUANTIZED_OF[name]}.onnx"
                if not source.is_file():
                    export(BY_NAME[QUANTIZED_OF[name]], source)
                quantize(source, path, static=name in QDQ_OF)
            else:
                export(BY_NAME[name], path)
            if say:
                say(f"      built {name} in {time.perf_counter() - started:.1f} s")
        paths.append(path)
    return paths
