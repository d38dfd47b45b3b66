#!/usr/bin/env python3
"""Keras models exported by tf2onnx the way a TensorFlow user does it, and MNIST as
RGB images, for tools/keras_models.sh (which makes the venv and runs rlal on them):

    .venv-tf/bin/python tools/keras_models.py --out runs/keras [--data data/mnist5k]

Writes, under --out:
* resnet_keras_nhwc.onnx: a small CIFAR-style ResNet written with keras.layers
  (conv 16, three stages of one basic block each at 16/32/64 channels, the later two
  strided with 1x1 projection shortcuts, BatchNormalization after every conv,
  global average pooling, Dense 10) for 32x32x3 images, exported by
  `tf2onnx.convert.from_function` at opset 17: the input stays NHWC [N, 32, 32, 3].
* resnet_keras_nchw.onnx: the same Keras model and weights behind a
  `keras.layers.Permute` that takes NCHW images: tf2onnx cancels the two transposes,
  so the convs read the NCHW input directly (the architecture's NCHW reference).
* mobilenetv2_keras.onnx, efficientnetb0_keras.onnx: keras.applications with
  random weights (weights=None), 10 classes, 64x64x3 inputs.
* mnist_rgb32/{train,val}/<digit>/<i>.png: the MNIST 5k subset (data/mnist5k, IDX)
  as 32x32 RGB PNGs (28x28 digits padded by 2 black pixels, grey replicated to RGB).
* models.json: for each model its file, input name and shape, output name, and the
  graph inputs tf2onnx left without a value (name, shape, the values to bind).

    .venv-tf/bin/python tools/keras_models.py --check ORIGINAL.onnx PRUNED.onnx

checks that a pruned model keeps the original's interface: the image input (name,
element type, shape), the outputs, and a single graph input (onnx only, no TensorFlow).

Keras seeds are fixed (keras.utils.set_random_seed); tf2onnx's output is not
byte-identical between TensorFlow versions, so the files are made, not shipped.
"""
import argparse
import gzip
import json
import os
import struct

import numpy as np

import onnx

keras = tf = tf2onnx = None  # imported by load_tf(): --check does without TensorFlow

OPSET = 17


def conv_bn(x, filters, kernel, stride, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters, stride, name):
    y = conv_bn(x, filters, 3, stride, f"{name}_a")
    y = conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
    if stride != 1 or x.shape[-1] != filters:
        x = conv_bn(x, filters, 1, stride, f"{name}_proj", relu=False)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([x, y]))


