"""What `edgeatlas demo` runs: its constants and its campaigns, as records (console/demo.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.scenarios import MIN_QUERIES
from edgeatlas.protos.records import RunParams, Setting

START_TIMEOUT_S = 60.0
CAMPAIGN_TIMEOUT_S = 900.0
NB201_MODELS = 4
PRIVACY = PrivacyParams()  # the default contract: gaussian, ε = 1, δ = 1e-6 per report
# LLM reports release the request's end-to-end p50, time to first token and time per output token
LLM_PRIVACY = PrivacyParams(statistics=("log_p50_ms", "log_ttft_ms", "log_tpot_ms"))
# The secure cohort: virtual devices of one product, not in the simulated fleet's catalog, so its cells
# are its own. Their p50 is summed in a secure round; ε = 1 per cell as everywhere, public bounds of ×100.
SECURE_MODELS = ("resnet-18", "mobilenet-v2")
SECURE_BOUNDS_MS = (10.0, 1000.0)
SECURE_PRODUCT = {
    "schema": "edgeatlas.spec/v1", "name": "Orange Pi 5", "device_class": "board", "soc": "Rockchip RK3588S",
    "cpu": {"vendor": "arm", "model": "RK3588S", "arch": "arm64", "cores": 8, "threads": 8, "max_ghz": 2.4,
            "simd": "neon", "clusters": [{"cores": 4, "core": "cortex-a76", "max_ghz": 2.4},
                                         {"cores": 4, "core": "cortex-a55", "max_ghz": 1.8}]},
    "memory": {"type": "LPDDR4X", "size_gb": 8, "bandwidth_gbs": 17.0}}


def secure_privacy(cohort: int) -> PrivacyParams:
    """The secure campaign's contract: a round waits for nine in ten of the cohort."""
    return PrivacyParams(mode="secure", cohort_min=max(10, int(0.9 * cohort)), statistics=("log_p50_ms",),
                         bounds_ms=SECURE_BOUNDS_MS)
LLM_PARAMS = {"prompt_tokens": "64", "output_tokens": "16"}
# The server campaign's models: two NAS-Bench-201 networks (sub-millisecond here, so a 25 ms p99 bound
# leaves LoadGen room on two cores the agents share), or the toys where the published ones are absent.
SERVER_CANDIDATES = ["mlp-s", "mobilenet-s"]
# The real architectures the demo measures (console/real_zoo.py); the rest of that zoo is `models build --real`.
# EfficientNet-B0 is left out: transformers' export of it runs 284 ms here single-threaded (ResNet-18: 32 ms),
# which is a question for the profiler, and 64 queries of it would double the demo's campaign.
DEMO_REAL_ZOO = ["resnet-18", "mobilenet-v2", "vit-tiny", "bert-mini", "resnet-18-int8"]
# The real-size LLM beside the toy llama-s: SmolLM2-135M's architecture in Q4_K_M (half a second a request
# here at the demo's 64 tokens in, 16 out; built once, in 5 s).
DEMO_REAL_LLMS = ["smollm2-135m"]
SERVER_PARAMS = {"latency_bound_ms": "25", "search_steps": "3"}
# The predictor the demo trains (bench/predict_here.py trains the same): 2 members; 10 epochs, not 3, so
# the GNN learns ONNX Runtime's per-operator costs from the zoo timed here (on held-out zoo networks, its
# answers went from 2-7× too slow to 1.0-2.0×; 45 s alone instead of 20).
DEMO_PREDICTOR = {"members": 2, "epochs": 10}
DEMO_ZOO_NETWORKS = 24  # networks of the zoo family timed here (1 thread, batch 1) for the predictor: ~15 s
DEMO_ZOO_INT8 = 1 / 3  # of them int8: one of each kind statically, then one of each dynamically quantized
TARGET_PRECISION = 0.1


