"""Each dashboard page's logic through Streamlit's AppTest, against a real coordinator holding real data."""

from __future__ import annotations

import json
import math

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import FLEET_MODELS, LLM_MODEL

pytestmark = pytest.mark.slow

RASPBERRY_PI_5 = """name: Raspberry Pi 5
device_class: board
cpu: {arch: arm64, cores: 4, threads: 4, clusters: [{cores: 4, core: cortex-a76, max_ghz: 2.4}], max_ghz: 2.4}
memory: {size_gb: 8, bandwidth_gbs: 17.1}
"""


def figure(at: AppTest, key: str) -> dict:
    charts = [e for e in at.get("plotly_chart") if json.loads(e.proto.spec)]
    assert charts, "no chart on the page"
    return json.loads(charts[0].proto.spec)


def table_of(at: AppTest, key: str):
    """A st.dataframe by the key the page gives it; AppTest does not index dataframes by key, so by the
    order the page draws them in."""
    order = {"fleet_hw": 0, "fleet_privacy": 1, "fleet_agents": 2, "pr_table_A": 0, "pr_table_B": 1,
             "cmp_table": 0}
    if key == "pr_side":
        return at.dataframe[-1].value
    return at.dataframe[order[key]].value


def errors_of(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_heatmap_shows_every_source_and_suppresses_small_fleet_cells(app, world):
    at = app("heatmap")
    assert not errors_of(at)
    assert at.selectbox(key="hm_metric").value == "latency_mean_ms"  # the metric most cells have
    trace = figure(at, "hm_chart")["data"][0]
    models, columns = trace["y"], trace["x"]
    assert set(FLEET_MODELS + world.imported) <= set(models)
    assert any(c.endswith("·imported") for c in columns) and any(c.endswith("·simulated") for c in columns)
    fleet = [j for j, c in enumerate(columns) if "·" not in c]
    assert len(fleet) == 1  # the real agent's class, unmarked
    row = models.index("mlp-s")
    assert trace["text"][row][fleet[0]] == "k<5" and trace["z"][row][fleet[0]] is None  # no value leaks
    imported = [j for j, c in enumerate(columns) if c.endswith("·imported")]
    nb = models.index(world.imported[0])
    assert all(trace["z"][nb][j] is not None for j in imported)  # published values shown as they are
    assert "cited:" in trace["hovertext"][nb][imported[0]]
    assert "suppressed: 1 of the 5 devices" in trace["hovertext"][row][fleet[0]]
    assert at.get("download_button")


def test_heatmap_shows_llm_metrics_beside_onnx_ones(app, world):
    at = app("heatmap")
    options = at.selectbox(key="hm_metric").options
    assert {"time to first token (ms)", "decode tokens/s (tokens/s)", "latency mean (ms)"} <= set(options)
    at.selectbox(key="hm_metric").set_value("ttft_ms").run()
    for metric in ("ttft_ms", "decode_tps"):
        at.selectbox(key="hm_metric").set_value(metric).run()
        trace = figure(at, "hm_chart")["data"][0]
        with_values = {model for model, row in zip(trace["y"], trace["z"]) if any(v is not None for v in row)}
        assert with_values == {LLM_MODEL}  # only the LLM has token timings
        row = trace["z"][trace["y"].index(LLM_MODEL)]
        simulated = [v for c, v in zip(trace["x"], row) if c.endswith("·simulated")]
        # z is log10 of the value (data.Matrix): a value exists where z is a finite number, whatever its sign
        assert len(simulated) >= 3 and all(v is not None and math.isfinite(v) for v in simulated)


def test_heatmap_filters_by_source_and_campaign(app, world):
    at = app("heatmap")
    at.multiselect(key="hm_sources").set_value(["imported"]).run()
    columns = figure(at, "hm_chart")["data"][0]["x"]
    assert columns and all(c.endswith("·imported") for c in columns)
    at.multiselect(key="hm_sources").set_value([]).run()
    campaign = next(o for o in at.selectbox(key="hm_campaign").options if o.endswith("simulated"))
    at.selectbox(key="hm_campaign").set_value(campaign).run()
    trace = figure(at, "hm_chart")["data"][0]
    assert set(trace["y"]) == set(FLEET_MODELS) and all(c.endswith("·simulated") for c in trace["x"])


def test_fleet_counts_devices_and_privacy_per_device_class(app):
    at = app("fleet")
    assert not errors_of(at)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Devices"] == "7" and shown["Online"] == "7" and shown["Offline"] == "0"
    privacy = table_of(at, "fleet_privacy")
    assert privacy["devices"].sum() == 1  # simulated devices are left out
    assert privacy["releases_24h"].sum() == 2 and privacy["max_epsilon_24h"].max() == pytest.approx(2.0)
    agents = table_of(at, "fleet_agents")
    assert agents["simulated"].sum() == 6


def test_campaign_form_creates_a_campaign_and_rejects_bad_input(app, world):
    with world.coordinator.admin() as admin:
        before = len(admin.list_campaigns())
    at = app("campaigns")
    at.text_input(key="cf_name").set_value("from-the-form")
    at.multiselect(key="cf_models").set_value(["mlp-s"])
    at.text_area(key="cf_selectors").set_value("not a selector")
    at.button(key="cf_submit").click().run()
    assert any("not KEY=VALUE" in e for e in errors_of(at))
    with world.coordinator.admin() as admin:
        assert len(admin.list_campaigns()) == before  # nothing stored
    at.text_area(key="cf_selectors").set_value("label.simulated=true")
    at.selectbox(key="cf_scenario").set_value("server")
    at.text_input(key="cf_params").set_value("latency_bound_ms=0")
    at.button(key="cf_submit").click().run()
    assert any("latency_bound_ms=0 is not a number in" in e for e in errors_of(at))
    at.text_input(key="cf_params").set_value("latency_bound_ms=20")
    at.number_input(key="cf_epsilon").set_value(2.0)
    at.button(key="cf_submit").click().run()
    assert not errors_of(at) and any("from-the-form created" in s.value for s in at.success)
    with world.coordinator.admin() as admin:
        made = [c for c in admin.list_campaigns() if c.name == "from-the-form"]
    assert len(made) == 1 and made[0].models == ["mlp-s"] and made[0].privacy.epsilon == 2.0
    assert made[0].selectors == {"label.simulated": "true"} and made[0].agents == 6
    assert made[0].setting.scenario == "server" and made[0].setting.scenario_params["latency_bound_ms"] == "20"


def test_an_adaptive_campaign_shows_its_learning_curve(app, world):
    with world.coordinator.admin() as admin:
        adaptive = next(c for c in admin.list_campaigns() if c.name == "adaptive")
    assert adaptive.status == "done" and len(adaptive.rounds) >= 2
    at = app("campaigns")
    at.selectbox(key="cp_pick").set_value(adaptive.campaign_id).run()
    texts = [m.value for m in at.markdown]
    assert any(t.startswith(f"Adaptive: {len(adaptive.rounds)} rounds, 12 of 12 measurements — stopped: spent the "
                            "budget of 12") for t in texts), texts
    curve = figure(at, f"cp_curve_{adaptive.campaign_id}")
    assert curve["layout"]["title"]["text"] == "Learning curve"
    points = [(x, y) for x, y in zip(curve["data"][0]["x"], curve["data"][0]["y"])]
    expected = [(r.measurements, pytest.approx(r.validation_mape)) for r in adaptive.rounds
                if not math.isnan(r.validation_mape)]
    assert points == expected and len(points) >= 2


def test_the_campaign_form_makes_an_adaptive_campaign(app, world):
    at = app("campaigns")
    at.text_input(key="cf_name").set_value("adaptive-from-the-form")
    at.multiselect(key="cf_models").set_value(["mlp-s", "resnet-s"])
    at.text_area(key="cf_selectors").set_value("label.simulated=true")
    at.number_input(key="cf_target_mape").set_value(10.0)
    at.button(key="cf_submit").click().run()
    assert any("a target MAPE applies to an adaptive campaign" in e for e in errors_of(at))
    at.number_input(key="cf_budget").set_value(4)
    at.button(key="cf_submit").click().run()
    assert not errors_of(at) and any("adaptive, up to 4 measurements" in s.value for s in at.success)
    with world.coordinator.admin() as admin:
        made, = [c for c in admin.list_campaigns() if c.name == "adaptive-from-the-form"]
    assert (made.adaptive.budget, made.adaptive.target_mape) == (4, 10.0)


def test_campaign_progress_per_hardware_class_pause_resume_and_cancel(app, world):
    from edgeatlas.protos.records import RunParams, Setting

    # A two-minute run on the real agent: still running when cancelled. The agent finishes a task it
    # started (it does not stop a cancelled one), and the world lives for the whole session: an hour-long
    # run here held one of CI's two cores for the rest of the suite.
    with world.coordinator.admin() as admin:
        cid = admin.create_campaign(["resnet-s"], {"label.real": "true"}, 1, Setting(threads=1),
                                    RunParams(min_iterations=10, min_duration_s=120, max_duration_s=120),
                                    name="long").campaign_id
    at = app("campaigns")
    assert f"#{cid} long (running)" in at.selectbox(key="cp_pick").options
    at.selectbox(key="cp_pick").set_value(cid).run()
    texts = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith("cpu:") and "to go" in t for t in texts)  # one bar per hardware class
    at.button(key=f"pause_campaign_{cid}").click().run()
    assert any("is paused" in s.value for s in at.success)
    with world.coordinator.admin() as admin:
        assert admin.campaign(cid).status == "paused"
    at.button(key=f"resume_campaign_{cid}").click().run()
    assert any("is running" in s.value for s in at.success)
    at.button(key=f"cancel_campaign_{cid}").click().run()
    assert any("is cancelled" in s.value for s in at.success)
    with world.coordinator.admin() as admin:
        assert admin.campaign(cid).status == "cancelled"


