#!/usr/bin/env python3
"""Channels-last reference graphs written the way tf2onnx writes Keras models, with
onnx.helper and numpy only (no TensorFlow):

    .venv/bin/python tools/make_nhwc_graphs.py [--out graphs]

Random He-normal weights from a fixed seed; re-running gives byte-identical files.

* resnet_nhwc_mnist.onnx: a small residual network for 28x28x1 images. Graph input
  `input_1` [N, 28, 28, 1] (NHWC), a `Transpose` perm [0, 3, 1, 2] into the convs,
  NCHW conv weights with biases (Keras' Conv2D; tf2onnx folds BN into them), two
  residual blocks (the second strided, with a 1x1 projection shortcut), `ReduceMean`
  over H, W, `Reshape` to [N, 32] (Keras' Flatten) and `MatMul` + `Add` instead of
  `Gemm` (Keras' Dense).
* resnet_nchw_mnist.onnx: the same network and weights with an NCHW input [N, 1, 28,
  28] straight into the first conv (the PyTorch way): the architecture's reference.
* tf2onnx/nhwc_extra_inputs.onnx (a folder of its own: it imports only with its
  inputs bound, and the tests over every graph in graphs/ import without): a plain CNN whose NHWC input goes through a Keras
  `Normalization` layer before the Transpose (`Sub` mean, `Div` by `Sqrt` variance),
  with the mean and the variance left as graph inputs without values
  (`normalization/sub/y:0`, `normalization/Sqrt/x:0`, [1, 1, 1, 1], as tf2onnx did
  for EfficientNetB0); a `Mul` by `rescaling/scale:0`, a graph input that has an
  initializer of its name (a constant, as the ONNX spec allows); `GlobalAveragePool`,
  `Squeeze` and `MatMul` + `Add` at the end.
* cnn_nhwc_rgb.onnx, cnn_nchw_rgb.onnx: the same plain CNN (without the Keras layers)
  for 16x16x3 images in both layouts, same weights: with three channels a mix-up of
  the layouts changes the logits (with one channel, HWC and CHW are the same bytes).
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        out = f"{name}:0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x, cin, cout, k, stride, name):
        w = self.rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        b = np.zeros(cout)
        pads = [k // 2] * 4
        return self.node(
            "Conv",
            [x, self.init(f"{name}/kernel", w.astype(np.float32)),
             self.init(f"{name}/bias", b.astype(np.float32))],
            name, kernel_shape=[k, k], strides=[stride, stride], pads=pads)

    def dense(self, x, cin, cout, name):
        w = self.rng.normal(0, np.sqrt(1.0 / cin), (cin, cout)).astype(np.float32)
        y = self.node("MatMul", [x, self.init(f"{name}/kernel", w)], f"{name}/MatMul")
        b = np.zeros(cout, np.float32)
        return self.node("Add", [y, self.init(f"{name}/bias", b)], f"{name}/BiasAdd")

    def model(self, name, inputs, output, extra_inputs=()):
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["unk__N", 10])
        g = helper.make_graph(self.nodes, name, list(inputs) + list(extra_inputs), [out],
                              initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tf2onnx-style (tools/make_nhwc_graphs.py)")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def nhwc_input(name="input_1"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["unk__N", 28, 28, 1])


def residual(nhwc):
    b = Builder(seed=26)
    if nhwc:
        inputs = [nhwc_input()]
        x = b.node("Transpose", ["input_1"], "model/conv2d/Conv2D__6", perm=[0, 3, 1, 2])
    else:
        inputs = [helper.make_tensor_value_info("input_1", TensorProto.FLOAT,
                                                ["unk__N", 1, 28, 28])]
        x = "input_1"
    stem = b.node("Relu", [b.conv(x, 1, 16, 3, 1, "model/conv2d/Conv2D")], "model/re_lu/Relu")
    y = b.node("Relu", [b.conv(stem, 16, 16, 3, 1, "model/conv2d_1/Conv2D")], "model/re_lu_1/Relu")
    y = b.conv(y, 16, 16, 3, 1, "model/conv2d_2/Conv2D")
    y = b.node("Relu", [b.node("Add", [y, stem], "model/add/add")], "model/re_lu_2/Relu")
    z = b.node("Relu", [b.conv(y, 16, 32, 3, 2, "model/conv2d_3/Conv2D")], "model/re_lu_3/Relu")
    z = b.conv(z, 32, 32, 3, 1, "model/conv2d_4/Conv2D")
    short = b.conv(y, 16, 32, 1, 2, "model/conv2d_5/Conv2D")
    z = b.node("Relu", [b.node("Add", [z, short], "model/add_1/add")], "model/re_lu_4/Relu")
    p = b.node("ReduceMean", [z], "model/global_average_pooling2d/Mean", axes=[2, 3],
               keepdims=1)
    shape = b.init("model/flatten/Const:0", np.array([-1, 32], np.int64))
    f = b.node("Reshape", [p, shape], "model/flatten/Reshape")
    out = b.dense(f, 32, 10, "model/dense")
    return b.model("tf2onnx" if nhwc else "reference", inputs, out)


def cnn(layout, size, channels, keras_preprocessing):
    """A plain CNN; with `keras_preprocessing`, Rescaling and Normalization before the
    Transpose, their constants left as graph inputs (see the module docs)."""
    b = Builder(seed=27)
    dims = [size, size, channels] if layout == "nhwc" else [channels, size, size]
    image = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__N"] + dims)
    x, extra = "input_1", []
    if keras_preprocessing:
        mean, var, scale = "normalization/sub/y:0", "normalization/Sqrt/x:0", "rescaling/scale:0"
        extra = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 1, channels])
                 for n in (mean, var)]
        extra.append(helper.make_tensor_value_info(scale, TensorProto.FLOAT, [1]))
        b.init(scale, np.array([1.0], np.float32))
        x = b.node("Mul", [x, scale], "model/rescaling/mul")
        x = b.node("Sub", [x, mean], "model/normalization/sub")
        s = b.node("Sqrt", [var], "model/normalization/Sqrt")
        x = b.node("Div", [x, s], "model/normalization/truediv")
    if layout == "nhwc":
        x = b.node("Transpose", [x], "model/conv2d/Conv2D__8", perm=[0, 3, 1, 2])
    x = b.node("Relu", [b.conv(x, channels, 8, 3, 1, "model/conv2d/Conv2D")], "model/re_lu/Relu")
    x = b.node("MaxPool", [x], "model/max_pooling2d/MaxPool", kernel_shape=[2, 2],
               strides=[2, 2])
    x = b.node("Relu", [b.conv(x, 8, 16, 3, 1, "model/conv2d_1/Conv2D")], "model/re_lu_1/Relu")
    x = b.node("GlobalAveragePool", [x], "model/global_average_pooling2d/Mean")
    axes = b.init("model/global_average_pooling2d/axes:0", np.array([2, 3], np.int64))
    x = b.node("Squeeze", [x, axes], "model/global_average_pooling2d/Squeeze")
    out = b.dense(x, 16, 10, "model/dense")
    return b.model("tf2onnx", [image], out, extra_inputs=extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="graphs")
    a = ap.parse_args()
    for name, m in [("resnet_nhwc_mnist", residual(True)),
                    ("resnet_nchw_mnist", residual(False)),
                    ("tf2onnx/nhwc_extra_inputs", cnn("nhwc", 28, 1, True)),
                    ("cnn_nhwc_rgb", cnn("nhwc", 16, 3, False)),
                    ("cnn_nchw_rgb", cnn("nchw", 16, 3, False))]:
        path = os.path.join(a.out, f"{name}.onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
