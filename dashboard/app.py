"""The EdgeAtlas dashboard (Streamlit): heat-map, fleet, campaigns, predictor, compare.

Run it with `edgeatlas dashboard --coordinator HOST:PORT`; it reads EDGEATLAS_COORDINATOR and
EDGEATLAS_ADMIN_TOKEN (and EDGEATLAS_TLS_*) and talks to the coordinator's admin API only.
"""

from __future__ import annotations

import math
import time
from dataclasses import astuple

import plotly.graph_objects as go
import streamlit as st

from edgeatlas.dashboard import data
from edgeatlas.dashboard.api import Connection, explain
from edgeatlas.protos import convert, errors
from edgeatlas.protos.privacy import PrivacyParams, default_mode, delta_for
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.scenarios import SCENARIOS
from edgeatlas.v1 import admin_pb2

PAGES = ("Heat-map", "Fleet", "Campaigns", "Predictor", "Compare")
SLUGS = {p: p.lower().replace("-", "") for p in PAGES}  # ?page=heatmap, ?page=fleet, ...
CACHE_S = 5


# ---- reads through the admin API, cached a few seconds ---------------------------------------------------
@st.cache_resource(show_spinner=False)
def _client_for(key: tuple):
    return Connection(*key).client()  # one channel per coordinator and token, shared by the sessions


def _client(conn: Connection):
    return _client_for(astuple(conn))


@st.cache_data(ttl=CACHE_S, show_spinner=False)
def _fetch(key: tuple, what: str):
    admin = _client_for(key)
    return {"heatmap": admin.heatmap, "hardware": admin.list_hardware, "agents": admin.list_agents,
            "campaigns": admin.list_campaigns, "models": admin.list_models,
            "versions": admin.predictor_versions}[what]()


@st.cache_data(ttl=60, show_spinner=False)
def _predicted_ms(key: tuple, spec_json: str, model: str, target: str, version: int) -> float:
    """A registered model's predicted latency on a sheet (batch 1, all threads), cached a minute."""
    return _client_for(key).predict(spec_json, model, target, 1, 0, version=version).latency_ms


def fetch(conn: Connection, what: str):
    """The coordinator's answer, or the page stops with one line saying what is wrong."""
    try:
        with st.spinner(f"asking the coordinator ({what})…"):
            return _fetch(astuple(conn), what)
    except errors.EdgeAtlasError as exc:
        st.error(explain(exc, conn.address))
        st.stop()


def call(conn: Connection, fn, *args):
    """An action (create, cancel, predict): its result, or None after showing why it failed."""
    try:
        return fn(_client(conn), *args)
    except errors.EdgeAtlasError as exc:
        st.error(explain(exc, conn.address))
        return None


# ---- pages ------------------------------------------------------------------------------------------------
def page_heatmap(conn: Connection) -> None:
    st.header("Global heat-map: models × hardware")
    hardware = fetch(conn, "hardware")
    frame = data.cells_frame(fetch(conn, "heatmap"), hardware)
    if frame.empty:
        st.info("No measurements yet. Start agents (`edgeatlas agent run`) and a campaign, or import published "
                "data; cells appear here as reports arrive.")
        return
    campaigns = fetch(conn, "campaigns")
    metrics = data.metrics_in(frame) or ["latency_p50_ms"]
    c1, c2, c3 = st.columns(3)
    metric = c1.selectbox("Metric", metrics, index=metrics.index(data.commonest_metric(frame, metrics)),
                          format_func=data.metric_label, key="hm_metric")
    sources = c2.multiselect("Source", sorted(frame["source"].unique()), key="hm_sources",
                             help="fleet: devices' private reports; trusted: exact reports of a private fleet; "
                                  "imported: published measurements; simulated: synthetic devices")
    device_classes = c3.multiselect("Device class", sorted(frame["device_class"].unique()), key="hm_devices")
    c4, c5, c6 = st.columns(3)
    runtimes = c4.multiselect("Runtime", sorted(frame["runtime"].unique()), key="hm_runtimes")
    targets = c5.multiselect("Target", sorted(frame["target"].unique()), key="hm_targets")
    by_id = {f"#{c.campaign_id} {c.name}".strip(): c for c in campaigns}
    chosen = c6.selectbox("Campaign", ["all"] + list(by_id), key="hm_campaign")
    filters = data.Filters(tuple(sources), tuple(device_classes), tuple(runtimes), tuple(targets))
    if chosen != "all":
        filters = data.for_campaign(filters, by_id[chosen])
    shown = data.apply(frame, filters)
    m = data.matrix(shown, metric)
    if not m.models:
        st.warning("No cell matches these filters.")
        return
    st.plotly_chart(heatmap_figure(m, metric), key="hm_chart", width="stretch")
    suppressed = int(shown[shown["suppressed"]].drop_duplicates(["model", "hardware_class", "setting"]).shape[0])
    st.caption(f"{len(m.models)} models × {len(m.columns)} hardware columns; colour on a log scale. "
               f"`k<N`: suppressed, fewer than N distinct devices reported ({suppressed} cells). Columns marked "
               f"·imported are published measurements (with their citation), ·simulated are synthetic devices, "
               f"·trusted exact reports; unmarked columns are the fleet's private reports. `mode` says what each "
               f"value rests on: secure (a cohort's sum under secure aggregation), ldp (reports noised alone), "
               f"trusted, imported or simulated.")
    table = shown[shown["metric"] == metric]
    st.dataframe(table[["model", "hardware_class", "device_class", "source", "mode", "setting", "value", "low", "high",
                        "n_devices", "n_reports", "privacy", "citation"]], hide_index=True, width="stretch",
                 key="hm_table")
    st.download_button("Export CSV", data.export_csv(shown), file_name="edgeatlas-heatmap.csv", mime="text/csv",
                       key="hm_csv")