def test_predictor_answers_a_pasted_sheet_and_names_a_bad_field(app):
    at = app("predictor")
    captions = " ".join(c.value for c in at.caption)
    assert "Predictor v1 (published)" in captions
    # each runtime with the processors it was timed on (the sample: PyTorch on CPUs and GPUs, TFLite on CPUs)
    assert "training data covers pytorch on cpu, pytorch on gpu, tflite on cpu; for onnxruntime" in captions
    at.radio(key="pa_how").set_value("Paste").run()
    at.text_area(key="pa_paste").set_value(RASPBERRY_PI_5.replace("board", "toaster")).run()
    assert any("device_class" in e and "toaster" in e for e in errors_of(at))
    at.text_area(key="pa_paste").set_value(RASPBERRY_PI_5).run()
    at.multiselect(key="pr_models").set_value(["mlp-s", "resnet-s"])
    at.button(key="pr_go").click().run()
    assert not errors_of(at), errors_of(at)
    table = table_of(at, "pr_table_A")
    assert list(table["model"]) == ["mlp-s", "resnet-s"]
    assert ((table["low_ms"] <= table["latency_ms"]) & (table["latency_ms"] <= table["high_ms"])).all()
    assert (table["latency_ms"] > 0).all() and (table["gflops"] > 0).all()
    assert "note" not in table and "zero_shot_ms" not in table  # shown below it once, and only with a fingerprint
    assert any("no sample of onnxruntime" in c.value for c in at.caption)  # the runtime it was asked for
    pareto = figure(at, "pr_pareto")["data"][0]
    assert sorted(pareto["text"]) == ["mlp-s", "resnet-s"]


