"""llama.cpp runner (llama-cpp-python): GGUF models, one request at a time, llama-bench's pp/tg shape.

A request is a fixed prompt of `prompt_tokens` tokens (no reuse of the previous request's KV cache),
then `output_tokens` greedy tokens, end-of-sequence ignored so every request has the same length.
Each output token is timestamped: TTFT, TPOT, ITL and end-to-end latency follow (protos/metrics.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edgeatlas.agent.runners.fidelity import compare, load_reference
from edgeatlas.agent.runners.results import judge
from edgeatlas.agent.scenarios import ScenarioRun
from edgeatlas.protos import scenarios
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.gguf import file_type_name
from edgeatlas.protos.records import EnergyStats, Fidelity, LatencyStats, LlmStats, RunParams, RunResult, Setting, \
    ScenarioOutcome

# The prompt: English text from the zoo's vocabulary, repeated to the task's length.
PROMPT_TEXT = ("The benchmark runs the model on the phone, the laptop and the server of the fleet; each device "
               "reports its latency and energy, and the world learns how fast inference can be. ")
LOGITS_ATOL_FRACTION = 1e-2  # of the reference logits' largest magnitude: kernels differ across CPUs
LOGITS_RTOL = 1e-2
LLM_MAX_S = 600.0  # an LLM task's timed requests never run longer than this, on any device
LLM_CAP_MARGIN = 1.5  # over the time the asked requests take at the warm-up's speed

def prompt_tokens(llm, n: int) -> list[int]:
    """Exactly n tokens: BOS, then the prompt text tokenized and repeated."""
    body = llm.tokenize(PROMPT_TEXT.encode(), add_bos=False)
    if not body:
        raise InvalidInput("the model's tokenizer turns the prompt into no tokens")
    tokens = [llm.token_bos()] if llm.token_bos() >= 0 else []
    while len(tokens) < n:
        tokens += body
    return tokens[:n]


class LlamaCppRunner:
    """One GGUF model, one setting; `run` times `requests` requests and checks logits against the reference."""

    def __init__(self, model_path: str | Path, setting: Setting, reference_path: str | Path | None = None):
        try:
            import llama_cpp
        except ImportError:
            raise InvalidInput("runtime llama.cpp needs llama-cpp-python (pip install 'edgeatlas[llm]')") from None
        self.llama_cpp = llama_cpp
        values = scenarios.check(setting.scenario, setting.scenario_params)
        if setting.scenario not in scenarios.LLM_SCENARIOS:
            raise InvalidInput(f"llama.cpp runs scenario {', '.join(scenarios.LLM_SCENARIOS)}, not {setting.scenario}")
        if setting.batch != 1:
            raise InvalidInput(f"llama.cpp tasks run one request at a time (batch 1), not batch {setting.batch}")
        self.n_prompt, self.n_out = int(values["prompt_tokens"]), int(values["output_tokens"])
        gpu_layers = int(values["gpu_layers"])
        path = Path(model_path)
        if not path.is_file():
            raise InvalidInput(f"model file {path} does not exist")
        threads = setting.threads or max(1, (os.cpu_count() or 2) // 2)
        try:
            self.llm = llama_cpp.Llama(str(path), n_ctx=self.n_prompt + self.n_out + 8, n_batch=512,
                                       n_threads=threads, n_threads_batch=threads, n_gpu_layers=gpu_layers,
                                       seed=0, verbose=False)
        except Exception as exc:  # llama-cpp-python raises ValueError for a file it cannot load
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InvalidInput(f"cannot load GGUF model {path.name}: {first[:300]}") from None
        trained = int(self.llm.metadata.get(f"{self.llm.metadata.get('general.architecture')}.context_length", 0)
                      if self.llm.metadata else 0)  # the context the model was trained for
        if trained and self.n_prompt + self.n_out > trained:
            raise InvalidInput(f"prompt_tokens + output_tokens = {self.n_prompt + self.n_out} exceed the model's "
                               f"context of {trained} tokens")
        self.prompt = prompt_tokens(self.llm, self.n_prompt)
        self.reference_inputs, self.reference_outputs = load_reference(reference_path) if reference_path else ({}, {})
        offload = gpu_layers > 0 and llama_cpp.llama_supports_gpu_offload()
        file_type = int(self.llm.metadata.get("general.file_type", -1)) if self.llm.metadata else -1
        self.setting = Setting(
            target="gpu" if offload else "cpu", runtime="llama.cpp", runtime_version=llama_cpp.__version__,
            execution_provider=f"gpu:{gpu_layers}-layers" if offload else "cpu", batch=1, threads=threads,
            precision=file_type_name(file_type),
            scenario=setting.scenario,
            scenario_params={"prompt_tokens": str(self.n_prompt), "output_tokens": str(self.n_out),
                             **({"gpu_layers": str(gpu_layers)} if offload else {})})

    def logits(self) -> np.ndarray:
        """[n_vocab] logits of the last evaluated position."""
        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),))

    def request(self) -> tuple[int, int, np.ndarray]:
        """One request: (start ns, first token ns, [output_tokens] ns timestamps of every token).

        The loop holds only what a bare llama-cpp-python loop holds: the vocabulary size and the logits
        function are looked up once, and a timestamp goes into a Python list (no per-token method calls
        or numpy stores between two evaluations)."""
        llm, clock, get_logits, as_array = self.llm, time.perf_counter_ns, self.llama_cpp.llama_get_logits_ith, \
            np.ctypeslib.as_array
        shape, evaluate, n_out = (llm.n_vocab(),), llm.eval, self.n_out
        t0 = clock()
        llm.reset()  # n_tokens = 0: the prompt is evaluated afresh, no prefix reuse
        evaluate(self.prompt)
        token = int(as_array(get_logits(llm.ctx, -1), shape=shape).argmax())
        stamps = [clock()]
        for _ in range(1, n_out):
            evaluate([token])
            token = int(as_array(get_logits(llm.ctx, -1), shape=shape).argmax())
            stamps.append(clock())
        return t0, stamps[0], np.array(stamps, np.int64)

    def check_fidelity(self) -> Fidelity:
        tokens = self.reference_inputs.get("tokens")
        if tokens is None or "logits" not in self.reference_outputs:
            return Fidelity(checked=False, passed=False, detail="no reference logits for this model")
        self.llm.reset()
        self.llm.eval([int(t) for t in tokens.reshape(-1)])
        return compare({"logits": self.logits().copy()}, self.reference_outputs,
                       rtol=LOGITS_RTOL, atol_fraction=LOGITS_ATOL_FRACTION)

    def time_cap_s(self, params: RunParams, request_s: float) -> float:
        """How long the timed requests may take. A request's time is the model's on this device (a phone's
        request can take 50× a server's), so the cap is the task's, or — where the asked requests need
        longer at the speed the warm-up just measured — that time with a margin, up to LLM_MAX_S. A run that
        cannot fit even that is refused at once, not after the cap has burnt the device's time."""
        need = params.min_iterations * request_s * LLM_CAP_MARGIN
        if need > LLM_MAX_S:
            raise InvalidInput(
                f"{params.min_iterations} requests of {self.n_prompt} prompt and {self.n_out} output tokens take "
                f"about {params.min_iterations * request_s:.0f} s here ({request_s:.1f} s each), over the "
                f"{LLM_MAX_S:.0f} s an LLM task may run: ask fewer requests (--iterations) or tokens")
        return max(params.max_duration_s, need)

    def run(self, params: RunParams, meter=None) -> RunResult:
        started_ms = int(time.time() * 1000)
        request_s = 0.0
        for _ in range(max(1, min(params.warmup_iterations, 2))):  # a request warms every kernel
            t0, _, stamps = self.request()
            request_s = (stamps[-1] - t0) / 1e9  # the last, warm one: this device's speed
        cap_s = self.time_cap_s(params, request_s)
        ttft, e2e, gaps = [], [], []
        if meter is not None:
            meter.start()
        wall0 = time.perf_counter()
        min_end, max_end = wall0 + params.min_duration_s, wall0 + cap_s
        while True:
            t0, first, stamps = self.request()
            ttft.append((first - t0) / 1e6)
            e2e.append((stamps[-1] - t0) / 1e6)
            gaps.append(np.diff(stamps) / 1e6)
            now = time.perf_counter()
            if (len(e2e) >= params.min_iterations and now >= min_end) or now >= max_end:
                break
        wall = time.perf_counter() - wall0
        energy_j = meter.stop() if meter is not None else None
        met = len(e2e) >= params.min_iterations and wall >= params.min_duration_s
        e2e_ms = np.array(e2e)
        llm = LlmStats(self.n_prompt, self.n_out, len(e2e), np.array(ttft), e2e_ms, np.concatenate(gaps))
        stats = LatencyStats.from_values(e2e_ms, batch=1)
        energy = None if energy_j is None else EnergyStats(meter.name, energy_j, wall, len(e2e), len(e2e) * self.n_out)
        run = ScenarioRun(latencies_ms=e2e_ms, samples=len(e2e), wall_s=wall, met_rules=met,
                          outcome=ScenarioOutcome("native", "VALID" if met else "INVALID",
                                                  "" if met else "minimum requests or duration not met"))
        return judge(self.setting, stats, self.check_fidelity(), run, params, started_ms, energy=energy, llm=llm,
                     raw_ms=e2e_ms)


def reference_npz(model_path: str | Path, n_tokens: int = 16) -> bytes:
    """Fixed prompt tokens and the logits of a single-threaded CPU run after them, as npz bytes."""
    import io

    runner = LlamaCppRunner(model_path, Setting(runtime="llama.cpp", threads=1,
                                                scenario_params={"prompt_tokens": str(n_tokens),
                                                                 "output_tokens": "1"}))
    tokens = np.array(runner.prompt, np.int32)
    runner.llm.reset()
    runner.llm.eval([int(t) for t in tokens])
    buf = io.BytesIO()
    np.savez(buf, **{"input:tokens": tokens, "output:logits": runner.logits().copy()})
    return buf.getvalue()
