"""The real-architecture family: architecture strings, the networks they build, and a data directory of
them timed here in ONNX Runtime (`predictor measure-zoo`) read like the published families."""

import csv

import numpy as np
import onnx
import pytest
import yaml

from edgeatlas.console.zoo import HELD_OUT, ZOO
from edgeatlas.predictor.datasets import zoo
from edgeatlas.predictor.graph import onnx_summary
from edgeatlas.protos.errors import InvalidInput
from tests.conftest import run_cli


def test_every_demo_network_is_an_architecture_string_that_round_trips():
    for entry in ZOO:
        kind, kwargs = zoo.parse(entry.arch)
        assert kind == entry.family and zoo.arch_string(kind, **kwargs) == entry.arch
    # the string, not a table, says the size: MLP 784→256→128→10 has these multiply-adds
    assert onnx_summary(zoo.build("mlp:784-256-128-10"))["macs"] == 784 * 256 + 256 * 128 + 128 * 10


@pytest.mark.parametrize("arch, what", [
    ("vgg:16", "is not one of"),
    ("mlp:784", "1 widths, expected 2-8"),
    ("mlp:784-99999-10", "width 99999 is outside"),
    ("resnet:16-32:b9:s32", "blocks 9 is outside"),
    ("resnet:16-32:s32:b1", "expected \\['b', 's'\\] in that order"),
    ("mobilenet:w9:s64", "width 9.0 is outside"),
    ("mobilenet:wx:s64", "is not a letter and a number"),
    ("transformer:d100:h8:l2:s32:v1000", "not a multiple of 8 heads"),
    ("transformer:d64:h4:l2:s32:v99999999", "vocabulary 99999999 is outside"),
    ("mlp:1-2-3-4-5-6-7-8-9", "9 widths"),
    ("mlp:784-10:int8:int8", "is not one of"),
    ("resnet:16-32:b1:s32:int4", "is not one of"),
])
def test_malformed_or_oversized_arch_strings_are_refused_in_one_line(arch, what):
    with pytest.raises(InvalidInput, match=what) as err:
        zoo.parse(arch)
    assert "\n" not in str(err.value)


def test_sampled_architectures_are_distinct_seeded_cover_every_kind_and_avoid_the_held_out():
    a = zoo.sample_archs(40, seed=3, exclude=set(HELD_OUT))
    assert a == zoo.sample_archs(40, seed=3, exclude=set(HELD_OUT)) and a != zoo.sample_archs(40, seed=4)
    assert len(set(a)) == 40 and not set(a) & HELD_OUT
    assert {zoo.parse(x)[0] for x in a} == set(zoo.KINDS)
    flops = [2 * onnx_summary(zoo.build(x))["macs"] for x in a]
    assert min(flops) < 1e6 and max(flops) > 1e8  # from dispatch-bound to compute-bound
    # a held-out network can never be drawn, however many are asked for
    everything = zoo.sample_archs(400, seed=0, exclude=set(HELD_OUT))
    assert not set(everything) & HELD_OUT


def test_int8_networks_are_onnx_runtime_s_dynamic_and_static_quantization_drawn_evenly_and_marked():
    from edgeatlas.predictor.graph import from_onnx, runtime_graph

    plain = zoo.build("resnet:8-16:b1:s32")
    dynamic, static = zoo.build("resnet:8-16:b1:s32:int8"), zoo.build("resnet:8-16:b1:s32:qdq")
    ops = {n.op_type for n in dynamic.graph.node}
    assert {"ConvInteger", "DynamicQuantizeLinear"} <= ops and "Conv" not in ops
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in static.graph.node}
    # ONNX Runtime runs the static one's convolutions as QLinearConv: int8 in, int8 out
    assert "QLinearConv" in runtime_graph(static, "onnxruntime").ops
    for suffix in (":int8", ":qdq"):
        assert zoo.parse("resnet:8-16:b1:s32" + suffix) == zoo.parse("resnet:8-16:b1:s32")
        assert zoo.arch_string("resnet", suffix, **zoo.parse("resnet:8-16:b1:s32")[1]) == "resnet:8-16:b1:s32" + suffix
        assert zoo.float_arch("resnet:8-16:b1:s32" + suffix) == "resnet:8-16:b1:s32"
    f = from_onnx(plain)
    for q in (from_onnx(dynamic), runtime_graph(static, "onnxruntime")):
        assert q.node_features()[:, -1].sum() > 0 and f.node_features()[:, -1].sum() == 0
        assert q.macs == pytest.approx(f.macs)  # the same arithmetic, in integers
    # a quarter: one of each kind every fourth round, static and dynamic in turn; the float draws are those
    # of no int8 at all
    drawn = zoo.sample_archs(32, seed=5, exclude=set(HELD_OUT), int8_share=0.25)
    int8 = [a for a in drawn if zoo.float_arch(a) != a]
    assert len(int8) == 8 and {zoo.parse(a)[0] for a in int8} == set(zoo.KINDS)
    assert [a[-4:] for a in int8] == [":qdq"] * 4 + ["int8"] * 4
    floats = zoo.sample_archs(32, seed=5, exclude=set(HELD_OUT))
    assert [a for a in drawn if a in floats] == [a for a in drawn if a not in int8]
    # nor is a held-out network's int8 twin ever drawn
    everything = zoo.sample_archs(400, seed=0, exclude=set(HELD_OUT), int8_share=1.0)
    assert not {zoo.float_arch(a) for a in everything} & HELD_OUT
    assert all(zoo.float_arch(a) != a for a in everything)
    assert {a.endswith(":qdq") for a in everything} == {True, False}
    with pytest.raises(InvalidInput, match="int8 share"):
        zoo.sample_archs(4, int8_share=1.5)