def small_resnet(size=32, channels=3, classes=10):
    inp = keras.Input((size, size, channels), name="input_1")
    x = conv_bn(inp, 16, 3, 1, "stem")
    for i, (filters, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
        x = basic_block(x, filters, stride, f"stage{i + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="resnet_keras")


def nchw_twin(model):
    """The same layers and weights behind a Permute: the model takes NCHW images."""
    _, h, w, c = model.input.shape
    inp = keras.Input((c, h, w), name="input_1")
    return keras.Model(inp, model(keras.layers.Permute((2, 3, 1), name="to_nhwc")(inp)),
                       name="resnet_keras_nchw")


def export(model, path):
    """tf2onnx.convert.from_function at opset 17, the Keras input name kept."""
    spec = (tf.TensorSpec((None,) + tuple(model.input.shape[1:]), tf.float32, name="input_1"),)
    fn = tf.function(lambda x: model(x, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    onnx.save(proto, path)
    return proto


def describe(proto, path):
    """File, image input, output and the graph inputs left without a value."""
    g = proto.graph
    inits = {t.name for t in g.initializer}
    dims = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
    inputs = [v for v in g.input if v.name not in inits]
    return {
        "file": path,
        "input": inputs[0].name,
        "input_shape": dims(inputs[0]),
        "output": g.output[0].name,
        "unbound": [{"name": v.name, "shape": dims(v)} for v in inputs[1:]],
    }


def efficientnet_binds(model, info):
    """The values of the inputs tf2onnx left open: the Normalization layer's mean and
    variance (Keras' ImageNet statistics), matched to the inputs by their names."""
    norm = next(l for l in model.layers if isinstance(l, keras.layers.Normalization))
    values = {"Sub": np.ravel(norm.mean), "Sqrt": np.ravel(norm.variance)}
    for u in info["unbound"]:
        key = next((k for k in values if f"/{k}/" in u["name"]), None)
        if key is None:
            raise SystemExit(f"keras_models: no value known for unbound input {u['name']}")
        u["values"] = [float(v) for v in values[key]]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def mnist_rgb(src, dst, size=32):
    """The IDX digits as size x size RGB PNGs in an image folder (train/ and val/)."""
    done = os.path.join(dst, ".done")
    if os.path.exists(done):
        return
    for split, prefix in [("train", "train"), ("val", "t10k")]:
        images = read_idx(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz"))
        pad = (size - images.shape[1]) // 2
        for i, (img, label) in enumerate(zip(images, labels)):
            rgb = np.repeat(np.pad(img, pad)[..., None], 3, axis=2)
            d = os.path.join(dst, split, str(label))
            os.makedirs(d, exist_ok=True)
            tf.io.write_file(os.path.join(d, f"{i:05d}.png"), tf.io.encode_png(rgb))
    open(done, "w").close()


def load_tf():
    global keras, tf, tf2onnx
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    import tf2onnx


def interface(path):
    """(data inputs with element type and shape, outputs, number of graph inputs)."""
    g = onnx.load(path).graph
    inits = {t.name for t in g.initializer}
    sig = lambda v: (v.name, v.type.tensor_type.elem_type,
                     [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim])
    data = [sig(v) for v in g.input if v.name not in inits]
    return data, [v.name for v in g.output], len(g.input)


def check(original, pruned):
    """The pruned model has the original's image input (name, element type, shape),
    its outputs, and no other graph input: serving code does not change."""
    (want, outs, _), (got, got_outs, n) = interface(original), interface(pruned)
    problems = []
    if got[:1] != want[:1]:
        problems.append(f"input {got[:1]} where the original has {want[:1]}")
    if got_outs != outs:
        problems.append(f"outputs {got_outs} where the original has {outs}")
    if n != 1:
        problems.append(f"{n} graph inputs, not 1")
    if problems:
        raise SystemExit(f"keras_models: {pruned}: " + "; ".join(problems))
    print(f"{pruned}: input {got[0][0]} {got[0][2]}, outputs {got_outs}: as {original}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/keras")
    ap.add_argument("--data", default="data/mnist5k", help="MNIST IDX folder for mnist_rgb32/")
    ap.add_argument("--size", type=int, default=64, help="input size of the keras.applications models")
    ap.add_argument("--check", nargs=2, metavar=("ORIGINAL", "PRUNED"),
                    help="only check that PRUNED keeps ORIGINAL's interface (exit 1 if not)")
    args = ap.parse_args()
    if args.check:
        return check(*args.check)
    load_tf()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    out = lambda name: os.path.join(args.out, name)
    models = {}
    resnet = small_resnet()
    models["resnet_nhwc"] = describe(export(resnet, out("resnet_keras_nhwc.onnx")),
                                     out("resnet_keras_nhwc.onnx"))
    models["resnet_nchw"] = describe(export(nchw_twin(resnet), out("resnet_keras_nchw.onnx")),
                                     out("resnet_keras_nchw.onnx"))
    shape = (args.size, args.size, 3)
    mobilenet = keras.applications.MobileNetV2(input_shape=shape, weights=None, classes=10)
    models["mobilenetv2"] = describe(export(mobilenet, out("mobilenetv2_keras.onnx")),
                                     out("mobilenetv2_keras.onnx"))
    effnet = keras.applications.EfficientNetB0(input_shape=shape, weights=None, classes=10)
    info = describe(export(effnet, out("efficientnetb0_keras.onnx")), out("efficientnetb0_keras.onnx"))
    efficientnet_binds(effnet, info)
    models["efficientnetb0"] = info
    mnist_rgb(args.data, out("mnist_rgb32"))
    with open(out("models.json"), "w") as f:
        json.dump(models, f, indent=1)
    print(json.dumps(models, indent=1))


if __name__ == "__main__":
    main()
