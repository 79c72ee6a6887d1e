"""The one counter of parameters, MACs, FLOPs and precision (predictor/graph.py, protos/onnx_model.py), checked
against hand counts on small graphs of each kind of op it meets in real models."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeatlas.predictor.graph import from_onnx, onnx_summary, output_types
from edgeatlas.protos import inputs, onnx_model
from edgeatlas.protos.inputs import InputSpec


def model(nodes, ins, outs, inits=(), opset=17, extra_domains=()):
    graph = helper.make_graph(nodes, "g", ins, outs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                          + [helper.make_opsetid(d, 1) for d in extra_domains])
    m.ir_version = 8
    return m


def tensor(name, shape, dtype=np.float32, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(dtype), name)


def info(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def test_weights_in_constant_nodes_are_parameters():
    w = helper.make_node("Constant", [], ["w"], value=tensor("w", (16, 8)))
    shape = helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array([1, 8], np.int64)))
    m = model([w, shape, helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Reshape", ["y", "s"], ["z"])],
              [info("x", [1, 16])], [info("z", [1, 8])])
    s = onnx_summary(m)
    assert s["parameters"] == 16 * 8  # the int64 shape is not a weight
    assert s["macs"] == 16 * 8 and s["flops"] == 2 * 16 * 8 and s["uncounted"] == {}


def test_lstm_macs_are_steps_times_its_input_and_recurrent_weights():
    seq, batch, n_in, hidden = 5, 1, 10, 20
    m = model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden)],
              [info("x", [seq, batch, n_in])], [info("y", [seq, 1, batch, hidden])],
              [tensor("W", (1, 4 * hidden, n_in)), tensor("R", (1, 4 * hidden, hidden), seed=1)])
    g = from_onnx(m)
    assert g.macs == seq * batch * 4 * hidden * (n_in + hidden)
    assert g.params == 4 * hidden * (n_in + hidden)
    assert onnx_summary(m)["uncounted"] == {}


def test_matmulinteger_is_counted_and_makes_the_model_int8():
    q = helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"])
    mm = helper.make_node("MatMulInteger", ["xq", "B", "xz"], ["acc"])
    cast = helper.make_node("Cast", ["acc"], ["y"], to=TensorProto.FLOAT)
    b = numpy_helper.from_array(np.ones((16, 32), np.uint8), "B")
    m = model([q, mm, cast], [info("x", [1, 4, 16])], [info("y", [1, 4, 32])], [b])
    s = onnx_summary(m)
    assert s["macs"] == 4 * 32 * 16 and s["precision"] == "int8" and s["parameters"] == 16 * 32
    assert s["uncounted"] == {}


def test_qlinearconv_counts_as_a_conv_and_its_scales_are_not_parameters():
    scalars = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in
               [("xs", 0.1, np.float32), ("xz", 0, np.uint8), ("ws", 0.1, np.float32), ("wz", 0, np.int8),
                ("ys", 0.1, np.float32), ("yz", 0, np.uint8)]]
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "w")
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1, 1, 1])
    m = model([node], [info("x", [1, 3, 8, 8], TensorProto.UINT8)], [info("y", [1, 4, 8, 8], TensorProto.UINT8)],
              [w] + scalars)
    s = onnx_summary(m)
    assert s["macs"] == 4 * 8 * 8 * 3 * 3 * 3
    assert s["parameters"] == 4 * 3 * 3 * 3 and s["precision"] == "int8"


def test_a_tensor_after_an_operator_inference_does_not_know_keeps_its_producers_element_type():
    """ONNX Runtime's QLinearAdd (com.microsoft) stops shape inference; the shapes after it are read in a
    run, and their element type is the producer's input's: uint8 activations weigh a byte each, not four."""
    scalars = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in
               [("s", 0.1, np.float32), ("z", 0, np.uint8), ("ws", 0.1, np.float32), ("wz", 0, np.int8)]]
    w = numpy_helper.from_array(np.ones((3, 3, 3, 3), np.int8), "w")
    conv = ["s", "z", "w", "ws", "wz", "s", "z"]
    nodes = [helper.make_node("QLinearConv", ["x"] + conv, ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("QLinearAdd", ["a", "s", "z", "x", "s", "z", "s", "z"], ["b"], domain="com.microsoft"),
             helper.make_node("QLinearConv", ["b"] + conv, ["y"], pads=[1, 1, 1, 1])]
    m = model(nodes, [info("x", [1, 3, 8, 8], TensorProto.UINT8)], [info("y", [1, 3, 8, 8], TensorProto.UINT8)],
              [w] + scalars, extra_domains=("com.microsoft",))
    g = from_onnx(m, specs=(InputSpec("x", "uint8", (1, 3, 8, 8), "uniform:0:255"),),
                  feeds={"x": np.zeros((1, 3, 8, 8), np.uint8)})
    elems = 3 * 8 * 8
    assert "b" in g.observed and g.shapes_known == 1 and g.uncounted == {}
    assert list(g.act_bytes) == [2 * elems, 3 * elems, 2 * elems]  # every activation one byte
    assert list(g.in_width) == list(g.out_width) == [1, 1, 1]
    # the type ONNX Runtime's schema binds: a parameter shared with an input, or a type it names
    unique = helper.make_node("Unique", ["x"], ["y", "idx", "counts"], domain="com.microsoft")
    assert output_types(unique, [TensorProto.FLOAT]) == [TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT64]


def test_an_int8_berts_attention_is_counted_and_its_output_is_float():
    """ONNX Runtime's transformers optimizer fuses BERT's attention into Attention, and quantize_dynamic makes
    it QAttention (uint8 input, int8 packed Q, K, V weights, float output), as optimum ships int8 BERTs: it
    went uncounted, and its output, typed as its uint8 input, weighed a byte an element. Counted as its
    float twin, with its cache; a decoder's DecoderMaskedMultiHeadAttention over its cache too. Run in ONNX
    Runtime, which observes the shapes."""
    heads, head, seq, past = 4, 16, 8, 5
    hidden = heads * head
    scalars = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in
               [("s", 0.05, np.float32), ("ws", 0.01, np.float32), ("z", 128, np.uint8), ("wz", 0, np.int8)]]
    w = numpy_helper.from_array(np.ones((hidden, 3 * hidden), np.int8), "w")
    for with_past in (False, True):
        node = helper.make_node("QAttention", ["x", "w", "b", "s", "ws", "", "z", "wz"] + (["p"] if with_past else []),
                                ["y"] + (["present"] if with_past else []), domain="com.microsoft", num_heads=heads,
                                unidirectional=int(with_past))
        ins = [info("x", [1, seq, hidden], TensorProto.UINT8)] + ([info("p", [2, 1, heads, past, head])]
                                                                  if with_past else [])
        m = model([node], ins, [info("y", None)], [w, tensor("b", (3 * hidden,))] + scalars,
                  extra_domains=("com.microsoft",))
        feeds = {"x": np.full((1, seq, hidden), 128, np.uint8)} | (
            {"p": np.zeros((2, 1, heads, past, head), np.float32)} if with_past else {})
        g = from_onnx(m, feeds=feeds)
        keys = seq + (past if with_past else 0)
        assert g.uncounted == {} and g.macs == seq * hidden * 3 * hidden + 2 * seq * hidden * keys, with_past
        assert (g.in_width[0], g.out_width[0], g.integer[0]) == (1, 4, True)  # uint8 in, float out
        cache = 2 * heads * head * 4 * (past + keys) if with_past else 0  # the past read, the present written
        assert g.act_bytes[0] == seq * hidden * (1 + 4) + cache
    cache = [1, heads, 16, head]
    node = helper.make_node("DecoderMaskedMultiHeadAttention", ["q", "k", "v", "", "", "pk", "pv", "n"],
                            ["y", "pko", "pvo"], domain="com.microsoft", num_heads=heads, past_present_share_buffer=1)
    m = model([node], [info(n, [1, 1, hidden]) for n in "qkv"] + [info("pk", cache), info("pv", cache),
                                                                  info("n", [1], TensorProto.INT32)],
              [info("y", None)], extra_domains=("com.microsoft",))
    g = from_onnx(m, shapes={"y": [1, 1, hidden]})
    assert g.uncounted == {} and g.macs == 2 * hidden * (1 + 16)


def test_element_widths_tell_an_int8_kernel_that_requantizes_from_one_that_accumulates_to_int32():
    """ONNX Runtime's QLinearConv reads and writes uint8, its ConvInteger writes int32 (then Cast and Mul
    to float): both integer kernels of one category, 10x apart in cost on one CPU. Their element widths
    differ, and float is 1 in the features."""
    from edgeatlas.predictor.datasets.zoo import build
    from edgeatlas.predictor.graph import CATEGORIES, WIDTH_COLUMNS, runtime_graph

    for arch, op, widths in (("resnet:8-16:b1:s32:qdq", "QLinearConv", (1, 1)),
                             ("resnet:8-16:b1:s32:int8", "ConvInteger", (1, 4)),
                             ("resnet:8-16:b1:s32", "FusedConv", (4, 4))):
        g = runtime_graph(build(arch), "onnxruntime")
        x = g.node_features()
        convs = [i for i, o in enumerate(g.ops) if o == op]
        assert convs and all(CATEGORIES[g.category[i]].startswith("conv") for i in convs)
        assert {tuple(x[i, list(WIDTH_COLUMNS)] * 4) for i in convs} == {widths}, arch
        assert x[convs, -1].tolist() == [float(op != "FusedConv")] * len(convs)  # the integer kernel, last


def test_convtranspose_macs_follow_its_input():
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])
    m = model([node], [info("x", [1, 2, 4, 4])], [info("y", [1, 3, 8, 8])], [tensor("w", (2, 3, 2, 2))])
    assert from_onnx(m).macs == (2 * 4 * 4) * 3 * (2 * 2)


def test_einsum_macs_are_the_product_of_its_index_sizes():
    node = helper.make_node("Einsum", ["a", "b"], ["c"], equation="bij,bjk->bik")
    m = model([node], [info("a", [2, 3, 4]), info("b", [2, 4, 5])], [info("c", [2, 3, 5])])
    assert from_onnx(m).macs == 2 * 3 * 4 * 5


def test_resize_costs_its_taps_per_output_element():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    m = model([node], [info("x", [1, 1, 4, 4])], [info("y", [1, 1, 8, 8])], [scales])
    assert from_onnx(m).flops.sum() == 8 * 8 * 4


def test_an_op_the_counter_does_not_know_is_named_not_hidden():
    node = helper.make_node("Mystery", ["x"], ["y"], domain="com.example")
    relu = helper.make_node("Relu", ["y"], ["z"])
    m = model([node, relu], [info("x", [1, 8])], [info("z", [1, 8])], extra_domains=["com.example"])
    assert onnx_summary(m)["uncounted"] == {"Mystery": 1}


def test_older_vision_kernels_are_counted_by_what_their_attributes_make_them_do():
    """LRN (AlexNet, GoogLeNet), MeanVarianceNormalization, LpNormalization, GridSample, Softsign, Shrink and
    Hardmax went uncounted; a model with a MeanVarianceNormalization of ONNX's default axes was refused
    (ONNX's inference of its function body fails where ONNX Runtime runs it). Each is counted per output
    element, by what its attributes and shapes make its kernel do (`bench/scalar_ops.py` times them)."""
    from edgeatlas.predictor import graph

    image, innermost = [1, 8, 6, 6], graph._FLOPS_PER_ELEMENT["MeanVarianceNormalization"]
    cases = [("LRN", image, dict(size=5), graph.SCALAR_ELEMENTWISE["LRN"]),
             ("LRN", image, dict(size=5, beta=1.0), 5),  # no power to raise to
             ("MeanVarianceNormalization", image, {}, graph.MVN_OTHER_AXES),  # axes [0, 2, 3]
             ("MeanVarianceNormalization", image, dict(axes=[2, 3]), innermost),
             ("LpNormalization", [4, 16], dict(axis=-1), graph.SCALAR_ELEMENTWISE["LpNormalization"]),
             ("LpNormalization", [4, 16], dict(axis=0), graph.STRIDED_NORM_OPS),
             ("LpNormalization", [4, 16, 1], dict(axis=1), graph.SCALAR_ELEMENTWISE["LpNormalization"]),
             ("Softsign", image, {}, 10), ("Shrink", image, {}, 22), ("Hardmax", [4, 16], {}, 22)]
    for op, shape, attrs, per_element in cases:
        m = model([helper.make_node(op, ["x"], ["y"], **attrs)], [info("x", shape)], [info("y", shape)], opset=18)
        g = from_onnx(m)
        assert g.uncounted == {} and g.flops[0] == np.prod(shape) * per_element, (op, attrs)
    for mode, per_element in (("linear", 7), ("nearest", 31), ("cubic", 124)):
        node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode)
        m = model([node], [info("x", image), info("grid", [1, 4, 5, 2])], [info("y", None)], opset=20)
        assert from_onnx(m).flops[0] == 8 * 4 * 5 * per_element, mode  # per output element


def test_bitwise_random_running_and_pooling_kernels_are_counted_as_onnx_runtime_runs_them():
    """ONNX Runtime 1.32's CPU kernels of standard operators the counter did not know: the bitwise ones and the
    random generators (element loops), CumSum/CumProd along an axis nothing lies inside of (an add after an
    add) or along an outer one (whole rows in vectors), LpPool (a pow a tap), a MaxPool asked for its indices
    (a loop that tracks them), and those that only move data (TensorScatter, the Optional family, BitCast,
    MaxUnpool). Each model is run by ONNX Runtime too."""
    import onnxruntime as ort

    from edgeatlas.predictor import graph

    ints = [4, 16]
    axis = [numpy_helper.from_array(np.array(a, np.int64), f"axis{a}") for a in (0, 1)]
    scalar, vector = graph.SCALAR_COLUMNS, None
    cases = [  # (node, inputs, initializers, opset, FLOPs, whether its lanes are a scalar loop's)
        (helper.make_node("BitwiseAnd", ["i", "j"], ["y"]),
         [info("i", ints, TensorProto.INT32), info("j", ints, TensorProto.INT32)], [], 18, 64 * 2, scalar),
        (helper.make_node("BitShift", ["i", "j"], ["y"], direction="LEFT"),
         [info("i", ints, TensorProto.UINT32), info("j", ints, TensorProto.UINT32)], [], 18, 64 * 2, scalar),
        (helper.make_node("BitwiseNot", ["i"], ["y"]), [info("i", ints, TensorProto.INT32)], [], 18, 64, vector),
        (helper.make_node("RandomNormalLike", ["x"], ["y"]), [info("x", ints)], [], 18, 64 * 36, scalar),
        (helper.make_node("RandomUniform", [], ["y"], shape=ints), [], [], 18, 64 * 14, scalar),
        (helper.make_node("CumSum", ["x", "axis1"], ["y"]), [info("x", ints)], axis, 18, 64 * 12, scalar),
        (helper.make_node("CumSum", ["x", "axis0"], ["y"]), [info("x", ints)], axis, 18, 64, vector),
        (helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[3, 3], p=2), [info("x", [1, 2, 6, 6])], [], 18,
         2 * 4 * 4 * 9 * graph.LP_TAP_OPS, scalar),
        (helper.make_node("MaxPool", ["x"], ["y", "at"], kernel_shape=[2, 2], strides=[2, 2]),
         [info("x", [1, 2, 6, 6])], [], 18, 2 * 3 * 3 * (graph.INDEXED_POOL_OPS + 4 * graph.INDEXED_TAP_OPS), scalar),
        (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
         [info("x", [1, 2, 6, 6])], [], 18, 2 * 3 * 3 * 4, vector),
        (helper.make_node("HannWindow", ["n"], ["y"]), [], [numpy_helper.from_array(np.array(32, np.int64), "n")],
         18, 32, vector)]
    for node, ins, inits, opset, flops, lanes in cases:
        outs = [helper.make_empty_tensor_value_info(o) for o in node.output]
        m = model([node], ins, outs, [i for i in inits if i.name in node.input], opset=opset)
        g = from_onnx(m)
        assert g.uncounted == {} and g.flops.sum() == pytest.approx(flops), (node.op_type, list(node.input))
        assert (g.lanes[0, 0] == lanes) if lanes is not None else g.lanes[0, 0] != scalar, node.op_type
        rng = np.random.default_rng(0)
        feeds = {i.name: rng.integers(0, 8, [d.dim_value for d in i.type.tensor_type.shape.dim]).astype(
            helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in ins}
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for node, ins in ((helper.make_node("Optional", ["x"], ["o"]), [info("x", ints)]),
                      (helper.make_node("MaxUnpool", ["x", "at"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
                       [info("x", [1, 2, 3, 3]), info("at", [1, 2, 3, 3], TensorProto.INT64)])):
        g = from_onnx(model([node], ins, [helper.make_empty_tensor_value_info(node.output[0])], opset=18))
        assert g.uncounted == {} and g.flops.sum() == 0 and graph.CATEGORIES[g.category[0]] == "copy"


def test_a_minus_one_dimension_is_not_a_negative_count():
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, -1, -1])
    m = model([node], [x], [info("y", [-1, 4, -1, -1])], [tensor("w", (4, 3, 3, 3))])
    g = from_onnx(m, specs=(InputSpec("x", "float32", (inputs.BATCH, 3, 16, 16)),))
    assert g.macs == 4 * 16 * 16 * 27 and (g.flops >= 0).all()
    g.summary()  # the log-scaled features of a negative count raised "math domain error"


def test_the_spec_sets_the_shape_the_flops_are_counted_at():
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    m = model([node], [info("x", ["N", 3, "H", "W"])], [info("y", ["N", 4, "H2", "W2"])], [tensor("w", (4, 3, 1, 1))])
    small = from_onnx(m, specs=(InputSpec("x", "float32", (inputs.BATCH, 3, 8, 8)),)).macs
    large = from_onnx(m, specs=(InputSpec("x", "float32", (inputs.BATCH, 3, 64, 64)),)).macs
    assert small == 12 * 64 and large == 12 * 64 * 64


@pytest.mark.parametrize("dtypes, expected", [
    ([np.float16, np.float16], "fp16"),
    ([np.float32, np.float32], "fp32"),
    ([np.float32, np.float16], "mixed"),
])
def test_precision_is_what_the_weights_are_stored_in(dtypes, expected):
    a, b = tensor("a", (32, 32), dtypes[0]), tensor("b", (32, 32), dtypes[1])
    cast = helper.make_node("Cast", ["b"], ["b32"], to=TensorProto.FLOAT)
    cast_a = helper.make_node("Cast", ["a"], ["a32"], to=TensorProto.FLOAT)
    m = model([cast_a, cast, helper.make_node("MatMul", ["x", "a32"], ["h"]), helper.make_node("MatMul", ["h", "b32"], ["y"])],
              [info("x", [1, 32])], [info("y", [1, 32])], [a, b])
    assert onnx_model.precision(m) == expected


def test_int8_data_without_integer_ops_is_not_an_int8_model():
    table = numpy_helper.from_array(np.ones((100, 16), np.int8), "t")
    w = tensor("w", (16, 16))
    nodes = [helper.make_node("Gather", ["t", "ids"], ["e8"]), helper.make_node("Cast", ["e8"], ["e"], to=1),
             helper.make_node("MatMul", ["e", "w"], ["y"])]
    m = model(nodes, [info("ids", [1, 4], TensorProto.INT64)], [info("y", [1, 4, 16])], [table, w])
    assert onnx_model.precision(m) == "fp32"
    declared, _ = onnx_model.declared_inputs(m)
    assert declared[0].vocab == 100  # the ids index a table of 100 rows


def test_a_pooling_window_larger_than_its_input_costs_only_the_input():
    # transformers' EfficientNet ends in AvgPool2d(1280, ceil_mode=True) on a 7×7 map: a global pool whose
    # kernel is 1280×1280. Each output sums 49 values, not 1,638,400.
    pool = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1280, 1280], ceil_mode=1)
    g = from_onnx(model([pool], [info("x", [1, 320, 7, 7])], [info("y", [1, 320, 1, 1])]))
    assert g.flops.sum() == 320 * 49
    small = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    g = from_onnx(model([small], [info("x", [1, 8, 7, 7])], [info("y", [1, 8, 7, 7])]))
    assert g.flops.sum() == 8 * 49 * 9  # a window inside its input is counted whole, as before


def test_onnx_runtime_is_featurized_as_it_runs_the_graph():
    """BatchNormalization after a convolution is folded into it by ONNX Runtime's basic optimizations: for
    that runtime it moves no activations; for others the graph is featurized as given."""
    from edgeatlas.predictor.graph import as_runtime_runs

    c = 8
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])]
    inits = [tensor("w", (c, 3, 3, 3)), tensor("s", (c,)), tensor("b", (c,)), tensor("m", (c,)),
             numpy_helper.from_array(np.ones(c, np.float32), "v")]
    m = model(nodes, [info("x", [1, 3, 16, 16])], [info("y", [1, c, 16, 16])], inits)
    as_given = from_onnx(as_runtime_runs(m, "tflite"))
    in_ort = from_onnx(as_runtime_runs(m, "onnxruntime"))
    assert as_given.nodes == 2 and in_ort.nodes == 1 and in_ort.ops == ["Conv"]
    assert in_ort.act_bytes.sum() < as_given.act_bytes.sum()
    # the folded graph's conv carries the bias the normalisation became: one add per output, not its two
    assert in_ort.flops.sum() == as_given.flops.sum() - c * 256


def test_onnx_runtimes_fused_kernels_are_one_node_each_with_the_shapes_of_what_they_fuse():
    """`runtime_graph`: a convolution with its ReLU runs as one FusedConv, an int8 MatMul with its
    quantization and scales as one DynamicQuantizeMatMul (which shape inference does not know: its shapes
    come from the basic view). The work counted is the same; the fused intermediates move no bytes."""
    from edgeatlas.predictor.datasets.zoo import build
    from edgeatlas.predictor.graph import CATEGORIES, as_runtime_runs, runtime_graph

    c = 8
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    m = model(nodes, [info("x", [1, 3, 16, 16])], [info("y", [1, c, 16, 16])], [tensor("w", (c, 3, 3, 3))])
    fused = runtime_graph(m, "onnxruntime")
    assert fused.ops == ["FusedConv"] and CATEGORIES[fused.category[0]] == "conv"
    assert fused.macs == from_onnx(m).macs == c * 256 * 27 and fused.shapes_known == 1
    assert fused.act_bytes.sum() < from_onnx(m).act_bytes.sum()
    assert runtime_graph(m, "tflite").ops == ["Conv", "Relu"]  # other runtimes: as given

    int8 = build("mlp:64-32-10:int8")
    basic, fused = from_onnx(as_runtime_runs(int8, "onnxruntime")), runtime_graph(int8, "onnxruntime")
    assert fused.ops.count("DynamicQuantizeMatMul") == 2 and "MatMulInteger" not in fused.ops
    assert fused.macs == basic.macs == 64 * 32 + 32 * 10 and fused.uncounted == {} and fused.shapes_known == 1
    assert fused.nodes < basic.nodes / 2 and fused.node_features()[:, -1].sum() == 2  # both integer kernels


def _if_model(cond_nodes, cond_inputs, then_depth=3, nested=False, clash=False):
    """x [1, 64] → If(cond): then a chain of `then_depth` 64×64 MatMuls (with an If inside when `nested`),
    else one Add; cond from `cond_nodes` over `cond_inputs`."""
    chain = [helper.make_node("MatMul", [f"t{i}" if i else "x", f"w{i}"], [f"t{i + 1}"]) for i in range(then_depth)]
    weights = [tensor(f"w{i}", (64, 64), seed=i) for i in range(then_depth)]
    out = f"t{then_depth}"
    if nested:  # an If inside the branch, on a constant: its then side adds one more MatMul
        inner_then = helper.make_graph([helper.make_node("MatMul", [out, "w0"], ["deep"])], "inner_then", [],
                                       [info("deep", [1, 64])])
        inner_else = helper.make_graph([helper.make_node("Relu", [out], ["shallow"])], "inner_else", [],
                                       [info("shallow", [1, 64])])
        chain += [helper.make_node("Constant", [], ["yes"], value=numpy_helper.from_array(np.array(True))),
                  helper.make_node("If", ["yes"], ["t_in"], then_branch=inner_then, else_branch=inner_else)]
        out = "t_in"
    then = helper.make_graph(chain, "then", [], [info(out, [1, 64])], weights)
    other = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y" if clash else "e"])], "else", [],
                              [info("y" if clash else "e", [1, 64])])
    nodes = cond_nodes + [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)]
    return model(nodes, [info("x", [1, 64])] + cond_inputs, [info("y", [1, 64])])


SAMPLE_RATE_IF = ([helper.make_node("Constant", [], ["sixteen_k"],
                                    value=numpy_helper.from_array(np.array(16000, np.int64))),
                   helper.make_node("Equal", ["sr", "sixteen_k"], ["cond"])],
                  [info("sr", [], TensorProto.INT64)])


def test_an_if_is_featurized_as_the_branch_a_run_at_the_inputs_takes():
    """Silero VAD's network sits in one If on its sample-rate input: featurized as the few nodes around
    it, it was answered a hundredth of its time. The branch the inputs take is what is counted."""
    from edgeatlas.predictor.graph import runtime_graph

    m = _if_model(*SAMPLE_RATE_IF)
    x = np.zeros((1, 64), np.float32)
    for sr, macs in ((16000, 3 * 64 * 64), (8000, 0)):
        feeds = {"x": x, "sr": np.array(sr, np.int64)}
        for g in (from_onnx(m, feeds=feeds), runtime_graph(m, "onnxruntime", feeds=feeds)):
            assert g.macs == macs and "If" not in g.ops
            assert g.branches == {"y": sr == 16000}
    # no run to go by: the costlier branch, said in `branches` as well
    assert from_onnx(m).macs == 3 * 64 * 64 and from_onnx(m).branches == {"y": True}


def test_a_constant_condition_and_choices_observed_before_decide_the_branch():
    """The coordinator runs no model: the branches a registration run observed (the summary's
    `branches`) are taken as they were, and a constant condition needs no run."""
    constant = ([helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(False)))], [])
    assert from_onnx(_if_model(*constant)).macs == 0  # the cheap branch, because the constant says so
    m = _if_model(*SAMPLE_RATE_IF)
    summary = onnx_summary(m, feeds={"x": np.zeros((1, 64), np.float32), "sr": np.array(8000, np.int64)})
    assert summary["branches"] == {"y": False} and summary["macs"] == 0
    assert from_onnx(m, branches=summary["branches"]).macs == 0


def test_nested_ifs_come_up_a_level_at_a_time_and_a_clashing_branch_is_left():
    nested = _if_model(*SAMPLE_RATE_IF, nested=True)
    g = from_onnx(nested, feeds={"x": np.zeros((1, 64), np.float32), "sr": np.array(16000, np.int64)})
    assert "If" not in g.ops and g.macs == 4 * 64 * 64 and g.branches == {"y": True, "t_in": True}
    # an else branch that redefines the graph's own output name would rewire it: left as an If
    clash = _if_model(*SAMPLE_RATE_IF, clash=True)
    g = from_onnx(clash, branches={"y": False})
    assert "If" in g.ops and g.macs == 0


def test_a_decoding_attention_counts_the_keys_in_its_cache():
    """A decoder's step attends to its past keys and its new ones: an int4 Llama's GroupQueryAttention at 1
    token over 511 cached was counted over 1. Each of ONNX Runtime's three attentions and ONNX's own (opset
    23), with and without its cache, at one new token (8 heads of 64; its output's shape as a run observes
    it); and the rotary embedding before it, counted where it was not, or inside it (do_rotary)."""
    heads, head, past = 8, 64, 511
    hidden = heads * head
    cache = [1, 4, past, head]
    cases = [("GroupQueryAttention", ["q", "", "", "pk", "pv"], [("q", [1, 1, hidden + 2 * 4 * head])],
              [("pk", cache), ("pv", cache)], dict(num_heads=heads, kv_num_heads=4)),
             ("MultiHeadAttention", ["q", "k", "v", "", "", "", "pk", "pv"],
              [("q", [1, 1, hidden]), ("k", [1, 1, hidden]), ("v", [1, 1, hidden])],
              [("pk", [1, heads, past, head]), ("pv", [1, heads, past, head])], dict(num_heads=heads)),
             ("Attention", ["q", "w", "", "", "pk"], [("q", [1, 1, hidden])],
              [("pk", [2, 1, heads, past, head])], dict(num_heads=heads)),
             ("", ["q", "k", "v", "", "pk", "pv"], [(n, [1, heads, 1, head]) for n in "qkv"],
              [("pk", [1, heads, past, head]), ("pv", [1, heads, past, head])], {})]
    for op, names, given, cached, attrs in cases:
        for with_cache in (False, True):
            used = names if with_cache else [i if i not in ("pk", "pv") else "" for i in names]
            node = helper.make_node(op or "Attention", used, ["y"], domain="com.microsoft" if op else "", **attrs)
            declared = given + (cached if with_cache else [])
            inits = [tensor("w", (hidden, 3 * hidden))] if op == "Attention" else []
            m = model([node], [info(n, s) for n, s in declared], [info("y", None)], inits,
                      opset=23 if not op else 17, extra_domains=["com.microsoft"] if op else [])
            g = from_onnx(m, shapes={"y": [1, 1, hidden]})
            keys = 1 + (past if with_cache else 0)
            projection = hidden * 3 * hidden if op == "Attention" else 0  # its packed QKV projection
            assert g.macs == projection + 2 * hidden * keys, (op, with_cache)
    rotary = helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain="com.microsoft")
    m = model([rotary], [info("x", [1, 4, hidden]), info("pos", [1, 4], TensorProto.INT64),
                         info("cos", [2048, head // 2]), info("sin", [2048, head // 2])], [info("y", None)],
              extra_domains=["com.microsoft"])
    g = from_onnx(m, shapes={"y": [1, 4, hidden]})
    assert g.uncounted == {} and g.flops.sum() == 3 * 4 * hidden
    # onnxruntime-genai's GroupQueryAttention rotates its new queries and keys itself: 3 operations an element
    for rotary in (0, 1):
        node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "n", "t", "cos", "sin"], ["y"],
                                domain="com.microsoft", num_heads=heads, kv_num_heads=2, do_rotary=rotary)
        declared = [info("q", [1, 1, hidden])] + [info(n, [1, 1, 2 * head]) for n in "kv"] + \
            [info(n, [1, 2, past, head]) for n in ("pk", "pv")] + \
            [info("n", [1], TensorProto.INT32), info("t", [], TensorProto.INT32)] + \
            [info(n, [64, head // 2]) for n in ("cos", "sin")]
        m = model([node], declared, [info("y", None)], extra_domains=("com.microsoft",))
        g = from_onnx(m, shapes={"y": [1, 1, hidden]})
        assert g.flops[0] - 2 * g.macs - 5 * (1 + past) == rotary * 3 * (heads + 2) * head, rotary


def _scan_distances(rows, samples, features):
    """skl2onnx's pairwise distances: a Scan over the training samples, each a Sub and a ReduceSumSquare over
    the rows (a k-nearest-neighbours classifier's), and a MatMul by an outer weight W."""
    body = helper.make_graph(
        [helper.make_node("Sub", ["x_in", "sample"], ["d"]),
         helper.make_node("MatMul", ["d", "W"], ["dw"]),
         helper.make_node("ReduceSumSquare", ["dw"], ["dist"], axes=[1], keepdims=0),
         helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body", [info("x_in", [rows, features]), info("sample", [features])],
        [info("x_out", [rows, features]), info("dist", [rows])])
    scan = helper.make_node("Scan", ["x", "train"], ["x_last", "dists"], body=body, num_scan_inputs=1)
    return model([scan], [info("x", [rows, features])], [info("dists", [samples, rows])],
                 [tensor("train", (samples, features)), tensor("W", (features, features), seed=1)])


def test_a_scans_body_is_counted_once_a_slice_and_reads_the_outer_weights():
    rows, samples, features = 8, 50, 4
    m = _scan_distances(rows, samples, features)
    x = np.random.default_rng(0).standard_normal((rows, features)).astype(np.float32)
    import onnxruntime as ort

    (dists,) = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert dists.shape == (samples, rows)  # a real model: ONNX Runtime runs it
    g = from_onnx(m)
    assert g.uncounted == {}
    assert g.macs == samples * rows * features * features
    scan = m.graph.node[0]
    body = next(a.g for a in scan.attribute if a.name == "body")
    one = model(list(body.node), list(body.input), list(body.output), [tensor("W", (features, features), seed=1)])
    assert g.flops.sum() == pytest.approx(samples * from_onnx(one).flops.sum())  # the body alone, once a slice
    assert g.ops.count("MatMul") == samples  # one copy a slice, each its launches
    # W, from outside the body, each slice; the training samples the Scan slices, once
    assert g.weight_bytes.sum() == pytest.approx(samples * features * features * 4 + samples * features * 4)


def test_a_loop_is_counted_for_its_trip_count_a_constant_or_read_in_a_run():
    n = 16
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("MatMul", ["h_in", "W"], ["h_out"])],
        "body", [info("i", [], TensorProto.INT64), info("cond_in", [], TensorProto.BOOL), info("h_in", [1, n])],
        [info("cond_out", [], TensorProto.BOOL), info("h_out", [1, n])])
    trip = numpy_helper.from_array(np.array(7, np.int64), "M")
    go = numpy_helper.from_array(np.array(True), "go")
    loop = helper.make_node("Loop", ["M", "go", "h"], ["h_last"], body=body)
    g = from_onnx(model([loop], [info("h", [1, n])], [info("h_last", [1, n])], [trip, go, tensor("W", (n, n))]))
    assert g.uncounted == {} and g.macs == 7 * n * n
    # the trip count computed from the input (its length): only a run at the inputs tells it
    length = [helper.make_node("Shape", ["steps"], ["shape"]),
              helper.make_node("Gather", ["shape", "zero"], ["M"], axis=0)]
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    m = model(length + [loop], [info("h", [1, n]), info("steps", ["t"])], [info("h_last", [1, n])],
              [zero, go, tensor("W", (n, n))])
    feeds = {"h": np.zeros((1, n), np.float32), "steps": np.zeros(5, np.float32)}
    assert from_onnx(m, feeds=feeds).macs == 5 * n * n
    # the coordinator runs no model: the iterations the registration's run read travel in its summary
    specs = (InputSpec("h", "float32", (1, n)), InputSpec("steps", "float32", (5,)))
    summary = onnx_summary(m, specs, feeds=feeds)
    assert summary["loops"] == {"h_last": 5}
    assert from_onnx(m, specs=specs).uncounted == {"Loop": 1}
    from edgeatlas.coordinator.predictions import graph_of

    g = graph_of(m, "m", inputs.to_json(specs), json.dumps(summary), runtime="onnxruntime")
    assert g.macs == 5 * n * n and g.uncounted == {}
    # a condition the body computes can end the loop early, and nothing tells how many times it ran: named
    decides = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "W"], ["h_out"]),
         helper.make_node("ReduceSum", ["h_out"], ["total"], keepdims=0),
         helper.make_node("Less", ["total", "limit"], ["cond_out"])],
        "body", [info("i", [], TensorProto.INT64), info("cond_in", [], TensorProto.BOOL), info("h_in", [1, n])],
        [info("cond_out", [], TensorProto.BOOL), info("h_out", [1, n])])
    loop = helper.make_node("Loop", ["M", "go", "h"], ["h_last"], body=decides)
    limit = numpy_helper.from_array(np.array(1.0, np.float32), "limit")
    g = from_onnx(model([loop], [info("h", [1, n])], [info("h_last", [1, n])], [trip, go, limit, tensor("W", (n, n))]))
    assert g.uncounted == {"Loop": 1} and g.macs == 0


