"""Torch-Pruning (PyPI ``torch-pruning`` 1.6.1) on the model, data, budget and epochs of
an rlal run, for docs/RESULTS.md "rlal vs Torch-Pruning". Run it through
``bash tools/peer_torch_pruning.sh ARGS`` (which makes the venv ``.venv-tp``).

Model. The ONNX that ``rlal prune`` takes (e.g. graphs/resnet20_mnist.onnx, or what
``rlal train`` wrote) is loaded as the matching PyTorch definition of
tools/models.py (``CifarResNet``, option-A shortcuts; depth from the number of
convs, input channels and size from the ONNX input, classes from the classifier)
with the ONNX initializers copied in, convs in graph order: no onnx2torch. A
folded conv bias ``b`` becomes its BatchNorm's running mean ``-b`` with scale 1,
shift 0 and variance ``1 - eps``: the function of the file, and in training mode
exactly rlal's (rlal inserts the same identity BN after each conv and keeps the
bias, which batch statistics cancel). A kept BatchNormalization is copied. The
loaded model is checked against ONNX Runtime on two images.

Data. An MNIST IDX folder (data/fashion-mnist, data/mnist5k) read with numpy from
its ``.gz`` files; pixels / 255, then ``(x - mean) / std`` as the rlal recipe's
``training.mean``/``std``. ``--train-samples N`` takes a class-balanced subset of
the training split (``N // K`` per class, the remainder to the first classes; a
numpy permutation seeded with ``--seed``: the same rule as rlal's
``training.train-samples`` but not the same images). No augmentation (none in
recipes/results_fashion.yaml). Accuracy is on the whole test split.

Schedule. SGD (momentum, Nesterov, weight decay on all parameters) with rlal's
per-step schedule: a linear warm-up over ``--lr-warmup-epochs`` then cosine to 0,
batch 64, reshuffled every epoch. ``--start scratch``: train ``--epochs`` epochs from
the given (e.g. random) weights, prune, fine-tune ``--finetune-epochs`` (an rlal
prune run's ``training.epochs`` and ``finetune.epochs`` give equal totals);
``--start pretrained``: prune the given weights, then fine-tune. Fine-tuning
restarts the schedule (rlal's ``finetune:`` likewise).

Pruning. Torch-Pruning's recommended flow (its benchmark script's
``progressive_pruning``): ``tp.pruner.MetaPruner`` (1.6's alias of ``BasePruner``)
with ``pruning_ratio=1.0`` over ``--iterative-steps`` steps, ``pruner.step()`` until
``tp.utils.count_ops_and_params`` says MACs <= ``--macs-ratio`` of the start;
``--importance l1`` (``MagnitudeImportance(p=1)``: the L1 norm of each channel over
every layer of its coupled group, averaged) or ``group-norm``
(``GroupMagnitudeImportance(p=2)``, the group L2 norm, Torch-Pruning's default
importance; 1.6 has no ``GroupNormImportance``); ``--scope uniform`` (one ratio per
layer) or ``global`` (``global_pruning=True``); ``round_to=--channel-multiple``.
``--ignore rlal`` leaves the layers rlal does not prune alone (the stem, each
block's ``conv2`` and the classifier: only each block's inner width is pruned);
``--ignore default`` ignores only the classifier (Torch-Pruning's usual setting),
which breaks the option-A shortcut: Torch-Pruning does not trace the zero-padding's
channel coupling (its first step prunes the classifier's inputs apart from the last
stage's channels; the forward pass after the step fails with ``mat1 and mat2 shapes
cannot be multiplied``); the failure is written to the JSON and the exit status is 3
(bad input: 2).

Output: the pruned fine-tuned model as ONNX (``torch.onnx.export``, classic
exporter, opset 17, input ``input`` 1xCxHxW with a dynamic batch, output
``logits``, BatchNorm folded by the exporter) and a JSON beside it (``-o X.onnx``
-> ``X.json``; also printed) with the accuracies, MACs and params by Torch-Pruning's
counter, the kept widths and the wall time of each phase.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402  (tools/models.py)

BN_EPS = 1e-5


class Failure(Exception):
    """A run that stops with a recorded reason: bad input (exit status 2) or Torch-Pruning
    breaking the model (status 3)."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------ arguments


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="ONNX model (as rlal takes it)")
    p.add_argument("--data", required=True, help="MNIST IDX folder (train-/t10k- *.gz)")
    p.add_argument("-o", "--output", required=True, help="pruned ONNX to write (JSON beside it)")
    p.add_argument("--start", choices=["scratch", "pretrained"], required=True,
                   help="scratch: train --epochs, prune, fine-tune; pretrained: prune, fine-tune")
    p.add_argument("--macs-ratio", type=float, required=True, help="MACs budget, fraction of the start")
    p.add_argument("--epochs", type=int, default=0, help="training epochs before pruning (scratch)")
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--importance", choices=["l1", "group-norm"], default="l1")
    p.add_argument("--scope", choices=["uniform", "global"], default="uniform")
    p.add_argument("--ignore", choices=["rlal", "default"], default="rlal",
                   help="rlal: stem, every conv2 and the classifier; default: classifier only")
    p.add_argument("--channel-multiple", type=int, default=4, help="round_to")
    p.add_argument("--iterative-steps", type=int, default=400)
    p.add_argument("--max-pruning-ratio", type=float, default=1.0)
    p.add_argument("--mean", type=float, nargs="+", required=True)
    p.add_argument("--std", type=float, nargs="+", required=True)
    p.add_argument("--train-samples", type=int, default=0, help="class-balanced subset (0: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--finetune-lr", type=float, default=None, help="default: --lr")
    p.add_argument("--lr-warmup-epochs", type=float, default=0.5)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--no-nesterov", action="store_true")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    a = p.parse_args(argv)
    if not 0 < a.macs_ratio < 1:
        p.error(f"--macs-ratio {a.macs_ratio} must be in (0, 1)")
    if a.start == "pretrained" and a.epochs:
        p.error("--epochs is the training before pruning of --start scratch; "
                "--start pretrained prunes the given weights")
    if a.start == "scratch" and a.epochs < 1:
        p.error("--start scratch needs --epochs >= 1")
    return a


