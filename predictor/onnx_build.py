"""Building ONNX graphs by hand: seeded initializers, named nodes, a checked model.

Used by the model zoo (coordinator) and the NAS-Bench-201 builder (predictor.datasets).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BN_STAT = "bn_running_"  # initializers that are statistics, not trainable parameters


class GraphBuilder:
    """Appends nodes and seeded initializers; each method returns its output tensor's name.

    seed None: weights are zeros (the graph's structure and shapes only, twice as fast to build).
    """

    def __init__(self, seed: int | None):
        self.zero_weights = seed is None
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def weight(self, prefix: str, shape: tuple[int, ...], fan_in: int) -> str:
        if self.zero_weights:
            return self.const(prefix, np.zeros(shape, np.float32))
        return self.const(prefix, (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))

    def bias(self, prefix: str, n: int) -> str:
        return self.const(prefix, (self.rng.standard_normal(n) * 0.01).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> str:
        w = self.weight("conv_w", (cout, cin // groups, k, k), fan_in=cin // groups * k * k)
        return self.op("Conv", [x, w, self.bias("conv_b", cout)], kernel_shape=[k, k],
                       strides=[stride, stride], pads=[k // 2] * 4, group=groups)

    def int8_weight(self, prefix: str, shape: tuple[int, ...], fan_in: int) -> tuple[str, float]:
        """(name, scale) of a seeded weight as the quantizers store it: int8, one scale, zero point 0."""
        w = self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        scale = max(float(np.abs(w).max()), 1e-8) / 127
        return self.const(prefix + "_quantized", np.clip(np.rint(w / scale), -127, 127).astype(np.int8)), scale

    def conv_integer(self, x: str, cin: int, cout: int, k: int) -> str:
        """A convolution as ONNX Runtime's dynamic quantizer writes it (`quantize_dynamic`): the input
        quantized to uint8 as it runs (DynamicQuantizeLinear), ConvInteger on int8 weights (one scale, zero
        point 0) accumulating to int32, then Cast, the two scales' product and the bias. Built here rather
        than by the quantizer, so its bytes do not change with ONNX Runtime's version."""
        weight, scale = self.int8_weight("conv_w", (cout, cin, k, k), cin * k * k)
        q, q_scale, q_zero = self.dynamic_quantize(x)
        scales = self.op("Mul", [q_scale, self.const("conv_w_scale", np.array(scale, np.float32))])
        y = self.op("ConvInteger", [q, weight, q_zero, self.const("conv_w_zero_point", np.array(0, np.int8))],
                    kernel_shape=[k, k], pads=[k // 2] * 4)
        y = self.op("Mul", [self.op("Cast", [y], to=TensorProto.FLOAT), scales])
        bias = (self.rng.standard_normal((1, cout, 1, 1)) * 0.01).astype(np.float32)
        return self.op("Add", [y, self.const("conv_b", bias)])

    def qdq(self, x: str, scale: float, zero_point: int) -> str:
        """x through QuantizeLinear and DequantizeLinear to uint8 at a fixed scale: how ONNX Runtime's static
        quantizer (QDQ format) marks a tensor as int8, which the runtime fuses with the operators around it
        into their integer kernels (QLinearConv, QLinearMatMul)."""
        s = self.const("qdq_scale", np.array(scale, np.float32))
        z = self.const("qdq_zero_point", np.array(zero_point, np.uint8))
        return self.op("DequantizeLinear", [self.op("QuantizeLinear", [x, s, z]), s, z])

    def conv_qdq(self, x: str, cin: int, cout: int, k: int, in_scale: float, out_scale: float, out_zero: int,
                 groups: int = 1) -> str:
        """A convolution as the static quantizer writes it: x (a DequantizeLinear's output, at `in_scale`), int8
        weights (one scale, zero point 0) and an int32 bias through DequantizeLinear, the output through
        `qdq` at (`out_scale`, `out_zero`). A ReLU6 after it is the output's range, as the quantizer folds it.
        Built here rather than by the quantizer, so its bytes do not change with ONNX Runtime's version."""
        quantized, w_scale = self.int8_weight("conv_w", (cout, cin // groups, k, k), cin // groups * k * k)
        weight = self.op("DequantizeLinear", [
            quantized, self.const("conv_w_scale", np.array(w_scale, np.float32)),
            self.const("conv_w_zero_point", np.array(0, np.int8))])
        b_scale = in_scale * w_scale
        bias = self.op("DequantizeLinear", [
            self.const("conv_b_quantized", np.rint(self.rng.standard_normal(cout) * 0.01 / b_scale).astype(np.int32)),
            self.const("conv_b_scale", np.array(b_scale, np.float32)),
            self.const("conv_b_zero_point", np.array(0, np.int32))])
        y = self.op("Conv", [x, weight, bias], kernel_shape=[k, k], pads=[k // 2] * 4, group=groups)
        return self.qdq(y, out_scale, out_zero)

    def dynamic_quantize(self, x: str) -> tuple[str, str, str]:
        """x quantized to uint8 as it runs (DynamicQuantizeLinear): (values, scale, zero point)."""
        q = self.name("dynamicquantizelinear")
        self.nodes.append(helper.make_node("DynamicQuantizeLinear", [x], [q, q + "_scale", q + "_zero_point"],
                                           name=q))
        return q, q + "_scale", q + "_zero_point"

    def linear_integer(self, quantized: tuple[str, str, str], n_in: int, n_out: int) -> str:
        """`linear` as the dynamic quantizer writes it, on an input already through `dynamic_quantize` (one
        quantization feeds every projection of the same tensor): MatMulInteger on int8 weights accumulating
        to int32, Cast, the two scales' product, the bias."""
        q, q_scale, q_zero = quantized
        weight, scale = self.int8_weight("lin_w", (n_in, n_out), n_in)
        scales = self.op("Mul", [q_scale, self.const("lin_w_scale", np.array(scale, np.float32))])
        y = self.op("MatMulInteger", [q, weight, q_zero, self.const("lin_w_zero_point", np.array(0, np.int8))])
        y = self.op("Mul", [self.op("Cast", [y], to=TensorProto.FLOAT), scales])
        return self.op("Add", [y, self.bias("lin_b", n_out)])

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu_first: bool = True) -> str:
        """NAS-Bench-201's ReLUConvBN: ReLU, bias-free conv, BatchNorm (running stats as initializers)."""
        if relu_first:
            x = self.op("Relu", [x])
        w = self.weight("conv_w", (cout, cin, k, k), fan_in=cin * k * k)
        y = self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        return self.batch_norm(y, cout)

    def batch_norm(self, x: str, c: int) -> str:
        scale = self.const("bn_scale", (1 + 0.1 * self.rng.standard_normal(c)).astype(np.float32))
        bias = self.const("bn_bias", (0.1 * self.rng.standard_normal(c)).astype(np.float32))
        mean = self.const(BN_STAT + "mean", (0.1 * self.rng.standard_normal(c)).astype(np.float32))
        var = self.const(BN_STAT + "var", (1 + 0.1 * self.rng.random(c)).astype(np.float32))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=1e-5)

    def gemm(self, x: str, n_in: int, n_out: int) -> str:
        return self.op("Gemm", [x, self.weight("fc_w", (n_in, n_out), n_in), self.bias("fc_b", n_out)])

    def linear(self, x: str, n_in: int, n_out: int) -> str:
        """x [..., n_in] → [..., n_out]."""
        y = self.op("MatMul", [x, self.weight("lin_w", (n_in, n_out), n_in)])
        return self.op("Add", [y, self.bias("lin_b", n_out)])

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const("zero", np.array(0, np.float32)),
                                self.const("six", np.array(6, np.float32))])

    def layer_norm(self, x: str, d: int) -> str:
        return self.op("LayerNormalization", [x, self.const("ln_g", np.ones(d, np.float32)),
                                              self.const("ln_b", np.zeros(d, np.float32))], axis=-1)

    def gelu(self, x: str) -> str:
        scaled = self.op("Div", [x, self.const("sqrt2", np.array(np.sqrt(2.0), np.float32))])
        inner = self.op("Add", [self.op("Erf", [scaled]), self.const("one", np.array(1.0, np.float32))])
        return self.op("Mul", [self.op("Mul", [x, inner]), self.const("half", np.array(0.5, np.float32))])

    def model(self, name: str, inputs: list[onnx.ValueInfoProto], output: str, out_shape: list,
              check: bool = True) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs,
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="edgeatlas-zoo")
        model.ir_version = 8
        if check:
            onnx.checker.check_model(model)
        return model


def trainable_parameters(model: onnx.ModelProto) -> int:
    """Parameters as PyTorch counts them: BatchNorm running statistics are not parameters, nor are integer
    constants (a Reshape's target shape)."""
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
    return int(sum(np.prod(t.dims) for t in model.graph.initializer
                   if not t.name.startswith(BN_STAT) and len(t.dims) > 0 and t.data_type in floats))
