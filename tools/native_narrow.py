#!/usr/bin/env python3
"""Build the natively narrow twin of a model pruned by rlal: the same architecture
defined in PyTorch with exactly the pruned widths, random weights, exported the way
tools/make_graphs.py exports the reference graphs.  `rlal bench latency --native`
times it beside the pruned model: what pruning should match (issue 15).

    .venv-ref/bin/python tools/native_narrow.py PRUNED.onnx --family resnet-cifar -o NATIVE.onnx
    .venv-ref/bin/python tools/native_narrow.py runs/x/pruned.onnx --family mobilenetv2-cifar -o n.onnx

PRUNED.onnx is what `rlal export --model graphs/X.onnx --uniform R [--align A] OUT.onnx`
or an `rlal prune` run (pruned.onnx) writes.  Families (tools/models.py):

* ``resnet-cifar``: CIFAR ResNet with option-A shortcuts, depth 6n + 2 read from the
  number of convs.  Per block, conv1's and conv2's output widths come from the pruned
  weights; the shortcut replays what the pruned graph does between the block input and
  the residual Add (its strided Slice nodes, a Gather of kept channels when rlal added
  one, the channel zero-Pad with the pruned graph's amounts), so its widths match.
* ``mobilenetv2-cifar``: the CIFAR MobileNetV2 (CifarMobileNetV2.CFG): stem, 17
  inverted-residual blocks (expansion / depthwise / projection widths from the pruned
  weights, a residual add where the architecture has one), conv1x1 head, linear.

Weights: seeded random init plus make_graphs.randomize_bn; eval mode; exported with
the classic (TorchScript) exporter with constant folding, which folds every
BatchNormalization into the preceding Conv (weight scaled, bias added), as the
reference graphs/<name>.onnx are folded and as rlal's export keeps them: one
(weight, bias) per Conv, no BatchNormalization node.  Same opset, input name/shape
(dynamic batch "N") and output name as the pruned file.

Checks (the script fails if one does not hold): onnx.checker; ONNX Runtime output ==
PyTorch output; every Conv of the native file has the pruned file's weight shape,
group, strides, pads and dilations, in graph order, and the Gemm the same weight
shape; `rlal import --json` counts the same MACs for both files (params are printed;
they match too when the pruned graph has no extra constants).  Op-type counts of both
files are printed (the native file keeps the exporter's Pad-amount chain
ConstantOfShape/Concat/... that rlal's import folds into a constant; ONNX Runtime
folds it at session creation, so it costs nothing per run).
"""
import argparse
import json
import os
import subprocess
import sys
import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_graphs  # noqa: E402  (module definitions only: main() is guarded)
import models  # noqa: E402

REPO = os.path.dirname(HERE)