# ---------------------------------------------------------------------------- data


def read_idx(path, magic):
    """One MNIST IDX file (gzip or not) as a uint8 array; errors name the file."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 8 or int.from_bytes(raw[:4], "big") != magic:
        raise Failure(f"{path}: not an IDX file with magic {magic:#010x}")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise Failure(f"{path}: {body.size} bytes of data for shape {dims}")
    return body.reshape(dims)


def idx_file(folder, stem):
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise Failure(f"{folder}: neither {stem} nor {stem}.gz")


def load_split(folder, prefix):
    """(images N x 1 x H x W uint8, labels N int64) of the `train` or `t10k` split."""
    folder = Path(folder)
    x = read_idx(idx_file(folder, f"{prefix}-images-idx3-ubyte"), 0x803)
    y = read_idx(idx_file(folder, f"{prefix}-labels-idx1-ubyte"), 0x801)
    if len(x) != len(y):
        raise Failure(f"{folder}: {len(x)} {prefix} images but {len(y)} labels")
    return x[:, None], y.astype(np.int64)


def balanced_subset(labels, n, seed):
    """Indices of n images, n // K of each class (remainder to the first classes)."""
    rng = np.random.default_rng(seed)
    classes = int(labels.max()) + 1
    quota = [n // classes + (c < n % classes) for c in range(classes)]
    chosen = []
    for c, q in enumerate(quota):
        members = np.flatnonzero(labels == c)
        if len(members) < q:
            raise Failure(f"class {c} has {len(members)} training images, {q} wanted")
        chosen.append(rng.permutation(members)[:q])
    return np.sort(np.concatenate(chosen))


def normalise(x, mean, std):
    t = torch.from_numpy(x.astype(np.float32) / 255.0)
    c = t.shape[1]
    m, s = (torch.tensor(v if len(v) == c else v * c).view(1, c, 1, 1) for v in (mean, std))
    return (t - m) / s


def load_data(a, input_shape):
    xtr, ytr = load_split(a.data, "train")
    xte, yte = load_split(a.data, "t10k")
    if list(xtr.shape[1:]) != list(input_shape):
        raise Failure(f"{a.data}: images are {list(xtr.shape[1:])}, {a.model} takes {list(input_shape)}")
    if a.train_samples and a.train_samples < len(ytr):
        keep = balanced_subset(ytr, a.train_samples, a.seed)
        xtr, ytr = xtr[keep], ytr[keep]
    return (normalise(xtr, a.mean, a.std), torch.from_numpy(ytr),
            normalise(xte, a.mean, a.std), torch.from_numpy(yte))


# --------------------------------------------------------------------------- model


def onnx_layers(graph):
    """The Conv nodes in graph order, each with the BatchNormalization after it (or
    None), and the classifier (Gemm, or MatMul [+ Add])."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    by_input = {}
    for n in graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:  # the exporter's shared weights
            inits[n.output[0]] = inits[n.input[0]]
        for i in n.input:
            by_input.setdefault(i, []).append(n)
    convs, fc = [], None
    for n in graph.node:
        if n.op_type == "Conv":
            nxt = by_input.get(n.output[0], [])
            bn = nxt[0] if len(nxt) == 1 and nxt[0].op_type == "BatchNormalization" else None
            convs.append((n, bn))
        elif n.op_type in ("Gemm", "MatMul"):
            if fc is not None:
                raise Failure(f"two classifiers: {fc[0].name} and {n.name}")
            nxt = by_input.get(n.output[0], [])
            add = nxt[0] if n.op_type == "MatMul" and len(nxt) == 1 and nxt[0].op_type == "Add" else None
            fc = (n, add)
    if fc is None:
        raise Failure("no Gemm/MatMul classifier")
    return convs, fc, inits


def linear_params(node, add, inits):
    w = inits[node.input[1]]
    trans_b = any(at.name == "transB" and at.i for at in node.attribute)
    w = w if (node.op_type == "Gemm" and trans_b) else w.T
    if node.op_type == "Gemm":
        b = inits.get(node.input[2]) if len(node.input) > 2 else None
    else:
        b = next((inits[i] for i in add.input if i in inits), None) if add else None
    return w, b


def copy_conv(conv, bn, node, bn_node, inits, name):
    w = inits[node.input[1]]
    if tuple(w.shape) != tuple(conv.weight.shape):
        raise Failure(f"conv {node.name or node.output[0]}: weight {list(w.shape)}, "
                      f"{name} wants {list(conv.weight.shape)}")
    conv.weight.data = torch.from_numpy(w.copy())
    bias = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else 0.0
    if bn_node is None:  # folded: identity BN whose running mean carries the bias
        bn.weight.data.fill_(1.0)
        bn.bias.data.zero_()
        bn.running_var.data.fill_(1.0 - BN_EPS)
        mean = np.broadcast_to(np.asarray(bias, np.float32), bn.running_mean.shape)
        bn.running_mean.data = torch.from_numpy(-mean)
        return
    scale, shift, mean, var = (inits[i] for i in bn_node.input[1:5])
    bn.weight.data, bn.bias.data = torch.from_numpy(scale.copy()), torch.from_numpy(shift.copy())
    bn.running_mean.data = torch.from_numpy((mean - bias).astype(np.float32))
    bn.running_var.data = torch.from_numpy(var.copy())
    eps = next((at.f for at in bn_node.attribute if at.name == "epsilon"), 1e-5)
    bn.eps = eps


def conv_bn_pairs(model):
    """(name, Conv2d, its BatchNorm2d) in forward order for CifarResNet."""
    pairs = [("conv1", model.conv1, model.bn1)]
    for stage in ("layer1", "layer2", "layer3"):
        for i, blk in enumerate(getattr(model, stage)):
            pairs += [(f"{stage}.{i}.conv1", blk.conv1, blk.bn1), (f"{stage}.{i}.conv2", blk.conv2, blk.bn2)]
    return pairs


def load_onnx(path):
    """(CifarResNet with the file's weights, input shape [C, H, W])."""
    if not Path(path).is_file():
        raise Failure(f"{path}: no such file")
    m = onnx.load(path)
    g = m.graph
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[1:]):
        raise Failure(f"{path}: input {g.input[0].name} is not N x C x H x W with fixed C, H, W")
    convs, fc, inits = onnx_layers(g)
    if (len(convs) - 1) % 6:
        raise Failure(f"{path}: {len(convs)} convs is not a CIFAR ResNet (6n + 1)")
    fc_w, fc_b = linear_params(*fc, inits)
    model = models.CifarResNet((len(convs) - 1) // 6, dims[1], fc_w.shape[0])
    for (name, conv, bn), (node, bn_node) in zip(conv_bn_pairs(model), convs):
        copy_conv(conv, bn, node, bn_node, inits, name)
    if tuple(fc_w.shape) != tuple(model.fc.weight.shape):
        raise Failure(f"{path}: classifier {list(fc_w.shape)}, wanted {list(model.fc.weight.shape)}")
    model.fc.weight.data = torch.from_numpy(np.array(fc_w, np.float32))
    if fc_b is not None:
        model.fc.bias.data = torch.from_numpy(np.array(fc_b, np.float32))
    else:
        model.fc.bias.data.zero_()
    check_against_onnx(model, m, dims[1:], path)
    return model, dims[1:]


def check_against_onnx(model, proto, shape, path):
    import onnxruntime as ort  # onnx's ReferenceEvaluator mis-runs BatchNormalization with `momentum`
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {proto.graph.input[0].name: x.numpy()})[0]
    model.eval()
    with torch.no_grad():
        got = model(x).numpy()
    err = float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))
    if err > 1e-4:
        raise Failure(f"{path}: the PyTorch model differs from the ONNX by {err:.2e} (relative)")


