"""Featurizers checked by hand: FLOPs and bytes of known layers, peaks of known chips, the roofline."""

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeatlas.predictor import roofline
from edgeatlas.predictor.graph import CATEGORIES, from_onnx, load_onnx
from edgeatlas.predictor.hardware import FEATURES, feature_vector, processor
from edgeatlas.predictor.onnx_build import GraphBuilder
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.spec import SpecSheet

from tests.conftest import SHARED

SPECS = SHARED / "datasets" / "nasbench201" / "specs"


def conv_net(groups: int = 1) -> onnx.ModelProto:
    """input [N,16,8,8] → Conv 3×3 (16→32 or depthwise 16→16) + bias → Relu → GlobalAveragePool → Flatten → Gemm 10."""
    g = GraphBuilder(0)
    cout = 16 if groups > 1 else 32
    x = g.op("Relu", [g.conv("input", 16, cout, 3, groups=groups)])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    x = g.gemm(x, cout, 10)
    return g.model("t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16, 8, 8])], x, ["N", 10])


def test_conv_gemm_pool_flops_and_bytes_by_hand():
    graph = from_onnx(conv_net())
    assert graph.ops == ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    out = 32 * 8 * 8
    assert graph.flops[0] == 2 * out * 16 * 9 + out  # MACs × 2, plus the bias add
    assert graph.flops[1] == out  # one op per element
    assert graph.flops[2] == out  # sums every input element
    assert graph.flops[3] == 0  # a view
    assert graph.flops[4] == 2 * 32 * 10 + 10
    assert graph.weight_bytes[0] == (32 * 16 * 9 + 32) * 4
    assert graph.act_bytes[0] == (16 * 64 + 32 * 64) * 4  # reads the input, writes the output
    assert graph.act_bytes[3] == 0  # views move nothing
    assert graph.params == 32 * 16 * 9 + 32 + 32 * 10 + 10
    assert graph.edges.T.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]  # edges follow tensors
    assert CATEGORIES[graph.category[0]] == "conv" and graph.kernel[0] == 3 and graph.channels[0] == 32


def test_depthwise_conv_is_its_own_category_with_its_flops():
    graph = from_onnx(conv_net(groups=16))
    assert CATEGORIES[graph.category[0]] == "conv_dw"
    assert graph.flops[0] == 2 * 16 * 64 * 1 * 9 + 16 * 64


def test_batch_scales_flops_and_activations_not_weights():
    graph = from_onnx(conv_net())
    flops, nbytes = graph.at_batch(8)
    assert flops[0] == 8 * graph.flops[0]
    assert nbytes[0] == 8 * graph.act_bytes[0] + graph.weight_bytes[0]


def test_transformer_matmuls_and_softmax():
    from edgeatlas.console.zoo import transformer

    graph = from_onnx(transformer("t", d=64, heads=4, layers=1, seq=32, vocab=100, seed=0))
    scores = [i for i, op in enumerate(graph.ops) if op == "MatMul"]
    qk = scores[3]  # q·kᵀ after the three projections: [1,4,32,16] × [1,4,16,32]
    assert graph.flops[qk] == 2 * 4 * 32 * 32 * 16
    softmax = graph.ops.index("Softmax")
    assert graph.flops[softmax] == 5 * 4 * 32 * 32
    assert graph.shapes_known == 1.0


def test_malformed_onnx_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(InvalidInput, match="bad.onnx"):
        load_onnx(bad)
    with pytest.raises(InvalidInput, match="no such file"):
        load_onnx(tmp_path / "missing.onnx")


def test_cpu_peak_from_clusters_and_core_designs():
    pixel3 = SpecSheet.load(SPECS / "pixel_3.yaml")  # 4× A75 @ 2.8 + 4× A55 @ 1.77, 8 FLOPs/cycle each
    proc = processor(pixel3, "cpu")
    assert proc.peak_flops == pytest.approx((4 * 2.8 * 8 + 4 * 1.77 * 8) * 1e9)
    assert proc.bandwidth == pytest.approx(29.9e9)
    big_only = processor(pixel3, "cpu", threads=4)  # threads take the fastest cores first
    assert big_only.peak_flops == pytest.approx(4 * 2.8 * 8 * 1e9)
    assert big_only.values["cpu_big_share"] == 1.0 and proc.values["cpu_big_share"] == 0.5


def test_x86_peak_from_simd_and_fma_units():
    silver = SpecSheet.load(SPECS / "xeon_silver_4114.yaml")  # 10 cores, 3.0 GHz, AVX-512, 1 FMA unit
    assert processor(silver, "cpu").peak_flops == pytest.approx(10 * 3.0 * 16 * 2 * 1 * 1e9)