def test_a_loop_of_many_iterations_joins_the_graph_in_as_many_copies_as_fit():
    from edgeatlas.predictor.graph import LOOP_NODES_MAX

    rows, samples, features = 2, 3 * LOOP_NODES_MAX, 4
    g = from_onnx(_scan_distances(rows, samples, features))
    assert g.nodes <= 1 + LOOP_NODES_MAX
    assert g.macs == samples * rows * features * features  # the work, all of it, in fewer copies
    copies = LOOP_NODES_MAX // 4  # the body's four nodes a copy
    assert g.flops[g.ops.index("MatMul")] == pytest.approx(samples / copies * rows * features * 2 * features)


def test_a_loop_as_torchs_exporter_writes_it_a_list_carried_and_its_condition_set_true():
    """torch.jit.script's `for t in range(x.size(0))`, outputs appended to a list: the trip count is the
    input's length, the condition an Identity of an outer true, the list a sequence carried through."""
    n, steps = 8, 6
    seq = helper.make_tensor_sequence_value_info("outs_in", TensorProto.FLOAT, None)
    body = helper.make_graph(
        [helper.make_node("Gather", ["x", "t"], ["xt"], axis=0), helper.make_node("MatMul", ["xt", "W"], ["h"]),
         helper.make_node("SequenceInsert", ["outs_in", "h"], ["outs_out"]),
         helper.make_node("Identity", ["true"], ["cond_out"])],
        "body", [info("t", [], TensorProto.INT64), info("cond_in", [], TensorProto.BOOL), seq],
        [info("cond_out", [], TensorProto.BOOL),
         helper.make_tensor_sequence_value_info("outs_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "zero"], ["M"], axis=0),
             helper.make_node("SequenceEmpty", [], ["outs"], dtype=TensorProto.FLOAT),
             helper.make_node("Loop", ["M", "true", "outs"], ["outs_last"], body=body),
             helper.make_node("ConcatFromSequence", ["outs_last"], ["y"], axis=0, new_axis=1)]
    consts = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array(True), "true"),
              tensor("W", (n, n))]
    m = model(nodes, [info("x", ["steps", 1, n])], [info("y", ["steps", 1, n])], consts)
    x = np.ones((steps, 1, n), np.float32)
    import onnxruntime as ort

    (y,) = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert y.shape == (steps, 1, n)
    g = from_onnx(m, specs=(InputSpec("x", "float32", (steps, 1, n)),), feeds={"x": x})
    assert g.uncounted == {} and g.macs == steps * n * n


