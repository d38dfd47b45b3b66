#!/usr/bin/env python3
"""Generate rlal's reference ONNX graphs with PyTorch's own exporters, plus an
independent golden MACs/params table (graphs/golden.json).

    bash tools/setup.sh --ref && .venv-ref/bin/python tools/make_graphs.py [--out graphs]
    .venv-ref/bin/python tools/make_graphs.py --only ops_cnn   # one small model, golden.json merged

Everything is random-initialised from a fixed seed (no training, no downloads),
so re-running gives byte-identical files.  Why each case exists:

* resnet20_cifar, resnet56_cifar (3x32x32): the paper's CIFAR ResNets with
  OPTION-A shortcuts (strided Slice + zero-channel Pad instead of a 1x1 conv).
  Pruning a conv that feeds such a shortcut has to see through Slice/Pad and the
  residual Add; the paper figures (ResNet-56: 125.49 M MACs, 0.85 M params) are the
  golden numbers a MACs/params counter must reproduce.
* mobilenetv2_cifar (3x32x32): depthwise convs (group == channels, pruned in
  lock-step with the expansion conv), ReLU6 (Clip), t == 1 first block without an
  expansion conv, residual adds only on some blocks.
* resnet20_mnist (1x28x28), resnet20_digits (1x8x8): the same topology with one
  input channel on the two offline datasets (tiny spatial sizes for digits);
  resnet56_mnist (1x28x28): ResNet-56 likewise, for Fashion-MNIST (docs/RESULTS.md).
* mnist_cnn (1x28x28): plain conv/BN/ReLU/MaxPool chain ending in Flatten + Gemm
  whose input features are channel x 7 x 7 (pruning the last conv shrinks the
  Gemm's K in blocks of 49).
* ops_cnn (1x16x16): the ops the other graphs lack, inside one tiny prunable CNN
  (``OpsCNN`` below): a channel ``Split`` recombined GLU-style by ``Mul``, a
  ``ConvTranspose`` upsampling branch (pruned on both sides), per-channel ``Sub`` /
  ``Div`` constants, an SE gate through ``ReduceMean`` / ``Squeeze`` / ``Unsqueeze`` /
  ``Mul``, a ``MatMul`` head with a constant weight and a final ``Softmax``.
* <name>.onnx vs <name>_bn.onnx: the classic (TorchScript) exporter in eval mode
  folds BatchNormalization into the preceding Conv (weight scaled, bias added);
  with training=TrainingMode.PRESERVE it keeps the BatchNormalization nodes
  (inference form, one output).  Same weights in both files.
* *_dynamo.onnx: the new torch.export-based exporter (dynamo=True, opset 18+):
  different node/initializer naming, different op choices, so the tool must not
  rely on one exporter's conventions.
* imagenet/*.onnx.gz: torchvision resnet18, mobilenet_v2 and resnet50 at
  3x224x224, the published-figure check (ResNet-18 1.814 G MACs, MobileNetV2
  300.8 M MACs) and a benchmark input.  Every parameter/buffer is replaced by a
  per-tensor constant (distinct per tensor, so the exporter cannot deduplicate
  two initializers into one shared tensor) so the gzipped files stay small.

Golden table: counted from the PyTorch modules with forward hooks, never from the
ONNX files.  MACs: Conv = output elements x Cin/groups x kh x kw, ConvTranspose =
input elements x Cout/groups x kh x kw, Linear (Gemm) and MatMulHead (MatMul) =
output elements x in_features; nothing for bias, BN, activations, pooling,
adds.  params: sum of model.parameters() (BN weight/bias counted, running stats
not).  params_folded: what a BN-folded graph's Conv/Gemm initializers hold: conv
weights + one bias per output channel for every conv followed by BN (or with a
bias) + linear weight/bias.  Each exported file is checked with
onnx.checker.check_model and run in onnxruntime against PyTorch.
"""
import argparse
import gzip
import io
import json
import os
import sys
import warnings
import zlib
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

SEED = 20240607
OPSET = 13
IN, OUT, BATCH = "input", "logits", "N"
TOL = 1e-4



class MatMulHead(nn.Module):
    """``x @ W`` with a plain weight parameter: exports as MatMul (not Gemm)."""

    def __init__(self, k, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, n) / k ** 0.5)

    def forward(self, x):
        return torch.matmul(x, self.weight)


