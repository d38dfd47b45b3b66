#!/usr/bin/env python3
"""Write graphs/instnorm_cnn.onnx: a tiny prunable CNN with InstanceNormalization.

    .venv/bin/python tools/make_instnorm_graph.py [--out graphs]

Built with onnx.helper (no exporter): input `input` [N, 1, 12, 12] ->
Conv(1->8, 3x3, pad 1) -> InstanceNormalization(8) -> Relu ->
Conv(8->16, 3x3, stride 2, pad 1) -> InstanceNormalization(16) -> Relu ->
GlobalAveragePool -> Flatten -> Gemm(16->10) -> `logits` [N, 10].
Both normalisations carry per-channel scale and bias that must be pruned with the
channels of their input. Weights are drawn from numpy's generator with seed 0, so
re-running writes the same bytes. MACs per sample (counted by hand): conv1 12*12*8 *
1*9 = 10,368 + conv2 6*6*16 * 8*9 = 41,472 + Gemm 16*10 = 160, total 52,000; params:
conv weights+biases 72+8 + 1152+16, normalisation scales+biases 16 + 32, Gemm 160+10:
1,466. The file passes onnx.checker and runs in onnxruntime.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build():
    rng = np.random.default_rng(0)
    inits = []

    def param(name, shape, scale=0.3, offset=0.0):
        a = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
        inits.append(numpy_helper.from_array(a, name))
        return name

    nodes = [
        helper.make_node("Conv", ["input", param("conv1.weight", (8, 1, 3, 3)),
                                  param("conv1.bias", (8,))], ["c1"], name="/conv1/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("InstanceNormalization", ["c1", param("in1.weight", (8,), 0.2, 1.0),
                                                   param("in1.bias", (8,), 0.2)], ["n1"],
                         name="/in1/InstanceNormalization", epsilon=1e-5),
        helper.make_node("Relu", ["n1"], ["r1"], name="/relu1/Relu"),
        helper.make_node("Conv", ["r1", param("conv2.weight", (16, 8, 3, 3), 0.15),
                                  param("conv2.bias", (16,))], ["c2"], name="/conv2/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("InstanceNormalization", ["c2", param("in2.weight", (16,), 0.2, 1.0),
                                                   param("in2.bias", (16,), 0.2)], ["n2"],
                         name="/in2/InstanceNormalization", epsilon=1e-5),
        helper.make_node("Relu", ["n2"], ["r2"], name="/relu2/Relu"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["f", param("fc.weight", (10, 16)), param("fc.bias", (10,))],
                         ["logits"], name="/fc/Gemm", transB=1),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 12, 12])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph(nodes, "instnorm_cnn", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="rlal tools/make_instnorm_graph.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="graphs")
    args = ap.parse_args()
    model = build()
    path = os.path.join(args.out, "instnorm_cnn.onnx")
    data = model.SerializeToString()
    try:
        import onnxruntime as ort
        x = np.random.default_rng(1).standard_normal((2, 1, 12, 12)).astype(np.float32)
        out = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})
        assert out[0].shape == (2, 10) and np.isfinite(out[0]).all()
    except ImportError:
        print("onnxruntime not installed: not run")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    print(f"wrote {path} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
