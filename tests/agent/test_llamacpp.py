"""The llama.cpp runner on the zoo's GGUF models: LLM metrics, fidelity, and bad input."""

import numpy as np
import pytest

from edgeatlas.agent.runners import make_runner
from edgeatlas.console.gguf_zoo import vocabulary
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import LlmStats, RunParams, Setting

FEW = RunParams(warmup_iterations=1, min_iterations=3, min_duration_s=0.05, max_duration_s=30)


def llm_setting(prompt=32, output=8, **kw):
    return Setting(runtime="llama.cpp", threads=1,
                   scenario_params={"prompt_tokens": str(prompt), "output_tokens": str(output)}, **kw)


def path_of(gguf_zoo, name):
    return str(gguf_zoo[name].path), str(gguf_zoo[name].path.with_name(f"{name}.ref.npz"))


@pytest.mark.parametrize("name,precision", [("llama-s", "fp32"), ("llama-m", "fp16")])
def test_llm_run_reports_ttft_tpot_itl_and_passes_fidelity(gguf_zoo, name, precision):
    model, ref = path_of(gguf_zoo, name)
    result = make_runner(model, llm_setting(prompt=48, output=12), ref).run(FEW)
    assert result.valid, result.invalid_reason
    assert result.fidelity.checked and result.fidelity.passed
    st = result.setting
    assert (st.runtime, st.precision, st.scenario_params["prompt_tokens"]) == ("llama.cpp", precision, "48")
    f = result.figures()
    assert result.llm.requests == result.stats.iterations >= 3
    assert result.llm.itl_ms.size == result.llm.requests * 11  # every gap of every request
    assert 0 < f["ttft_ms"] < f["e2e_ms"]
    assert f["tpot_ms"] == pytest.approx((f["e2e_ms"] - f["ttft_ms"]) / 11, rel=0.3)
    assert f["decode_tps"] == pytest.approx(1000 / f["tpot_ms"], rel=0.05)
    assert f["itl_p50_ms"] <= f["itl_p90_ms"] <= f["itl_p99_ms"]
    assert f["prefill_tps"] == pytest.approx(48 * 1000 / f["ttft_ms"], rel=0.3)


def test_the_larger_model_decodes_slower(gguf_zoo):
    speeds = {}
    for name in ("llama-s", "llama-m"):
        model, ref = path_of(gguf_zoo, name)
        speeds[name] = make_runner(model, llm_setting(), ref).run(FEW).figures()["decode_tps"]
    assert speeds["llama-s"] > speeds["llama-m"]


def test_metric_definitions_on_known_timestamps():
    # two requests, 4 tokens each: TTFT 10 and 20 ms; gaps (1, 2, 3) and (1, 1, 1)
    llm = LlmStats(prompt_tokens=100, output_tokens=4, requests=2, ttft_ms=np.array([10.0, 20.0]),
                   e2e_ms=np.array([16.0, 23.0]), itl_ms=np.array([1.0, 2.0, 3.0, 1.0, 1.0, 1.0]))
    f = llm.figures()
    assert f["ttft_ms"] == 15.0 and f["e2e_ms"] == 19.5
    assert f["tpot_ms"] == pytest.approx(1.5)  # median of per-request TPOT (2 and 1)
    assert f["itl_p50_ms"] == 1.0  # ITL pools every gap: four of six are 1 ms
    assert f["prefill_tps"] == pytest.approx(np.median([100 / 0.010, 100 / 0.020]))


def test_wrong_logits_make_the_result_invalid(gguf_zoo, tmp_path):
    model, ref = path_of(gguf_zoo, "llama-s")
    with np.load(ref) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["output:logits"] = arrays["output:logits"] + 0.5
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    result = make_runner(model, llm_setting(), str(bad)).run(FEW)
    assert not result.valid and "fidelity" in result.invalid_reason


def test_zoo_vocabulary_tokenizes_text_into_whole_words(gguf_zoo):
    import llama_cpp
    llm = llama_cpp.Llama(str(gguf_zoo["llama-s"].path), vocab_only=True, verbose=False)
    text = b"the model and the phone"
    tokens = llm.tokenize(text, add_bos=False)
    assert len(tokens) == 5  # one token per word
    assert llm.detokenize(tokens).strip() == text
    rare = b"the model runs"  # "runs" is not a word of the vocabulary: pieces of it are
    assert len(llm.tokenize(rare, add_bos=False)) > 3
    assert llm.detokenize(llm.tokenize(rare, add_bos=False)).strip() == rare
    assert "<0x41>" in vocabulary()[0]  # byte fallback: any text at all


def test_summary_has_architecture_and_quantisation(gguf_zoo):
    s = gguf_zoo["llama-m"].summary
    assert s["architecture"] == "llama" and s["quantisation"] == "fp16"
    assert s["config"]["block_count"] == 8 and s["config"]["embedding_length"] == 256
    assert s["parameters"] > gguf_zoo["llama-s"].summary["parameters"]


def test_a_file_that_is_not_gguf_fails_with_its_name(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(InvalidInput, match="cannot load GGUF model broken.gguf"):
        make_runner(str(bad), llm_setting())
    from edgeatlas.console.models import prepare
    with pytest.raises(InvalidInput, match="broken.gguf is not a valid GGUF model"):
        prepare(bad)


@pytest.mark.parametrize("params,message", [
    ({"prompt_tokens": "500", "output_tokens": "100"}, "exceed the model's context of 512"),
    ({"prompt_tokens": "0"}, "prompt_tokens=0 is not an integer in 1..8192"),
])
def test_out_of_range_llm_parameters(gguf_zoo, params, message):
    model, ref = path_of(gguf_zoo, "llama-s")
    with pytest.raises(InvalidInput, match=message):
        make_runner(model, Setting(runtime="llama.cpp", scenario_params=params), ref)


def test_llm_tasks_run_single_stream_batch_one(gguf_zoo):
    model, ref = path_of(gguf_zoo, "llama-s")
    with pytest.raises(InvalidInput, match="llama.cpp runs scenario single-stream, not offline"):
        make_runner(model, Setting(runtime="llama.cpp", scenario="offline"), ref)
    with pytest.raises(InvalidInput, match="batch 1"):
        make_runner(model, Setting(runtime="llama.cpp", batch=4), ref)


def test_the_time_cap_follows_the_speed_measured_on_this_device(gguf_zoo):
    """A single-stream LLM campaign's 100 requests at ~1 s each used to end too-slow at the 60 s cap."""
    from edgeatlas.agent.runners.llamacpp import LLM_CAP_MARGIN, LLM_MAX_S

    model, ref = path_of(gguf_zoo, "llama-s")
    runner = make_runner(model, llm_setting(), ref)
    asked = RunParams(warmup_iterations=1, min_iterations=100, min_duration_s=1, max_duration_s=60)
    assert runner.time_cap_s(asked, request_s=0.1) == 60  # fits: the task's own cap
    assert runner.time_cap_s(asked, request_s=1.0) == pytest.approx(100 * LLM_CAP_MARGIN)  # a phone's speed
    with pytest.raises(InvalidInput, match=r"take about 1000 s here .* over the 600 s .* \(--iterations\)"):
        runner.time_cap_s(asked, request_s=LLM_MAX_S / 60)
    # a cap far below what the requests take is stretched to fit them, and the run is valid
    result = runner.run(RunParams(warmup_iterations=1, min_iterations=4, min_duration_s=0, max_duration_s=1e-3))
    assert result.valid and result.stats.iterations == 4, result.invalid_reason