class OpsCNN(nn.Module):
    """conv(1->8) conv(8->16, s2) | Split 8+8, GLU a * sigmoid(b) | ConvTranspose(8->4, k2 s2)
    upsampling branch, conv(4->8, s2) back down, multiplied in | (x - shift) / scale with
    per-channel buffers | conv(8->16) | SE gate: ReduceMean, Squeeze, Sigmoid, Unsqueeze, Mul |
    ReduceMean, MatMul(16x10) | Softmax.  Every op on a prunable path maps a zero channel
    to zero, so a pruned graph equals the masked original."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)
        self.bn_down = nn.BatchNorm2d(8)
        self.register_buffer("shift", torch.randn(1, 8, 1, 1) * 0.1)
        self.register_buffer("scale", torch.rand(1, 8, 1, 1) + 0.5)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.head = MatMulHead(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))  # 16x16
        a, b = torch.split(self.bn2(self.conv2(x)), [8, 8], dim=1)  # 8x8
        y = a * torch.sigmoid(b)
        u = F.relu(self.bn_down(self.down(F.relu(self.up(y)))))  # 8 -> 16 -> 8
        z = (y * u - self.shift) / self.scale
        z = F.relu(self.bn3(self.conv3(z)))
        s = torch.sigmoid(z.mean((2, 3), keepdim=True).squeeze(-1).squeeze(-1))
        z = z * s.unsqueeze(-1).unsqueeze(-1)
        return torch.softmax(self.head(z.mean((2, 3))), dim=-1)


# name, constructor, input shape (C, H, W), make a dynamo variant too
SMALL = [
    ("resnet20_cifar", lambda: models.resnet20(3, 10), (3, 32, 32), True),
    ("resnet56_cifar", lambda: models.resnet56(3, 10), (3, 32, 32), False),
    ("mobilenetv2_cifar", lambda: models.mobilenetv2_cifar(3, 10), (3, 32, 32), True),
    ("resnet20_mnist", lambda: models.resnet20(1, 10), (1, 28, 28), False),
    ("resnet56_mnist", lambda: models.resnet56(1, 10), (1, 28, 28), False),
    ("mnist_cnn", lambda: models.mnist_cnn(1, 10), (1, 28, 28), False),
    ("resnet20_digits", lambda: models.resnet20(1, 10), (1, 8, 8), False),
    ("ops_cnn", lambda: OpsCNN(1, 10), (1, 16, 16), True),
]
IMAGENET = [
    ("resnet18", "resnet18", torchvision.models.resnet18),
    ("mobilenetv2", "mobilenet_v2", torchvision.models.mobilenet_v2),
    ("resnet50", "resnet50", torchvision.models.resnet50),
]


def log(*a):
    print("[make_graphs]", *a, flush=True)


def write_atomic(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------ weights


def model_seed(name):
    """Fixed per-model seed (distinct weights per model, independent of list order)."""
    return SEED + zlib.crc32(name.encode()) % 100000


def randomize_bn(model, gen):
    """Default BN init (mean 0, var 1, gamma 1, beta 0) makes folding a no-op;
    give every BN non-trivial statistics so the folded/kept check means something."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)


def constant_fill(model):
    """Replace every parameter and buffer by a per-tensor constant: tensor i of the
    state dict gets a value depending on i, so no two tensors of one shape are equal
    (the exporter deduplicates equal initializers).  Conv/linear weights are scaled by
    1/fan_in and BN gammas are 0.5 + v so activations stay moderate through 50 layers
    of residual adds (ResNet-50 logits ~150 instead of ~4e7 with gamma ~1).  The
    numbers are meaningless (all output classes get nearly the same logit); these
    graphs are for structure, MACs/params and speed, not accuracy."""
    with torch.no_grad():
        for i, (name, t) in enumerate(model.state_dict().items()):
            v = 0.001 * (i + 1)
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.fill_(1.0)
            elif t.dim() > 1:  # conv / linear weight
                t.fill_((1.0 + v) / t[0].numel())
            elif name.endswith("weight"):  # BN gamma
                t.fill_(0.5 + v)
            else:  # BN beta, running_mean, linear bias
                t.fill_(v)


# ------------------------------------------------------------------ golden