def heatmap_figure(m: data.Matrix, metric: str) -> go.Figure:
    lower_better = data.METRICS.get(metric, ("", "", True))[2]
    finite = [v for row in m.z for v in row if not math.isnan(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    ticks = [t for t in range(math.floor(lo), math.ceil(hi) + 1)] or [0]
    fig = go.Figure(go.Heatmap(
        z=m.z, x=m.columns, y=m.models, text=m.text, texttemplate="%{text}", hovertext=m.hover,
        hoverinfo="text", colorscale="Viridis", reversescale=lower_better, xgap=2, ygap=2,
        colorbar={"title": data.metric_label(metric), "tickvals": ticks,
                  "ticktext": [data.fmt(10.0 ** t) for t in ticks]}))
    fig.update_layout(height=max(320, 38 * len(m.models) + 220), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis={"tickangle": -35, "type": "category", "side": "top"},
                      yaxis={"type": "category", "autorange": "reversed"})
    return fig


def page_fleet(conn: Connection) -> None:
    st.header("Fleet")
    agents = data.agents_frame(fetch(conn, "agents"), int(time.time() * 1000))
    if agents.empty:
        st.info("No device has enrolled yet: `edgeatlas agent run --token ea_enroll_...` on a device.")
        return
    c = st.columns(4)
    c[0].metric("Devices", len(agents))
    c[1].metric("Online", int((agents["status"] == "online").sum()))
    c[2].metric("Offline", int((agents["status"] == "offline").sum()))
    c[3].metric("Hardware classes", agents["hardware_class"].nunique())
    comp = data.composition(agents)
    left, right = st.columns(2)
    with left:
        st.subheader("Composition by device class")
        fig = go.Figure([go.Bar(name=status, x=part["device_class"], y=part["devices"])
                         for status, part in comp.groupby("status")])
        fig.update_layout(barmode="stack", height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10})
        st.plotly_chart(fig, key="fleet_chart", width="stretch")
        st.caption("No locations are collected: the fleet is shown by what devices are, not where.")
    with right:
        st.subheader("Hardware classes")
        st.dataframe(agents.groupby(["hardware_class", "device_class"]).size().rename("devices").reset_index()
                     .sort_values("devices", ascending=False), hide_index=True, width="stretch", key="fleet_hw")
    st.subheader("Privacy released per device class (last 24 h)")
    st.dataframe(data.privacy_by_class(agents), hide_index=True, width="stretch", key="fleet_privacy")
    st.caption("Σ ε of the private releases each device sent (basic composition): an upper bound of what its own "
               "ledger counts with Rényi accounting. Each device refuses work beyond its own budget.")
    st.subheader("Devices")
    st.dataframe(agents, hide_index=True, width="stretch", key="fleet_agents")


def page_campaigns(conn: Connection) -> None:
    st.header("Campaigns")
    models = [m.name for m in fetch(conn, "models")]
    with st.form("new_campaign"):
        st.subheader("New campaign")
        name = st.text_input("Name", key="cf_name")
        chosen = st.multiselect("Models", models, key="cf_models")
        selectors = st.text_area("Selectors (KEY=VALUE, one per line; empty: every device)", key="cf_selectors",
                                 help="device_class=phone, hardware_class=..., cpu.arch=arm64, label.site=lab")
        c = st.columns(4)
        scenario = c[0].selectbox("Scenario", list(SCENARIOS), key="cf_scenario",
                                  help="MLPerf LoadGen's; LLM (GGUF) models run single-stream")
        batch = c[1].number_input("Batch", 1, 4096, 1, key="cf_batch")
        threads = c[2].number_input("Threads (0: default)", 0, 1024, 0, key="cf_threads")
        repeats = c[3].number_input("Repeats", 1, 1000, 1, key="cf_repeats")
        c = st.columns(4)
        iterations = c[0].number_input("Min iterations", 1, 1_000_000, 100, key="cf_iterations")
        duration = c[1].number_input("Min duration (s)", 0.01, 3600.0, 1.0, key="cf_duration")
        mechanism = c[2].selectbox("Privacy mechanism", ["gaussian", "laplace"], key="cf_mechanism")
        epsilon = c[3].number_input("ε per report", 0.01, 100.0, 1.0, key="cf_epsilon")
        scenario_text = st.text_input(
            "Scenario parameters (KEY=VALUE, comma-separated)", key="cf_params",
            help="server: target_qps, latency_bound_ms, search_steps; multi-stream: samples_per_query; "
                 "LLM: prompt_tokens, output_tokens, gpu_layers")
        c = st.columns(2)
        mode = c[0].selectbox("Privacy mode", list(MODE_CHOICES), key="cf_mode",
                              help="secure: devices of one hardware class sum their values under secure "
                                   "aggregation, each adding a share of the noise; ldp: each report noised alone "
                                   "on its device (adaptive campaigns, fleets too small for cohorts)")
        cohort_min = c[1].number_input("Secure: devices per round, at least", 2, 5000, 10, key="cf_cohort_min")
        c = st.columns(2)
        budget = c[0].number_input("Adaptive: budget of measurements (0: measure every model on every device)",
                                   0, 1_000_000, 0, key="cf_budget",
                                   help="round by round, the cells the predictor is least sure of, retrained between")
        target_mape = c[1].number_input("Adaptive: stop at validation MAPE (%, 0: none)", 0.0, 999.0, 0.0,
                                        key="cf_target_mape")
        submitted = st.form_submit_button("Create campaign", key="cf_submit")
    if submitted:
        create_campaign(conn, name, chosen, selectors, scenario, int(batch), int(threads), int(repeats),
                        int(iterations), float(duration), mechanism, float(epsilon), scenario_text,
                        int(budget), float(target_mape), mode, int(cohort_min))
    campaigns = fetch(conn, "campaigns")
    if not campaigns:
        st.info("No campaign yet.")
        return
    st.subheader("All campaigns")
    st.dataframe(data.campaigns_frame(campaigns), hide_index=True, width="stretch", key="cp_table")
    labels = {c.campaign_id: f"#{c.campaign_id} {c.name} ({c.status})" for c in
              sorted(campaigns, key=lambda c: -c.campaign_id)}
    # picked by id, so the choice holds while its status (in the label) changes
    picked = st.selectbox("Progress of", list(labels), format_func=labels.get, key="cp_pick")
    running = next(c.status == "running" for c in campaigns if c.campaign_id == picked)
    # A running campaign is watched: its part of the page redraws every few seconds on its own.
    (live_campaign_detail if running else campaign_detail)(conn, picked)


# the campaign form's privacy modes: the default one, then each by name
MODE_CHOICES = {"secure (ldp for adaptive or laplace)": "", "secure": "secure", "ldp": "ldp"}

def create_campaign(conn, name, models, selectors_text, scenario, batch, threads, repeats, iterations, duration,
                    mechanism, epsilon, scenario_text="", budget=0, target_mape=0.0, mode="",
                    cohort_min=10) -> None:
    try:
        if not models:
            raise errors.InvalidInput("pick at least one model")
        selectors = data.parse_selectors(selectors_text)
        scenario_params = data.parse_scenario(scenario, scenario_text)
        privacy = PrivacyParams(mechanism=mechanism, epsilon=epsilon, delta=delta_for(mechanism),
                                mode=MODE_CHOICES.get(mode) or default_mode(budget > 0, mechanism),
                                cohort_min=cohort_min).check()
    except errors.InvalidInput as exc:
        st.error(f"Invalid input: {exc}")
        return
    setting = Setting(batch=batch, threads=threads, scenario=scenario, scenario_params=scenario_params)
    params = RunParams(warmup_iterations=10, min_iterations=iterations, min_duration_s=duration,
                       max_duration_s=max(60.0, duration))
    adaptive = admin_pb2.Adaptive(budget=budget, target_mape=target_mape) if budget else None
    if adaptive is None and target_mape:
        st.error("Invalid input: a target MAPE applies to an adaptive campaign: give it a budget")
        return
    made = call(conn, lambda a: a.create_campaign(models, selectors, repeats, setting, params, name=name,
                                                  privacy=privacy, adaptive=adaptive))
    if made is not None:
        _fetch.clear()
        what = (f"adaptive, up to {budget} measurements" if adaptive else f"{made.counts.pending} tasks")
        st.success(f"Campaign #{made.campaign_id} {made.name} created: {what} on {made.agents} devices.")


def campaign_detail(conn: Connection, campaign_id: int) -> None:
    c = call(conn, lambda a: a.campaign(campaign_id))
    if c is None:
        return
    st.write(f"**#{c.campaign_id} {c.name}** — {c.status}; {len(c.models)} models "
             f"({', '.join(c.models[:6])}{'…' if len(c.models) > 6 else ''}) on {c.agents} devices; "
             f"setting {convert.setting_from_pb(c.setting, defaults=True).key()}")
    st.progress(data.progress(c.counts), text=f"overall: {c.counts.done} done, {c.counts.failed} failed, "
                                             f"{c.counts.pending + c.counts.leased} to go")
    per_hw = data.hardware_progress(c)
    for row in per_hw.itertuples():
        st.progress(row.progress / 100, text=f"{row.hardware_class}: {row.done} done, {row.failed} failed, "
                                             f"{row.pending + row.leased} to go")
    if c.HasField("adaptive"):
        adaptive_detail(c)
    if c.HasField("federated"):
        f = c.federated
        st.write(f"Federated training: {len(c.federated_rounds)} of {f.rounds} rounds on {f.devices} opted-in "
                 f"devices, DP-SGD at ε = {f.epsilon:g} per measurement"
                 + (f"; made predictor v{c.predictor_version}" if c.predictor_version else "")
                 + (f" — {c.stop_reason}" if c.stop_reason else ""))
        st.dataframe(data.federated_rounds(c), hide_index=True, key=f"cp_federated_{c.campaign_id}")
    if c.failures:
        with st.expander(f"{len(c.failures)} failures"):
            st.code("\n".join(c.failures))
    if message := st.session_state.pop("cp_message", None):
        st.success(message)
    cols = st.columns(3)
    actions = [("Pause", "pause_campaign")] if c.status == "running" else [("Resume", "resume_campaign")] \
        if c.status == "paused" else []
    if c.status in ("running", "paused"):
        actions.append(("Cancel campaign", "cancel_campaign"))
    for col, (label, method) in zip(cols, actions):
        # a callback runs before the page is drawn again, so the page shows the new state at once
        col.button(label, key=f"{method}_{c.campaign_id}", on_click=campaign_action,
                   args=(conn, c.campaign_id, method))
    if cols[2].button("Refresh", key="cp_refresh"):
        _fetch.clear()


def adaptive_detail(c: admin_pb2.Campaign) -> None:
    """An adaptive campaign's learning curve: the validation error after each round against measurements."""
    curve = data.learning_curve(c)
    spent = c.counts.done + c.counts.failed
    target = f", target {c.adaptive.target_mape:g} %" if c.adaptive.target_mape else ""
    st.write(f"Adaptive: {len(curve)} rounds, {spent} of {c.adaptive.budget} measurements{target}"
             + (f" — stopped: {c.stop_reason}" if c.stop_reason else ""))
    known = curve.dropna(subset=["validation_mape"])
    if known.empty:
        st.caption("The learning curve starts once the seed round is measured.")
        return
    fig = go.Figure(go.Scatter(x=known["measurements"].tolist(), y=known["validation_mape"].tolist(),
                               mode="lines+markers",
                               text=[f"round {r}" for r in known["round"]], name="validation MAPE"))
    if c.adaptive.target_mape:
        fig.add_hline(y=c.adaptive.target_mape, line_dash="dot", annotation_text="target")
    fig.update_layout(xaxis_title="measurements", yaxis_title="validation MAPE (%, leave-one-out)", height=320,
                      margin=dict(l=10, r=10, t=30, b=10), title="Learning curve")
    st.plotly_chart(fig, key=f"cp_curve_{c.campaign_id}", width="stretch")


def campaign_action(conn: Connection, campaign_id: int, method: str) -> None:
    done = call(conn, lambda a: getattr(a, method)(campaign_id))
    if done is not None:
        _fetch.clear()
        st.session_state["cp_message"] = f"Campaign #{done.campaign_id} is {done.status}."


live_campaign_detail = st.fragment(run_every=3)(campaign_detail)


def spec_input(hardware, prefix: str, label: str):
    """A spec sheet from a known device (editable), pasted text or an uploaded file; None if not valid."""
    st.markdown(f"**{label}**")
    how = st.radio("Spec sheet from", ["Known device", "Paste", "Upload"], horizontal=True, key=f"{prefix}_how")
    text, origin = "", label
    if how == "Known device":
        choices = data.spec_choices(hardware)
        if not choices:
            st.info("The coordinator knows no device yet: paste or upload a sheet.")
            return None
        picked = st.selectbox("Device", list(choices), key=f"{prefix}_device")
        text = st.text_area("Edit it if you like (YAML)", data.spec_yaml(choices[picked]), height=260,
                            key=f"{prefix}_edit_{picked}")
        origin = picked
    elif how == "Paste":
        text = st.text_area("Spec sheet (YAML or JSON, edgeatlas.spec/v1)", height=260, key=f"{prefix}_paste",
                            placeholder="name: My board\ndevice_class: board\ncpu: {arch: arm64, cores: 4, "
                                        "clusters: [{core: cortex-a76, cores: 4, max_ghz: 2.4}]}\n"
                                        "memory: {bandwidth_gbs: 17}")
        origin = "pasted spec sheet"
    else:
        up = st.file_uploader("Spec sheet file", type=["yaml", "yml", "json"], key=f"{prefix}_upload")
        if up is None:
            return None
        text, origin = up.getvalue().decode("utf-8", errors="replace"), up.name
    if not text.strip():
        return None
    try:
        return data.parse_spec(text, origin)
    except errors.InvalidInput as exc:
        st.error(f"Spec sheet not valid: {exc}")
        return None


def page_predictor(conn: Connection) -> None:
    st.header("Predictor: latency from a spec sheet alone")
    versions = fetch(conn, "versions")
    if not versions:
        st.warning("The coordinator has no predictor version yet. Train one on its cells here, or publish a "
                   "checkpoint: `edgeatlas predictor publish CKPT`.")
        if st.button("Train a version now", key="pr_train"):
            with st.spinner("training on the coordinator's cells (a minute or two)…"):
                v = call(conn, lambda a: a.train_predictor())
            if v is not None:
                _fetch.clear()
                st.success(f"Predictor v{v.version} trained on {v.cells} cells.")
        return
    newest = versions[-1]
    st.caption(f"Predictor v{newest.version} ({newest.trigger}): {newest.cells} measurements, {newest.networks} "
               f"networks, {newest.devices} devices. {data.evaluation_summary(newest)}")
    st.caption(data.runtime_coverage(newest))
    hardware = fetch(conn, "hardware")
    compare = st.toggle("Compare two spec sheets side by side", key="pr_compare")
    cols = st.columns(2 if compare else 1)
    with cols[0]:
        spec_a = spec_input(hardware, "pa", "Spec sheet A" if compare else "Spec sheet")
    spec_b = None
    if compare:
        with cols[1]:
            spec_b = spec_input(hardware, "pb", "Spec sheet B")
    names = [m.name for m in fetch(conn, "models") if m.format == "onnx"]  # the predictor reads ONNX graphs
    c = st.columns([3, 2])
    picked = c[0].multiselect("Registered models", names, default=names[:4], key="pr_models")
    uploads = c[1].file_uploader("…or upload ONNX models", type=["onnx"], accept_multiple_files=True,
                                 key="pr_uploads")
    flags = c[1].text_input("Their input shapes, as on the command line",
                            placeholder="--input x=batchx3x224x224 --dim seq=128", key="pr_inputs",
                            help="every dynamic dimension but the batch needs a size: it is never guessed")
    c = st.columns(4)
    target = c[0].selectbox("Target", ["cpu", "gpu", "npu", "dsp", "tpu", "fpga", "asic"], key="pr_target")
    batch = int(c[1].number_input("Batch", 1, 4096, 1, key="pr_batch"))
    threads = int(c[2].number_input("Threads (0: all cores)", 0, 1024, 0, key="pr_threads"))
    runtime = c[3].selectbox("Runtime", data.RUNTIMES, key="pr_runtime")
    upload = st.file_uploader("A device's fingerprint (optional): `edgeatlas agent fingerprint --out FILE` on the "
                              "device; the answers for sheet A are calibrated on it", type=["json"],
                              key="pr_fingerprint")
    fingerprint_json = ""
    if upload is not None:
        fingerprint_json, setting = data.fingerprint_upload(upload.getvalue())
        if setting is None:
            st.error("The fingerprint is not JSON: upload the file `edgeatlas agent fingerprint --out` wrote.")
            return
        st.caption(f"Fingerprint measured at threads {setting['threads'] or 'default'}, batch {setting['batch']}, "
                   f"{setting['runtime']}: ask in that setting (the coordinator refuses another).")
    if not st.button("Predict", type="primary", key="pr_go"):
        return
    if spec_a is None or (compare and spec_b is None):
        st.error("Give a valid spec sheet first" + (" (both A and B)." if compare else "."))
        return
    models = [(n, n) for n in picked] + [(u.name, u.getvalue()) for u in uploads or []]
    if not models:
        st.error("Pick or upload at least one model.")
        return
    frames = {}
    for key, spec in (("A", spec_a), ("B", spec_b)):
        if spec is None:
            continue
        answers = []
        with st.spinner(f"predicting {len(models)} models on {spec.name or 'the sheet'}…"):
            for label, model in models:
                try:
                    spec_json = data.uploaded_spec(model, flags) if isinstance(model, bytes) else ""
                except errors.EdgeAtlasError as exc:
                    st.error(f"{label}: {exc}")
                    return
                a = call(conn, lambda adm: adm.predict(spec.to_json(), model, target, batch, threads, runtime,
                                                       inputs_json=spec_json,
                                                       fingerprint_json=fingerprint_json if key == "A" else ""))
                if a is None:
                    return
                answers.append((label, a))
        frames[key] = (spec, data.predictions_frame(answers))
    for key, (spec, frame) in frames.items():
        st.subheader(f"{spec.name or 'Spec sheet ' + key}: predicted latency (80 % interval)")
        empty = [c for c in ("accuracy", "zero_shot_ms") if not frame[c].notna().any()]
        shown = frame.drop(columns=empty + ["note"])
        st.dataframe(shown, hide_index=True, width="stretch", key=f"pr_table_{key}")
        for note in dict.fromkeys(frame["note"].tolist()):
            if note:
                st.caption(("Calibrated on the fingerprint: " if key == "A" and fingerprint_json else "") + note)
    st.caption("Energy is not predicted yet: the training data holds no energy measurements.")
    st.plotly_chart(pareto_figure(frames), key="pr_pareto", width="stretch")
    st.caption("On the front: no other model is both faster and more accurate (where every model carries an "
               "`accuracy` metadata property), else both faster and cheaper in GFLOPs. Bars: 80 % intervals.")
    if len(frames) == 2:
        a, b = frames["A"][1], frames["B"][1]
        side = a[["model", "latency_ms"]].merge(b[["model", "latency_ms"]], on="model", suffixes=(" A", " B"))
        side["B / A"] = side["latency_ms B"] / side["latency_ms A"]
        st.subheader("Side by side")
        st.dataframe(side, hide_index=True, width="stretch", key="pr_side")


def pareto_figure(frames: dict) -> go.Figure:
    fig = go.Figure()
    for key, (spec, frame) in frames.items():
        axis, front = data.pareto(frame)
        fig.add_trace(go.Scatter(
            x=frame["latency_ms"], y=frame[axis], mode="markers+text", text=frame["model"],
            textposition="top center", name=f"{spec.name or key}",
            error_x={"type": "data", "symmetric": False, "array": frame["high_ms"] - frame["latency_ms"],
                     "arrayminus": frame["latency_ms"] - frame["low_ms"]},
            marker={"size": [14 if f else 8 for f in front], "symbol": ["star" if f else "circle" for f in front]}))
        fig.update_yaxes(title="accuracy" if axis == "accuracy" else "GFLOPs (cost proxy)")
    fig.update_xaxes(title="predicted latency (ms, log)", type="log")
    fig.update_layout(height=420, title="Pareto front (stars)",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def page_compare(conn: Connection) -> None:
    st.header("Compare")
    hardware = {h.hardware_class: h for h in fetch(conn, "hardware")}
    frame = data.cells_frame(fetch(conn, "heatmap"), list(hardware.values()))
    if frame.empty:
        st.info("No measurements to compare yet.")
        return
    mode = st.radio("Compare", ["Two hardware classes", "Two models"], horizontal=True, key="cmp_mode")
    metrics = data.metrics_in(frame)
    metric = st.selectbox("Metric", metrics, index=metrics.index(data.commonest_metric(frame, metrics)),
                          format_func=data.metric_label, key="cmp_metric")
    c = st.columns(2)
    if mode == "Two models":
        models = sorted(frame["model"].unique())
        a = c[0].selectbox("Model A", models, key="cmp_ma")
        b = c[1].selectbox("Model B", models, index=min(1, len(models) - 1), key="cmp_mb")
        st.dataframe(data.compare_models(frame, metric, a, b), hide_index=True, width="stretch", key="cmp_table")
        return
    classes = data.classes_by_coverage(frame, metric)
    a = c[0].selectbox("Hardware A", classes, key="cmp_ha")
    b = c[1].selectbox("Hardware B", classes, index=min(1, len(classes) - 1), key="cmp_hb")
    table = data.compare_hardware(frame, metric, a, b)
    versions = fetch(conn, "versions")
    if versions and metric.startswith("latency") and st.toggle("Add the predictor's values", value=True,
                                                               key="cmp_predict"):
        registered = {m.name for m in fetch(conn, "models") if m.format == "onnx"}  # the predictor reads ONNX
        for hw in (a, b):
            if hw not in hardware:
                continue
            spec_json = hardware[hw].spec_json
            target = hw.split(":")[0]
            predicted = []
            with st.spinner(f"predicting on {hw}…"):
                for model in table["model"]:
                    ms = call(conn, lambda _: _predicted_ms(astuple(conn), spec_json, model, target,
                                                            versions[-1].version)) if model in registered else None
                    predicted.append(ms if ms is not None else math.nan)
            table[f"{hw} predicted"] = predicted
    st.dataframe(table, hide_index=True, width="stretch", key="cmp_table")


RENDER = {"Heat-map": page_heatmap, "Fleet": page_fleet, "Campaigns": page_campaigns,
          "Predictor": page_predictor, "Compare": page_compare}


def main() -> None:
    st.set_page_config(page_title="EdgeAtlas", layout="wide")
    conn = Connection.from_env()
    with st.sidebar:
        st.title("EdgeAtlas")
        wanted = st.query_params.get("page", "heatmap")
        start = next((i for i, p in enumerate(PAGES) if SLUGS[p] == wanted), 0)
        page = st.radio("Page", PAGES, index=start, key="page")
        st.query_params["page"] = SLUGS[page]
        st.divider()
        address = st.text_input("Coordinator", conn.address, key="coordinator")
        token = st.text_input("Admin token", conn.token, type="password", key="token")
        if st.button("Refresh data", key="refresh"):
            _fetch.clear()
    try:
        conn = Connection(address.strip(), token.strip(), conn.tls_ca, conn.tls_cert, conn.tls_key)
        _client(conn)
    except errors.EdgeAtlasError as exc:
        st.error(explain(exc, address))
        st.stop()
    RENDER[page](conn)


main()