# ------------------------------------------------------------------------ training


def lr_at(step, total, warmup, base):
    """rlal's schedule: linear warm-up from 0, then cosine to 0 at the last step."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * base * (1.0 + math.cos(math.pi * t))


def train(model, xtr, ytr, epochs, lr, a, seed):
    if epochs == 0:
        return
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=a.momentum,
                          nesterov=not a.no_nesterov, weight_decay=a.weight_decay)
    steps = math.ceil(len(ytr) / a.batch_size)
    total, warmup = steps * epochs, round(min(a.lr_warmup_epochs, epochs) * steps)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        seen, loss_sum = 0, 0.0
        for i in range(0, len(ytr), a.batch_size):
            idx = perm[i:i + a.batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, lr)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        print(f"  epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.4f}", file=sys.stderr, flush=True)


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    correct = sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum()) for i in range(0, len(y), 500))
    return 100.0 * correct / len(y)


# ------------------------------------------------------------------------- pruning


def ignored_layers(model, which):
    if which == "default":
        return [model.fc]
    return [model.fc, model.conv1] + [m for n, m, _ in conv_bn_pairs(model) if n.endswith(".conv2")]


def make_pruner(tp, model, example, a):
    imp = (tp.importance.MagnitudeImportance(p=1) if a.importance == "l1"
           else tp.importance.GroupMagnitudeImportance(p=2))
    return tp.pruner.MetaPruner(
        model, example, importance=imp, pruning_ratio=1.0, iterative_steps=a.iterative_steps,
        max_pruning_ratio=a.max_pruning_ratio, global_pruning=a.scope == "global",
        round_to=a.channel_multiple, ignored_layers=ignored_layers(model, a.ignore))


def prune(model, shape, a):
    """Torch-Pruning's progressive pruning to the MACs budget; (MACs, params) before and after."""
    import torch_pruning as tp
    example = torch.randn(1, *shape)
    model.eval()
    macs0, params0 = tp.utils.count_ops_and_params(model, example_inputs=example)
    pruner = make_pruner(tp, model, example, a)
    macs, params = macs0, params0
    try:
        while macs > a.macs_ratio * macs0:
            if pruner.current_step == pruner.iterative_steps:
                raise Failure(f"{a.iterative_steps} steps reach only {macs / macs0:.4f} of the MACs")
            pruner.step()
            with torch.no_grad():
                model(example)  # Torch-Pruning's own check that the pruned model still runs
            macs, params = tp.utils.count_ops_and_params(model, example_inputs=example)
    except RuntimeError as e:
        raise Failure(f"Torch-Pruning broke the model at step {pruner.current_step}: {e}", 3) from e
    return {"macs_start": int(macs0), "params_start": int(params0),
            "macs": int(macs), "params": int(params), "macs_ratio": macs / macs0,
            "steps": pruner.current_step}