def _write_dir(root, archs, latencies, threads=(1, 2)):
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "here.yaml").write_text(yaml.safe_dump(
        {"schema": "edgeatlas.spec/v1", "name": "test box", "device_class": "server",
         "cpu": {"arch": "x86_64", "cores": 4, "max_ghz": 3.0, "simd": "avx2", "fma_units": 2},
         "memory": {"size_gb": 16, "bandwidth_gbs": 20}}))
    columns = [f"t{t}_b1" for t in threads]
    (root / "settings.yaml").write_text(yaml.safe_dump(
        {c: {"spec": "specs/here.yaml", "target": "cpu", "batch": 1, "threads": t, "runtime": "onnxruntime"}
         for c, t in zip(columns, threads)}))
    with open(root / "latency_ms.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["zoo_index", "arch_str", *columns])
        for i, (arch, lat) in enumerate(zip(archs, latencies)):
            w.writerow([i, arch, *lat])


def test_a_zoo_directory_loads_as_onnx_runtime_samples_with_their_threads(tmp_path, monkeypatch):
    from edgeatlas.predictor.data import load_dir, merge
    from edgeatlas.predictor.datasets import fbnet

    monkeypatch.setenv("EDGEATLAS_CACHE", str(tmp_path / "cache"))
    archs = zoo.sample_archs(6, seed=1)
    _write_dir(tmp_path / "zoo", archs, [(1.0 + i, "") if i == 2 else (1.0 + i, 0.6 + i) for i in range(6)])
    s = load_dir(tmp_path / "zoo")
    assert set(s.families) == {"zoo"} and len(s) == 11  # the blank cell is no sample
    assert [(st.threads, st.runtime, st.device) for st in s.settings] == [(1, "onnxruntime", "test box"),
                                                                          (2, "onnxruntime", "test box")]
    assert s.settings[1].proc.peak_flops == pytest.approx(2 * s.settings[0].proc.peak_flops)  # two cores
    both = merge([load_dir(fbnet.SAMPLE_DIR, limit=10), s])
    assert set(both.family_of()) == {"fbnet", "zoo"}
    # featurized as ONNX Runtime runs it: what a query in that runtime sees (commands.load_graph)
    from edgeatlas.predictor.commands import load_graph

    path = tmp_path / "q.onnx"
    onnx.save(zoo.build(archs[0]), str(path))
    query = load_graph(str(path), runtime="onnxruntime")[0]
    assert np.isclose(s.graphs.flops[s.graphs.node_ptr[0]:s.graphs.node_ptr[1]].sum(), query.flops.sum())
    assert s.graphs.node_ptr[1] == query.nodes


def test_a_zoo_directory_with_a_bad_arch_is_refused_before_featurizing(tmp_path):
    from edgeatlas.predictor.data import load_dir

    _write_dir(tmp_path, ["mlp:784-10", "resnet:16-32:b1:s9999"], [(1.0, 1.0), (2.0, 2.0)])
    with pytest.raises(InvalidInput, match="size 9999 is outside"):
        load_dir(tmp_path)


def test_measure_zoo_times_networks_here_into_a_directory_predictor_training_reads(tmp_path, monkeypatch):
    from edgeatlas.predictor.data import load_dir

    monkeypatch.setenv("EDGEATLAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "zoo"
    r = run_cli("predictor", "measure-zoo", "--out", str(out), "--networks", "2", "--threads", "1",
                "--batch", "1,2", timeout=300)
    assert r.returncode == 0, r.stderr
    s = load_dir(out)
    assert len(s) == 4 and np.all(s.latency_ms > 0)
    assert sorted((st.threads, st.batch) for st in s.settings) == [(1, 1), (1, 2)]
    assert not set(s.graphs.names) & HELD_OUT
    # the larger network takes longer at batch 2 than at batch 1 (the same thread; the other is a
    # microsecond MLP, whose two batches a busy machine can swap)
    by = {(s.graph[i], s.settings[s.setting[i]].batch): s.latency_ms[i] for i in range(len(s))}
    flops = [s.graphs.flops[a:b].sum() for a, b in zip(s.graphs.node_ptr[:-1], s.graphs.node_ptr[1:])]
    big = int(np.argmax(flops))
    assert flops[big] > 1e6 and by[(big, 2)] > by[(big, 1)]
    # measuring into it again would mix two machines' runs: refused, the data kept
    before = (out / "latency_ms.csv").read_text()
    again = run_cli("predictor", "measure-zoo", "--out", str(out), "--networks", "2")
    assert again.returncode == 2 and "already holds" in again.stderr and (out / "latency_ms.csv").read_text() == before


@pytest.mark.parametrize("flags, what", [
    (["--threads", "1,x"], "--threads '1,x' is not comma-separated"),
    (["--threads", "0"], "--threads must be whole numbers in 1..256"),
    (["--batch", "9999"], "--batch must be whole numbers in 1..256"),
    (["--networks", "0"], "--networks must be in 1..2000"),
    (["--int8", "1.5"], "--int8 must be a share in 0..1"),
    (["--int8", "nan"], "--int8 must be a share in 0..1"),
])
def test_measure_zoo_refuses_bad_flags_in_one_line(tmp_path, flags, what):
    r = run_cli("predictor", "measure-zoo", "--out", str(tmp_path / "z"), *flags)
    assert r.returncode == 2 and what in r.stderr and not (tmp_path / "z").exists()