def test_gpu_peaks_and_missing_fields_flagged_not_guessed():
    gpu = processor(SpecSheet.load(SPECS / "gtx_1080_ti.yaml"), "gpu", batch=32)
    assert gpu.peak_flops == pytest.approx(11.34e12) and gpu.bandwidth == pytest.approx(484.4e9)
    sheet = SpecSheet.from_dict({"name": "bare", "cpu": {"cores": 4}})
    proc = processor(sheet, "cpu")
    assert math.isnan(proc.peak_flops) and math.isnan(proc.bandwidth)
    vec = dict(zip(FEATURES, feature_vector(proc)))
    assert vec["log_peak_gflops"] == 0 and vec["log_peak_gflops_missing"] == 1
    assert vec["log_bandwidth_gbs_missing"] == 1 and vec["log_units_missing"] == 0


def test_target_the_sheet_lacks_is_refused_naming_the_field():
    cpu_only = SpecSheet.load(SPECS / "xeon_gold_6240.yaml")
    with pytest.raises(InvalidInput, match="accelerator"):
        processor(cpu_only, "gpu")
    with pytest.raises(InvalidInput, match="field cpu"):
        processor(SpecSheet.load(SPECS / "titan_rtx.yaml"), "cpu")


def test_roofline_by_hand_and_its_refusal_without_peaks():
    graph = from_onnx(conv_net())
    proc = processor(SpecSheet.load(SPECS / "pixel_3.yaml"), "cpu")
    flops, nbytes = graph.at_batch(1)
    expected = sum(max(f / proc.peak_flops, b / proc.bandwidth) for f, b in zip(flops, nbytes)) * 1e3
    assert roofline.latency_ms(graph, proc, 1) == pytest.approx(expected)
    assert roofline.latency_ms(graph, proc, 4) > 3.5 * roofline.latency_ms(graph, proc, 1)
    bare = processor(SpecSheet.from_dict({"name": "bare", "cpu": {"cores": 4}}), "cpu")
    with pytest.raises(InvalidInput, match="memory.bandwidth_gbs"):
        roofline.latency_ms(graph, bare, 1)


def test_int8_multiply_adds_are_timed_at_the_int8_peak_everywhere_a_peak_is_read():
    """An int8 MatMul (ONNX Runtime's DynamicQuantizeMatMul) does four multiply-adds where FP32 does one
    (VNNI, SDOT, DP4A), or what the sheet's int8_tops says: the roofline, the compute floor (physical_terms)
    and the GNN's per-operator work terms read the same int8 peak; the float quantization beside it does not."""
    from edgeatlas.predictor.data import GraphSet, Samples, SettingInfo
    from edgeatlas.predictor.datasets.zoo import build
    from edgeatlas.predictor.gnn import Batcher
    from edgeatlas.predictor.graph import runtime_graph
    from edgeatlas.predictor.hardware import INT8_PER_FP32
    from edgeatlas.predictor.models import physical_terms

    int8, fp32 = (runtime_graph(build(f"mlp:256-256-256{q}"), "onnxruntime") for q in (":int8", ""))
    assert int8.macs == fp32.macs and int8.int8_work().sum() == 2 and not fp32.int8_work().any()
    assert not int8.int8_work()[[op == "DynamicQuantizeLinear" for op in int8.ops]].any()
    # memory far faster than compute: the peaks alone decide
    cpu = SpecSheet.from_dict({"name": "c", "cpu": {"cores": 1, "max_ghz": 1.0, "simd": "avx2", "fma_units": 2},
                               "memory": {"bandwidth_gbs": 1e5}})
    npu = SpecSheet.from_dict({"name": "n", "accelerator": {"kind": "npu", "fp16_tflops": 2, "int8_tops": 26,
                                                            "bandwidth_gbs": 1e5}})
    for sheet, target, ratio in ((cpu, "cpu", INT8_PER_FP32), (npu, "npu", 13)):
        proc = processor(sheet, target)
        assert proc.int8_peak == pytest.approx(ratio * proc.peak_flops)
        mine = int8.int8_work()
        seconds = roofline.node_seconds(int8.flops, int8.act_bytes + int8.weight_bytes, proc, mine)
        assert seconds[mine] == pytest.approx(int8.flops[mine] / proc.int8_peak)
        graphs = GraphSet.from_graphs([int8, fp32])
        samples = Samples(graphs, [SettingInfo("s", "d", sheet, target, 1, 0, "onnxruntime")], np.array([0, 1]),
                          np.zeros(2, np.int64), np.ones(2))
        compute = physical_terms(samples)[:, 0]
        assert compute[0] == pytest.approx(sum(seconds[~mine]) * 1e3 + sum(seconds[mine]) * 1e3)
        assert compute[1] > 0.9 * ratio * compute[0]  # the MACs dominate: nearly the whole ratio
        batcher = Batcher(graphs, samples.settings)
        node = np.arange(int8.nodes)[None, :]
        logr = batcher.log_roofline(node, np.zeros(1, np.int64)).numpy()[0]
        assert np.exp(logr[mine]) == pytest.approx(seconds[mine] * 1e3, rel=1e-4)


