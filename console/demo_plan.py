"""What `edgeatlas demo` runs: its constants and its campaigns, as records (console/demo.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Setting

START_TIMEOUT_S = 60.0
CAMPAIGN_TIMEOUT_S = 900.0
NB201_MODELS = 4
PRIVACY = PrivacyParams()  # the default contract: gaussian, ε = 1, δ = 1e-6 per report
# LLM reports release the request's end-to-end p50, time to first token and time per output token
LLM_PRIVACY = PrivacyParams(statistics=("log_p50_ms", "log_ttft_ms", "log_tpot_ms"))
LLM_PARAMS = {"prompt_tokens": "64", "output_tokens": "16"}
SERVER_MODELS = ["mlp-s", "mobilenet-s"]
SERVER_PARAMS = {"latency_bound_ms": "25", "search_steps": "3"}
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
                  simulated_fleet: bool) -> list[DemoCampaign]:
    """The demo's campaigns: the zoo on the real agents (and on the simulated fleet), the LLMs through
    llama.cpp, and a LoadGen server campaign."""
    real, simulated = {"label.demo": "true"}, {"label.simulated": "true"}
    plan = [DemoCampaign("demo", names, real, Setting(threads=1), RunParams(
        warmup_iterations=10, min_iterations=iterations, min_duration_s=duration_s,
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
    plan.append(DemoCampaign(
        "demo-server", SERVER_MODELS, real, Setting(threads=1, scenario="server", scenario_params=SERVER_PARAMS),
        RunParams(warmup_iterations=10, min_iterations=662, min_duration_s=0.3),
        PrivacyParams(statistics=("log_p99_ms", "log_server_qps")),
        note=f"      LoadGen server campaign: {', '.join(SERVER_MODELS)}, Poisson arrivals, the highest rate "
             f"whose p99 stays under {SERVER_PARAMS['latency_bound_ms']} ms"))
    return plan