def _moe(kind, hidden, inter, experts, k, bits=4, block=0, level=0):
    """A mixture of experts as onnxruntime-genai writes it (MoE in float, QMoE packed), its router's logits an
    input; tokens a dynamic dimension."""
    rng = np.random.default_rng(0)
    if kind == "MoE":
        inits = [numpy_helper.from_array(rng.standard_normal((experts, inter, hidden)).astype(np.float32), "fc1"),
                 numpy_helper.from_array(rng.standard_normal((experts, hidden, inter)).astype(np.float32), "fc2")]
        ins, attrs = ["x", "probs", "fc1", "", "fc2"], {}
    else:
        scales = (lambda rows, cols: (experts, rows, cols // block)) if block else (lambda rows, cols: (experts, rows))
        def packed(rows, cols):
            return rng.integers(0, 255, (experts, rows, cols * bits // 8)).astype(np.uint8)

        inits = [numpy_helper.from_array(packed(inter, hidden), "fc1"),
                 numpy_helper.from_array(rng.random(scales(inter, hidden)).astype(np.float32) * 0.01, "fc1_s"),
                 numpy_helper.from_array(packed(hidden, inter), "fc2"),
                 numpy_helper.from_array(rng.random(scales(hidden, inter)).astype(np.float32) * 0.01, "fc2_s")]
        ins, attrs = ["x", "probs", "fc1", "fc1_s", "", "fc2", "fc2_s"], \
            {"expert_weight_bits": bits, "block_size": block, "accuracy_level": level}
    node = helper.make_node(kind, ins, ["y"], domain="com.microsoft", k=k, activation_type="silu", **attrs)
    return model([node], [info("x", ["tokens", hidden]), info("probs", ["tokens", experts])],
                 [info("y", ["tokens", hidden])], inits, extra_domains=("com.microsoft",))


@pytest.mark.parametrize("kind,bits,block,level,int8", [("MoE", 32, 0, 0, False), ("QMoE", 4, 32, 0, False),
                                                         ("QMoE", 4, 32, 4, True), ("QMoE", 8, 32, 0, True),
                                                         ("QMoE", 8, 0, 0, False)])
def test_a_mixture_of_experts_multiplies_each_token_by_k_experts_and_reads_the_experts_picked(
        kind, bits, block, level, int8):
    import onnxruntime as ort

    from edgeatlas.predictor.graph import experts_touched

    hidden, inter, experts, k = 64, 128, 8, 2
    m = _moe(kind, hidden, inter, experts, k, bits, block, level)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for tokens in (1, 64):
        probs = np.random.default_rng(1).random((tokens, experts), np.float32)
        feeds = {"x": np.ones((tokens, hidden), np.float32), "probs": probs}
        assert session.run(None, feeds)[0].shape == (tokens, hidden)
        g = from_onnx(m, specs=(InputSpec("x", "float32", (tokens, hidden)), InputSpec("probs", "float32",
                                                                                           (tokens, experts))),
                      feeds=feeds)  # its output's shape: ONNX does not infer it, one run observes it
        assert g.uncounted == {} and g.macs == tokens * k * 2 * inter * hidden
        touched = experts_touched(tokens, k, experts)
        assert touched == pytest.approx(k if tokens == 1 else experts, rel=0.01)
        stored = sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer)  # weights and scales
        assert g.weight_bytes[0] == pytest.approx(touched / experts * stored)  # of the experts picked, no more
        assert bool(g.integer[0]) == int8
        materialized = g.act_bytes[0] - 2 * tokens * hidden * 4 - tokens * experts * 4
        assert materialized == pytest.approx(8 * touched * 2 * inter * hidden if kind == "QMoE" and not block else 0)