def golden_counts(model, shape):
    """MACs/params from the PyTorch module (forward hooks, batch 1)."""
    conv_macs = lin_macs = 0
    order = []  # execution order of Conv2d / BatchNorm2d / Linear modules

    def on_conv(m, i, o):
        nonlocal conv_macs
        conv_macs += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        order.append(m)

    def on_lin(m, i, o):
        nonlocal lin_macs
        lin_macs += o.numel() * m.in_features
        order.append(m)

    def on_convt(m, i, o):
        nonlocal conv_macs
        conv_macs += i[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        order.append(m)

    def on_matmul(m, i, o):
        nonlocal lin_macs
        lin_macs += o.numel() * m.weight.shape[0]
        order.append(m)

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.ConvTranspose2d):
            hooks.append(m.register_forward_hook(on_convt))
        elif isinstance(m, MatMulHead):
            hooks.append(m.register_forward_hook(on_matmul))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(on_lin))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_hook(lambda m, i, o: order.append(m)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1,) + tuple(shape)))
    model.train(was_training)
    for h in hooks:
        h.remove()

    params = sum(p.numel() for p in model.parameters())
    folded = 0
    for k, m in enumerate(order):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            folded += m.weight.numel()
            nxt = order[k + 1] if k + 1 < len(order) else None
            if m.bias is not None or isinstance(nxt, nn.BatchNorm2d):
                folded += m.out_channels
        elif isinstance(m, nn.Linear):
            folded += m.weight.numel() + (m.out_features if m.bias is not None else 0)
        elif isinstance(m, MatMulHead):
            folded += m.weight.numel()
        elif isinstance(m, nn.BatchNorm2d):
            prev = order[k - 1] if k > 0 else None
            assert isinstance(prev, nn.Conv2d), "BN not directly after a conv: cannot fold"
    return {
        "input": [1] + list(shape),
        "macs": conv_macs + lin_macs,
        "conv_macs": conv_macs,
        "linear_macs": lin_macs,
        "params": params,
        "params_folded": folded,
    }


# ------------------------------------------------------------------ export


def export_classic(model, x, keep_bn):
    buf = io.BytesIO()
    kw = {}
    if keep_bn:
        kw["training"] = torch.onnx.TrainingMode.PRESERVE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=[IN], output_names=[OUT],
            dynamic_axes={IN: {0: BATCH}, OUT: {0: BATCH}}, **kw)
    return buf.getvalue()


def export_dynamo(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model, (x,), dynamo=True, external_data=False, input_names=[IN], output_names=[OUT],
            dynamic_shapes={"x": {0: torch.export.Dim(BATCH)}}, verbose=False)
    proto = prog.model_proto
    # The dynamo exporter annotates nodes with Python stack traces / module paths;
    # drop them so the files do not carry absolute paths of the generating machine.
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.metadata_props[:]
    for t in proto.graph.initializer:
        assert t.data_location != onnx.TensorProto.EXTERNAL, t.name
    return proto.SerializeToString()


# ------------------------------------------------------------------ checks


def op_counts(proto):
    return dict(sorted(Counter(n.op_type for n in proto.graph.node).items()))


def check_file(data, model, shape, label, expect_bn=None, tol=TOL, rel=False):
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    ops = op_counts(proto)
    if expect_bn is True:
        assert ops.get("BatchNormalization", 0) > 0, f"{label}: no BatchNormalization kept"
        for n in proto.graph.node:
            if n.op_type == "BatchNormalization":
                assert len(n.output) == 1, f"{label}: BN with training outputs {list(n.output)}"
                for a in n.attribute:
                    assert not (a.name == "training_mode" and a.i == 1), f"{label}: training_mode=1"
    elif expect_bn is False:
        assert "BatchNormalization" not in ops, f"{label}: BatchNormalization not folded"
    assert [i.name for i in proto.graph.input] == [IN], f"{label}: inputs {[i.name for i in proto.graph.input]}"
    assert [o.name for o in proto.graph.output] == [OUT], f"{label}: outputs"
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == BATCH, f"{label}: batch dim is {dim0}"
    # Each Conv/Gemm/BN must own its weight/bias initializers (no deduplicated sharing).
    inits = {t.name for t in proto.graph.initializer}
    used = [i for n in proto.graph.node
            if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization")
            for i in n.input[1:] if i in inits]
    assert len(used) == len(set(used)), f"{label}: shared conv/gemm/bn initializers"

    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn((3,) + tuple(shape), generator=gen)  # batch 3: exercises the dynamic dim
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run(None, {IN: x.numpy()})[0]
    assert got.shape == ref.shape, f"{label}: shape {got.shape} vs {ref.shape}"
    diff = float(np.max(np.abs(got - ref)))
    scale = float(np.max(np.abs(ref)))
    bound = tol * max(1.0, scale) if rel else tol
    assert np.isfinite(ref).all() and diff < bound, f"{label}: max abs diff {diff} (|ref| max {scale})"
    return proto, ops, diff, scale


def cross_check_params(proto, g, label):
    """The file's Conv/Gemm weight+bias elements (+ BN scale/bias where BN is kept)
    must equal the golden params_folded (BN folded) or params (BN kept).  Reads the
    ONNX file, so it is only a consistency check of the golden figures."""
    sizes = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    total, has_bn = 0, False
    for n in proto.graph.node:
        if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            total += sum(sizes.get(i, 0) for i in n.input[1:])
        elif n.op_type == "BatchNormalization":
            has_bn = True
            total += sum(sizes.get(i, 0) for i in n.input[1:3])
    want = g["params"] if has_bn else g["params_folded"]
    assert total == want, f"{label}: ONNX conv/gemm(/bn) elements {total} != golden {want}"