def test_predictor_compares_two_sheets_side_by_side(app):
    at = app("predictor")
    at.toggle(key="pr_compare").set_value(True).run()
    at.radio(key="pb_how").set_value("Paste").run()
    at.text_area(key="pb_paste").set_value(RASPBERRY_PI_5).run()
    at.multiselect(key="pr_models").set_value(["mlp-s"])
    at.button(key="pr_go").click().run()
    assert not errors_of(at), errors_of(at)
    side = table_of(at, "pr_side")
    assert list(side["model"]) == ["mlp-s"] and side["B / A"].iloc[0] > 0


def test_compare_two_hardware_classes_with_predictions_and_two_models(app, world):
    at = app("compare")
    assert not errors_of(at)
    table = table_of(at, "cmp_table")
    a, b = at.selectbox(key="cmp_ha").value, at.selectbox(key="cmp_hb").value
    assert a != b and f"{a} measured" in table and f"{a} predicted" in table
    assert table[f"{a} measured"].notna().any() and (table[f"{a} predicted"].dropna() > 0).all()
    at.radio(key="cmp_mode").set_value("Two models").run()
    at.selectbox(key="cmp_ma").set_value("mlp-s")
    at.selectbox(key="cmp_mb").set_value("resnet-s").run()
    table = table_of(at, "cmp_table")
    assert {"mlp-s", "resnet-s", "ratio b/a"} <= set(table.columns)
    both = table.dropna()
    assert len(both) > 0 and (both["ratio b/a"] > 0).all()


def test_unreachable_coordinator_and_wrong_token_are_named(app, world):
    at = app("heatmap", address="127.0.0.1:1")
    assert any("cannot be reached" in e for e in errors_of(at))
    at = app("fleet", token="ea_admin_wrong")
    assert any("refused the admin token" in e for e in errors_of(at))
    at = app("fleet", address="no-port")
    assert any("not HOST:PORT" in e for e in errors_of(at))