def test_node_features_are_finite_and_one_hot():
    x = from_onnx(conv_net()).node_features()
    assert np.isfinite(x).all() and (x[:, :len(CATEGORIES)].sum(1) == 1).all()


def _conv1d(length: int, groups: int = 1) -> onnx.ModelProto:
    """input [1, 64, length + 4] → one 1-D convolution, 5 taps, 64 filters (or depthwise): `length` positions."""
    from onnx import numpy_helper

    w = numpy_helper.from_array(np.ones((64, 64 // groups, 5), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[5], group=groups)], "c",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, length + 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, length])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_a_matrix_product_narrower_than_the_vector_lanes_costs_the_lanes_it_leaves_idle(tmp_path):
    """A convolution is im2col then filters × positions: its positions fill a CPU's FP32 vector lanes (16
    with AVX-512, 8 with AVX2), and 5 of them leave 11 of 16 idle. The compute term of the physical
    calibration and the floor (`physical_terms`) read that; a GPU's or a sheet that names no SIMD, not."""
    from edgeatlas.predictor.data import GraphSet, Samples, SettingInfo
    from edgeatlas.predictor.graph import gemm_columns
    from edgeatlas.predictor.models import physical_terms

    narrow, wide, depthwise = from_onnx(_conv1d(5)), from_onnx(_conv1d(64)), from_onnx(_conv1d(5, groups=64))
    assert list(narrow.lanes) == [5] and list(wide.lanes) == [64] and list(depthwise.lanes) == [0]
    assert gemm_columns("MatMul", "matmul", [1, 7, 10]) == 10 and gemm_columns("Conv", "conv", [1, 8, 7, 7]) == 49
    assert gemm_columns("Conv", "conv", None) == 0 and gemm_columns("Relu", "activation", [1, 8]) == 0
    graphs = GraphSet.from_graphs([narrow, wide])
    per_flop = {}
    for simd in ("avx512", "avx2", None):  # None: a core the sheet names, its vector unit not
        cpu = ({"cores": 1, "max_ghz": 1.0, "fma_units": 2, "simd": simd} if simd else
               {"clusters": [{"core": "cortex-a76", "cores": 1, "max_ghz": 2.0}]})
        sheet = SpecSheet.from_dict({"name": "c", "cpu": cpu, "memory": {"bandwidth_gbs": 1e5}})
        assert processor(sheet, "cpu").peak_flops > 0
        samples = Samples(graphs, [SettingInfo("s", "d", sheet, "cpu", 1, 0, "onnxruntime")], np.array([0, 1]),
                          np.zeros(2, np.int64), np.ones(2))
        compute = physical_terms(samples)[:, 0]
        per_flop[simd] = (compute[0] / narrow.flops.sum()) / (compute[1] / wide.flops.sum())
    assert per_flop["avx512"] == pytest.approx(16 / 5) and per_flop["avx2"] == pytest.approx(8 / 5)
    assert per_flop[None] == pytest.approx(1.0)
    gpu = SpecSheet.from_dict({"name": "g", "accelerator": {"kind": "gpu", "fp32_tflops": 1, "bandwidth_gbs": 1e5}})
    samples = Samples(graphs, [SettingInfo("s", "d", gpu, "gpu", 1, 0, "")], np.array([0, 1]),
                      np.zeros(2, np.int64), np.ones(2))
    compute = physical_terms(samples)[:, 0]
    assert (compute[0] / narrow.flops.sum()) == pytest.approx(compute[1] / wide.flops.sum())
    # a GraphSet saved and read again, or cut and joined, keeps its columns
    from edgeatlas.predictor.data import concat

    assert list(concat([graphs.subset([1]), graphs.subset([0])]).lanes) == [64, 5]
    graphs.save(tmp_path / "g.npz")
    assert list(GraphSet.load(tmp_path / "g.npz").lanes) == [5, 64]