def format_golden(golden):
    """JSON, one key per line, lists inline (readable diffs)."""
    blocks = []
    for name, g in golden.items():
        items = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in g.items())
        blocks.append(f"  {json.dumps(name)}: {{\n{items}\n  }}")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="graphs", help="output folder (default: graphs)")
    ap.add_argument("--skip-imagenet", action="store_true", help="skip the torchvision ImageNet models")
    ap.add_argument("--skip-dynamo", action="store_true", help="skip the dynamo-exporter variants")
    ap.add_argument("--only", action="append", metavar="NAME", choices=[m[0] for m in SMALL],
                    help="only this small model (repeatable); its golden.json entry is replaced, "
                         "the others are kept as they are")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    log(f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnx {onnx.__version__}, "
        f"onnxruntime {ort.__version__}")

    golden = {}
    structure = {}

    def emit(rel_path, data, proto, ops, diff, scale, gz=False):
        path = os.path.join(args.out, rel_path)
        if gz:
            data = gzip.compress(data, compresslevel=9, mtime=0)
        write_atomic(path, data)
        structure[rel_path] = {"bytes": len(data), "ops": ops, "nodes": len(proto.graph.node),
                               "initializers": len(proto.graph.initializer),
                               "opset": proto.opset_import[0].version,
                               "max_abs_diff": diff, "max_abs_ref": scale}
        log(f"wrote {path} ({len(data)} bytes, max |ort - torch| = {diff:.2e})")

    for name, ctor, shape, dyn in SMALL:
        if args.only and name not in args.only:
            continue
        seed = model_seed(name)
        torch.manual_seed(seed)
        model = ctor()
        randomize_bn(model, torch.Generator().manual_seed(seed))
        model.eval()
        g = golden_counts(model, shape)
        g["files"] = []
        x = torch.zeros((2,) + tuple(shape))

        data = export_classic(model, x, keep_bn=False)
        proto, ops, diff, scale = check_file(data, model, shape, name, expect_bn=False)
        cross_check_params(proto, g, name)
        emit(f"{name}.onnx", data, proto, ops, diff, scale)
        g["files"].append(f"{name}.onnx")

        data = export_classic(model, x, keep_bn=True)
        proto, ops, diff, scale = check_file(data, model, shape, name + "_bn", expect_bn=True)
        cross_check_params(proto, g, name + "_bn")
        emit(f"{name}_bn.onnx", data, proto, ops, diff, scale)
        g["files"].append(f"{name}_bn.onnx")

        if dyn and not args.skip_dynamo:
            try:
                data = export_dynamo(model, x)
            except Exception as e:  # report and keep going
                log(f"dynamo export of {name} FAILED: {type(e).__name__}: {e}")
            else:
                proto, ops, diff, scale = check_file(data, model, shape, name + "_dynamo")
                cross_check_params(proto, g, name + "_dynamo")
                emit(f"{name}_dynamo.onnx", data, proto, ops, diff, scale)
                g["files"].append(f"{name}_dynamo.onnx")
        golden[name] = g

    if not args.skip_imagenet and not args.only:
        for name, tv_name, ctor in IMAGENET:
            torch.manual_seed(SEED)
            model = ctor(weights=None)
            constant_fill(model)
            model.eval()
            shape = (3, 224, 224)
            g = golden_counts(model, shape)
            x = torch.zeros((1,) + shape)
            data = export_classic(model, x, keep_bn=False)
            proto, ops, diff, scale = check_file(data, model, shape, name, expect_bn=False, rel=True)
            cross_check_params(proto, g, name)
            rel_path = f"imagenet/{name}.onnx.gz"
            emit(rel_path, data, proto, ops, diff, scale, gz=True)
            g["files"] = [rel_path]
            g["torchvision"] = tv_name
            g["weights"] = "per-tensor constants (see tools/make_graphs.py constant_fill)"
            golden[name] = g

    if args.only:
        # Merge into the existing table, in the order a full run writes it.
        with open(os.path.join(args.out, "golden.json")) as f:
            old = json.load(f)
        order = [m[0] for m in SMALL] + [m[0] for m in IMAGENET]
        merged = {**old, **golden}
        golden = {k: merged[k] for k in order if k in merged}
        golden.update({k: v for k, v in merged.items() if k not in golden})
    write_atomic(os.path.join(args.out, "golden.json"), format_golden(golden).encode())
    log(f"wrote {os.path.join(args.out, 'golden.json')}")
    print(json.dumps(structure, indent=1))
    for k, g in golden.items():
        log(f"{k:18s} input {g['input']} MACs {g['macs']:,} (conv {g['conv_macs']:,} + linear "
            f"{g['linear_macs']:,}) params {g['params']:,} folded {g['params_folded']:,}")


if __name__ == "__main__":
    main()