# The spec sheet of DESIGN.md, as a person would type it for a board they are thinking of buying.
EXAMPLE_SPEC = """schema: edgeatlas.spec/v1
name: Raspberry Pi 5
device_class: board
soc: Broadcom BCM2712
cpu: {vendor: broadcom, model: BCM2712, arch: arm64, cores: 4, threads: 4,
      clusters: [{cores: 4, core: cortex-a76, max_ghz: 2.4}], max_ghz: 2.4, simd: neon, l2_kb: 2048, l3_kb: 2048}
memory: {type: LPDDR4X-4267, size_gb: 8, bandwidth_gbs: 17.1}
tdp_w: 12
"""


@dataclass(frozen=True)
class DemoCampaign:
    """One campaign of the demo's plan, as it is created through the admin API."""

    name: str
    models: list[str]
    selectors: dict[str, str]
    setting: Setting
    params: RunParams
    privacy: PrivacyParams | None = None  # None: the coordinator's default contract
    target_precision: float = 0.0
    in_verdict: bool = True  # False: its outcome does not decide the demo's exit code
    note: str = ""  # said when it is created


def campaign_plan(names: list[str], llms: list[str], iterations: int, duration_s: float,
                  simulated_fleet: bool, secure_cohort: int = 0) -> list[DemoCampaign]:
    """The demo's campaigns: the zoo on the real agents (and on the simulated fleet), the LLMs through
    llama.cpp, a LoadGen server campaign, and a secure campaign on the simulated cohort."""
    real, simulated = {"label.demo": "true"}, {"label.simulated": "true", "label.cohort": "!=secure"}
    # never fewer queries than LoadGen's early stopping needs for a valid p90: a 40 ms ResNet-18 gives only
    # five in 0.2 s, and a run it judges INVALID leaves its cell empty
    plan = [DemoCampaign("demo", names, real, Setting(threads=1), RunParams(
        warmup_iterations=10, min_iterations=max(iterations, MIN_QUERIES["single-stream"]),
        min_duration_s=duration_s,
        max_duration_s=max(60.0, 10 * duration_s)), PRIVACY, TARGET_PRECISION)]
    if simulated_fleet:
        plan.append(DemoCampaign("demo-simulated", names[:8], simulated, Setting(), RunParams(), in_verdict=False))
    if llms:
        plan.append(DemoCampaign(
            "demo-llm", llms, real, Setting(threads=1, scenario_params=LLM_PARAMS),
            RunParams(warmup_iterations=1, min_iterations=5, min_duration_s=0.3), LLM_PRIVACY,
            note=f"      LLM campaign: {', '.join(llms)} through llama.cpp, {LLM_PARAMS['prompt_tokens']} prompt "
                 f"tokens in, {LLM_PARAMS['output_tokens']} out, ≥ 5 requests each"))
        if simulated_fleet:
            plan.append(DemoCampaign("demo-llm-simulated", llms, simulated, Setting(scenario_params=LLM_PARAMS),
                                     RunParams(), LLM_PRIVACY))
    server = [n for n in names if n.startswith("nb201-")][:2] or [n for n in SERVER_CANDIDATES if n in names][:2]
    plan.append(DemoCampaign(
        "demo-server", server, real, Setting(threads=1, scenario="server", scenario_params=SERVER_PARAMS),
        RunParams(warmup_iterations=10, min_iterations=662, min_duration_s=0.3),
        PrivacyParams(statistics=("log_p99_ms", "log_server_qps")),
        note=f"      LoadGen server campaign: {', '.join(server)}, Poisson arrivals, the highest rate "
             f"whose p99 stays under {SERVER_PARAMS['latency_bound_ms']} ms"))
    models = [n for n in SECURE_MODELS if n in names]
    if secure_cohort and models:
        privacy = secure_privacy(secure_cohort)
        plan.append(DemoCampaign(
            "demo-secure", models, {"label.cohort": "secure"}, Setting(), RunParams(), privacy, in_verdict=False,
            note=f"      secure campaign: {', '.join(models)} on {secure_cohort} simulated {SECURE_PRODUCT['name']}s; "
                 f"their p50s are summed in a secure round once {privacy.cohort_min} hold one "
                 f"({privacy.describe()} per cell, bounds {SECURE_BOUNDS_MS[0]:g}..{SECURE_BOUNDS_MS[1]:g} ms)"))
    return plan