def widths(model):
    return {name: conv.out_channels for name, conv, _ in conv_bn_pairs(model)}


# -------------------------------------------------------------------------- export


def export(model, shape, path):
    model.eval()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.randn(1, *shape),), path, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], do_constant_folding=True,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    onnx.checker.check_model(onnx.load(path), full_check=True)


# ---------------------------------------------------------------------------- main


def timed(times, phase, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    times[phase] = round(time.perf_counter() - t0, 2)
    return out


def run(a, report):
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    times = report["seconds"]
    model, shape = timed(times, "load", load_onnx, a.model)
    xtr, ytr, xte, yte = timed(times, "data", load_data, a, shape)
    report["train_images"], report["test_images"] = len(ytr), len(yte)
    timed(times, "train", train, model, xtr, ytr, a.epochs, a.lr, a, a.seed)
    report["accuracy_before_pruning"] = timed(times, "eval_before", accuracy, model, xte, yte)
    report["pruning"] = timed(times, "prune", prune, model, shape, a)
    report["widths"] = widths(model)
    report["accuracy_pruned_no_finetune"] = timed(times, "eval_pruned", accuracy, model, xte, yte)
    ft_lr = a.finetune_lr if a.finetune_lr is not None else a.lr
    timed(times, "finetune", train, model, xtr, ytr, a.finetune_epochs, ft_lr, a, a.seed + 1)
    report["accuracy"] = timed(times, "eval", accuracy, model, xte, yte)
    timed(times, "export", export, model, shape, a.output)
    report["onnx"] = a.output


def main(argv=None):
    a = parse_args(argv)
    report = {"tool": "torch-pruning", "versions": versions(), "args": vars(a), "seconds": {}}
    status = 0
    t0 = time.perf_counter()
    try:
        run(a, report)
    except Failure as e:
        report["failure"] = str(e)
        status = e.status
    report["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    text = json.dumps(report, indent=2)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).with_suffix(".json").write_text(text + "\n")
    print(text)
    if status:
        print(f"peer_torch_pruning: {report['failure']}", file=sys.stderr)
    return status


def versions():
    import importlib.metadata as md
    return {p: md.version(p) for p in ("torch", "torch-pruning", "onnx", "onnxruntime", "numpy")} | {
        "cpu_count": os.cpu_count()}


if __name__ == "__main__":
    sys.exit(main())