def log(*a):
    print("[native_narrow]", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ reading the pruned graph


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Pruned:
    """The pruned ONNX: its convs in graph order, producers/consumers and constants."""

    def __init__(self, path):
        self.path = path
        self.model = onnx.load(path)
        g = self.model.graph
        self.opset = next(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx"))
        self.inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        inp = g.input[0]
        dims = inp.type.tensor_type.shape.dim
        self.input_name = inp.name
        self.output_name = g.output[0].name
        self.chw = tuple(d.dim_value for d in dims[1:])
        assert all(self.chw), f"input {inp.name} needs fixed C, H, W (got {dims})"
        self.convs = [self.conv_info(n) for n in g.node if n.op_type == "Conv"]
        self.gemms = [n for n in g.node if n.op_type == "Gemm"]
        self._evaluated = None

    def conv_info(self, n):
        a = attrs(n)
        w = self.inits[n.input[1]]
        k = list(w.shape[2:])
        return {
            "node": n,
            "name": n.name,
            "out": int(w.shape[0]),
            "in": int(w.shape[1]) * int(a.get("group", 1)),
            "group": int(a.get("group", 1)),
            "kernel": k,
            "strides": list(a.get("strides", [1] * len(k))),
            "pads": list(a.get("pads", [0] * 2 * len(k))),
            "dilations": list(a.get("dilations", [1] * len(k))),
            "x": n.input[0],
            "y": n.output[0],
        }

    def const(self, name):
        """The value of `name` when it is an initializer, a Constant's output or computed
        from constants only (the exporter's Pad-amount chain): evaluated in ONNX Runtime."""
        if name in self.inits:
            return self.inits[name]
        p = self.producer.get(name)
        if p is not None and p.op_type == "Constant":
            return numpy_helper.to_array(attrs(p)["value"]) if "value" in attrs(p) else None
        if self._evaluated is None:
            m = onnx.ModelProto()
            m.CopyFrom(self.model)
            have = {o.name for o in m.graph.output}
            for n in m.graph.node:
                for o in n.output:
                    if o and o not in have:
                        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(o))
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            s = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            x = np.zeros((1,) + self.chw, np.float32)
            names = [o.name for o in s.get_outputs()]
            self._evaluated = dict(zip(names, s.run(names, {self.input_name: x})))
        return self._evaluated[name]

    def shortcut_ops(self, block_input, add_node, branch_output):
        """What the pruned graph does to `block_input` before adding it to the residual
        branch: a list of ("slice", {axis: (start, end, step)}), ("gather", axis, idx),
        ("pad", pads) from the block input to the Add."""
        other = [i for i in add_node.input if i != branch_output]
        assert len(other) == 1, f"{add_node.name}: inputs {list(add_node.input)}"
        ops, t = [], other[0]
        while t != block_input:
            n = self.producer.get(t)
            assert n is not None, f"shortcut of {add_node.name} does not reach the block input"
            if n.op_type == "Slice":
                if self.opset >= 10:
                    get = [self.const(n.input[i]) if len(n.input) > i and n.input[i] else None
                           for i in range(5)]
                    starts, ends, axes, steps = get[1], get[2], get[3], get[4]
                else:
                    a = attrs(n)
                    starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
                axes = list(range(len(starts))) if axes is None else list(axes)
                steps = [1] * len(starts) if steps is None else list(steps)
                ops.append(("slice", {int(ax) % 4: (int(s), int(e), int(st))
                                      for ax, s, e, st in zip(axes, starts, ends, steps)}))
            elif n.op_type == "Gather":
                ops.append(("gather", int(attrs(n).get("axis", 0)) % 4,
                            self.const(n.input[1]).astype(np.int64)))
            elif n.op_type == "Pad":
                a = attrs(n)
                assert a.get("mode", b"constant") in (b"constant", "constant"), n.name
                pads = a["pads"] if self.opset < 11 else self.const(n.input[1])
                pads = [int(p) for p in pads]
                assert len(pads) == 8, f"{n.name}: pads {pads} (axes input not supported)"
                if len(n.input) > 2 and n.input[2]:
                    v = self.const(n.input[2])
                    assert v is None or float(np.asarray(v).reshape(-1)[0]) == 0.0, n.name
                ops.append(("pad", pads))
            else:
                raise SystemExit(f"unexpected {n.op_type} {n.name} on the shortcut of {add_node.name}")
            t = n.input[0]
        return ops[::-1]

    def add_after(self, conv, other=None):
        """The Add consuming `conv`'s output (directly, as in a BN-folded graph), and
        `other` when given, or None."""
        adds = [n for n in self.consumers.get(conv["y"], []) if n.op_type == "Add"
                and (other is None or other in n.input)]
        assert len(adds) <= 1, f"{conv['name']} feeds {len(adds)} Adds"
        return adds[0] if adds else None


# ------------------------------------------------------------------ native modules


class ReplayShortcut(nn.Module):
    """The option-A shortcut with the pruned graph's own Slice / Gather / Pad steps.
    For the unpruned graphs (and any prune that keeps the residual stream) this is
    models.BasicBlockA.shortcut: x[:, :, ::2, ::2] then zero-pad planes // 4 channels on
    each side."""

    def __init__(self, ops):
        super().__init__()
        self.ops = []
        for k, op in enumerate(ops):
            if op[0] == "gather":
                self.register_buffer(f"idx{k}", torch.as_tensor(op[2]))
                self.ops.append(("gather", op[1], f"idx{k}"))
            else:
                self.ops.append(op)

    def forward(self, x):
        for op in self.ops:
            if op[0] == "slice":
                big = 2 ** 62
                idx = [slice(None)] * x.dim()
                for ax, (s, e, st) in op[1].items():
                    idx[ax] = slice(s, None if e >= big else e, st)
                x = x[tuple(idx)]
            elif op[0] == "gather":
                x = torch.index_select(x, op[1], getattr(self, op[2]))
            else:  # pad: ONNX [b0, b1, b2, b3, e0, e1, e2, e3] -> F.pad's last-axis-first pairs
                p = op[1]
                assert p[0] == 0 and p[4] == 0, f"batch-axis pad {p}"
                x = F.pad(x, (p[3], p[7], p[2], p[6], p[1], p[5]), "constant", 0)
        return x


class NarrowBlockA(models.BasicBlockA):
    """models.BasicBlockA (its forward) with free widths in -> mid -> out and a replayed shortcut."""

    def __init__(self, cin, mid, cout, stride, shortcut_ops):
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(cin, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = bool(shortcut_ops)
        self.planes = cout
        self.replay = ReplayShortcut(shortcut_ops)

    def shortcut(self, x):
        return self.replay(x) if self.downsample else x


class NarrowCifarResNet(models.CifarResNet):
    """models.CifarResNet (its forward) built from explicit widths."""

    def __init__(self, in_channels, stem, blocks, n, fc_in, num_classes):
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        mods = [NarrowBlockA(*b) for b in blocks]
        self.layer1 = nn.Sequential(*mods[:n])
        self.layer2 = nn.Sequential(*mods[n:2 * n])
        self.layer3 = nn.Sequential(*mods[2 * n:])
        self.fc = nn.Linear(fc_in, num_classes)


class NarrowInvertedResidual(models.InvertedResidual):
    """models.InvertedResidual (its forward) with an explicit hidden width."""

    def __init__(self, cin, hidden, cout, stride, expand, use_res):
        nn.Module.__init__(self)
        self.use_res = use_res
        layers = []
        if expand:
            layers.append(models.conv_bn_relu6(cin, hidden, 1))
        layers += [
            models.conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)


class NarrowMobileNetV2(models.CifarMobileNetV2):
    """models.CifarMobileNetV2 (its forward) built from explicit widths."""

    def __init__(self, in_channels, stem, blocks, head, num_classes):
        nn.Module.__init__(self)
        layers = [models.conv_bn_relu6(in_channels, stem, 3, stride=1)]
        layers += [NarrowInvertedResidual(*b) for b in blocks]
        layers.append(models.conv_bn_relu6(blocks[-1][2], head, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(head, num_classes)


# ------------------------------------------------------------------ widths -> modules


def gemm_shape(p):
    assert len(p.gemms) == 1, f"expected one Gemm, found {len(p.gemms)}"
    g = p.gemms[0]
    w = p.inits[g.input[1]]
    trans_b = attrs(g).get("transB", 0)
    out, fin = (w.shape[0], w.shape[1]) if trans_b else (w.shape[1], w.shape[0])
    return int(fin), int(out)


def build_resnet(p):
    convs = p.convs
    assert (len(convs) - 1) % 6 == 0, f"{len(convs)} convs is not 6n + 1 (CIFAR ResNet)"
    n = (len(convs) - 1) // 6
    stem = convs[0]
    assert stem["kernel"] == [3, 3] and stem["in"] == p.chw[0], stem
    blocks, widths, shortcut_notes = [], [], []
    for i in range(3 * n):
        c1, c2 = convs[1 + 2 * i], convs[2 + 2 * i]
        stride = 2 if i in (n, 2 * n) else 1
        assert c1["strides"] == [stride, stride] and c2["strides"] == [1, 1], (c1["name"], c2["name"])
        assert c2["in"] == c1["out"] and c1["group"] == c2["group"] == 1, (c1, c2)
        add = p.add_after(c2)
        assert add is not None, f"no residual Add after {c2['name']}"
        ops = p.shortcut_ops(c1["x"], add, c2["y"])
        if stride == 1 and not ops:
            assert c1["in"] == c2["out"], f"identity shortcut with {c1['in']} -> {c2['out']} channels"
        else:
            assert ops, f"block {i}: stride {stride} but no shortcut ops"
            # What make_graphs' option A does at these widths: x[:, :, ::2, ::2], pad (out-in)/2 each side.
            d = c2["out"] - c1["in"]
            kinds = [o[0] for o in ops]
            pad = [o[1] for o in ops if o[0] == "pad"]
            gathers = [len(o[2]) for o in ops if o[0] == "gather"]
            chan_slices = [o[1][1] for o in ops if o[0] == "slice" and 1 in o[1]]
            shortcut_notes.append(
                f"block {i}: {c1['in']} -> {c2['out']} ch, ops {'/'.join(kinds)}, channel pads "
                f"{[(q[1], q[5]) for q in pad]}" + (f", gathers {gathers} ch" if gathers else "")
                + (f", channel slices {chan_slices}" if chan_slices else "")
                + ("" if (pad and pad[0][1] == pad[0][5] == d // 2 and not gathers and not chan_slices)
                   else " (differs from a plain (out-in)/2 zero-pad)"))
        blocks.append((c1["in"], c1["out"], c2["out"], stride, ops))
        widths.append((c1["out"], c2["out"]))
    fc_in, classes = gemm_shape(p)
    assert fc_in == convs[-1]["out"], f"Gemm K {fc_in} != last conv width {convs[-1]['out']}"
    model = NarrowCifarResNet(p.chw[0], stem["out"], blocks, n, fc_in, classes)
    desc = (f"CIFAR ResNet-{6 * n + 2} (option A): stem {stem['out']}; blocks (mid, out) "
            + " | ".join(" ".join(f"{m}/{o}" for m, o in widths[s * n:(s + 1) * n]) for s in range(3))
            + f"; fc {fc_in} -> {classes}")
    return model, desc, shortcut_notes


def build_mobilenetv2(p):
    convs = list(p.convs)
    cfg = models.CifarMobileNetV2.CFG
    n_expected = 1 + sum(n * (2 if t == 1 else 3) for t, _, n, _ in cfg) + 1
    assert len(convs) == n_expected, f"{len(convs)} convs, CIFAR MobileNetV2 has {n_expected}"
    it = iter(convs)
    stem = next(it)
    assert stem["kernel"] == [3, 3] and stem["strides"] == [1, 1] and stem["in"] == p.chw[0], stem
    blocks, desc, notes = [], [], []
    cin_orig, cin = 32, stem["out"]
    for t, c, n, s in cfg:
        for i in range(n):
            stride = s if i == 0 else 1
            expand = t != 1
            e = next(it) if expand else None
            dw, pr = next(it), next(it)
            if e is not None:
                assert e["kernel"] == [1, 1] and e["group"] == 1 and e["in"] == cin, (e, cin)
                hidden = e["out"]
            else:
                hidden = cin
            assert dw["kernel"] == [3, 3] and dw["group"] == dw["out"] == dw["in"] == hidden, (dw, hidden)
            assert dw["strides"] == [stride, stride], dw
            assert pr["kernel"] == [1, 1] and pr["group"] == 1 and pr["in"] == hidden, pr
            use_res = stride == 1 and cin_orig == c
            # The residual Add sums this block's projection and the block input (the
            # projection may also feed the next block's Add as that block's input).
            add = p.add_after(pr, other=(e or dw)["x"])
            assert (add is not None) == use_res, f"{pr['name']}: residual add {add is not None}, expected {use_res}"
            if use_res:
                assert pr["out"] == cin, f"{pr['name']}: residual add of {pr['out']} and {cin} channels"
            blocks.append((cin, hidden, pr["out"], stride, expand, use_res))
            desc.append(f"{hidden}>{pr['out']}")
            cin, cin_orig = pr["out"], c
    head = next(it)
    assert head["kernel"] == [1, 1] and head["in"] == cin, head
    fc_in, classes = gemm_shape(p)
    assert fc_in == head["out"], (fc_in, head["out"])
    model = NarrowMobileNetV2(p.chw[0], stem["out"], blocks, head["out"], classes)
    return model, (f"CIFAR MobileNetV2: stem {stem['out']}; blocks hidden>out " + " ".join(desc)
                   + f"; head {head['out']}; fc {fc_in} -> {classes}"), notes


# ------------------------------------------------------------------ export and checks


def export(model, p):
    """make_graphs.export_classic(keep_bn=False), at the pruned file's opset and names."""
    import io
    buf = io.BytesIO()
    x = torch.zeros((2,) + p.chw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), buf, dynamo=False, opset_version=p.opset, do_constant_folding=True,
            input_names=[p.input_name], output_names=[p.output_name],
            dynamic_axes={p.input_name: {0: make_graphs.BATCH}, p.output_name: {0: make_graphs.BATCH}})
    return buf.getvalue()


def conv_signature(c):
    return (c["out"], c["in"], c["group"], tuple(c["kernel"]), tuple(c["strides"]),
            tuple(c["pads"]), tuple(c["dilations"]))


def rlal_totals(rlal, path):
    r = subprocess.run([rlal, "import", "--json", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"rlal import {path} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout)["totals"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pruned", help="pruned ONNX written by rlal (export or prune's pruned.onnx)")
    ap.add_argument("--family", required=True, choices=["resnet-cifar", "mobilenetv2-cifar"])
    ap.add_argument("-o", "--out", required=True, help="where to write the native ONNX")
    ap.add_argument("--seed", type=int, default=make_graphs.SEED)
    ap.add_argument("--rlal", default=os.path.join(REPO, "target", "release", "rlal"),
                    help="rlal binary for the MACs check (default: target/release/rlal)")
    args = ap.parse_args()

    p = Pruned(args.pruned)
    build = build_resnet if args.family == "resnet-cifar" else build_mobilenetv2
    model, desc, notes = build(p)
    log(desc)
    for s in notes:
        log("shortcut", s)
    torch.manual_seed(args.seed)
    model.apply(lambda m: m.reset_parameters() if isinstance(m, (nn.Conv2d, nn.Linear)) else None)
    make_graphs.randomize_bn(model, torch.Generator().manual_seed(args.seed))
    model.eval()

    data = export(model, p)
    native = onnx.load_from_string(data)
    onnx.checker.check_model(native, full_check=True)
    assert not any(n.op_type == "BatchNormalization" for n in native.graph.node), "BN not folded"
    x = torch.randn((3,) + p.chw, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {p.input_name: x.numpy()})[0]
    diff = float(np.max(np.abs(got - ref)))
    assert got.shape == ref.shape and diff < make_graphs.TOL * max(1.0, float(np.abs(ref).max())), diff

    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)

    # Same convs (shape, group, strides, pads, dilations) in graph order, same Gemm.
    q = Pruned(args.out)
    a, b = [conv_signature(c) for c in p.convs], [conv_signature(c) for c in q.convs]
    bad = [(i, s, t) for i, (s, t) in enumerate(zip(a, b)) if s != t]
    assert len(a) == len(b) and not bad, f"conv mismatch (index, pruned, native): {bad[:5]} ({len(a)} vs {len(b)})"
    assert gemm_shape(p) == gemm_shape(q), (gemm_shape(p), gemm_shape(q))

    tp, tn = rlal_totals(args.rlal, args.pruned), rlal_totals(args.rlal, args.out)
    ops_p = Counter(n.op_type for n in p.model.graph.node)
    ops_n = Counter(n.op_type for n in native.graph.node)
    log(f"wrote {args.out}: opset {p.opset}, input {p.input_name} [N,{','.join(map(str, p.chw))}], "
        f"BN folded by the exporter, max |ort - torch| {diff:.1e}")
    log(f"convs: {len(a)} identical (shape, group, strides, pads, dilations); Gemm {gemm_shape(q)}")
    log(f"rlal import MACs  pruned {tp['macs']:,}  native {tn['macs']:,}")
    log(f"rlal import params pruned {tp['params']:,}  native {tn['params']:,}")
    log("ops pruned: " + ", ".join(f"{k} {v}" for k, v in sorted(ops_p.items())))
    log("ops native: " + ", ".join(f"{k} {v}" for k, v in sorted(ops_n.items())))
    print(json.dumps({"pruned": args.pruned, "native": args.out, "family": args.family,
                      "architecture": desc, "macs": [tp["macs"], tn["macs"]],
                      "params": [tp["params"], tn["params"]], "convs": len(a),
                      "max_abs_diff": diff}))
    if tp["macs"] != tn["macs"]:
        raise SystemExit(f"MACs differ: pruned {tp['macs']} vs native {tn['macs']}")


if __name__ == "__main__":
    main()
