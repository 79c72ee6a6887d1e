"""An LLM campaign or bench with default settings asks for as many requests as fit a phone, not 100."""

from types import SimpleNamespace

from edgeatlas.console.cli.admin import _all_llms
from edgeatlas.console.cli.common import scenario_setting
from edgeatlas.protos.scenarios import LLM_REQUESTS


class Admin:
    def list_models(self):
        return [SimpleNamespace(name="llama-s", sha256="ab12" + "0" * 60, format="gguf"),
                SimpleNamespace(name="mlp-s", sha256="cd34" + "0" * 60, format="onnx")]


def test_a_campaign_of_llms_only_gets_the_llm_default():
    assert _all_llms(Admin(), ["llama-s"]) and _all_llms(Admin(), ["ab12"])
    assert not _all_llms(Admin(), ["llama-s", "mlp-s"]) and not _all_llms(Admin(), ["unknown"])


def test_bench_of_a_gguf_defaults_to_the_llm_requests():
    args = SimpleNamespace(param=None, scenario="single-stream", iterations=None, batch=1, threads=1,
                           duration=1.0, warmup=1)
    _, params = scenario_setting(args, runtime="llama.cpp")
    assert params.min_iterations == LLM_REQUESTS
    _, params = scenario_setting(args, runtime="onnxruntime")
    assert params.min_iterations == 100
