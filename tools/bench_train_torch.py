#!/usr/bin/env python3
"""PyTorch eager reference for `rlal bench train`: training-step throughput.

    .venv/bin/python tools/bench_train_torch.py --model graphs/resnet20_cifar.onnx \
        [--batch 128] [--steps 20] [--warmup 3] [--threads 2] [--device cpu|cuda]
        [--precision fp32|bf16|fp16] [--channels-last] [--json]

``--model`` names one of the reference graphs (a path to ``graphs/<name>.onnx`` or
just ``<name>``); the network is built from the PyTorch definitions those graphs
were exported from (``tools/models.py``, the modules ``tools/make_graphs.py``
exports; no torchvision needed) with the same random-init seed.

Measured exactly as `rlal bench train` does: random input of the graph's input
shape, random labels (fixed seed), model in train mode, and per step: forward,
cross-entropy, ``zero_grad``, backward, ``torch.optim.SGD(lr=0.01, momentum=0.9,
weight_decay=1e-4)`` step, then ``loss.item()`` (which waits for the GPU on CUDA).  ``--warmup`` untimed steps,
then ``--steps`` steps timed one by one; ``images_per_s = batch / median``.

The work matches rlal's training graph: rlal trains the BN-folded graph
(``<name>.onnx``) with an identity BatchNormalization inserted after every conv,
and the folded convs keep their bias.  The PyTorch models have a BatchNorm after
every conv already; by default each conv also gets a (zero) bias so both sides
run the same ops and train the same parameters (``--no-conv-bias``: the original
bias-free convs).

``--precision bf16|fp16`` runs the forward and loss under ``torch.autocast`` (the
reference for rlal's mixed precision); fp16 adds ``torch.amp.GradScaler`` as rlal
adds dynamic loss scaling.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

SEED = 20240607  # tools/make_graphs.py

# name -> (constructor, input C, H, W); as in tools/make_graphs.py SMALL
MODELS = {
    "resnet20_cifar": (lambda: models.resnet20(3, 10), (3, 32, 32)),
    "resnet56_cifar": (lambda: models.resnet56(3, 10), (3, 32, 32)),
    "mobilenetv2_cifar": (lambda: models.mobilenetv2_cifar(3, 10), (3, 32, 32)),
    "resnet20_mnist": (lambda: models.resnet20(1, 10), (1, 28, 28)),
    "mnist_cnn": (lambda: models.mnist_cnn(1, 10), (1, 28, 28)),
    "resnet20_digits": (lambda: models.resnet20(1, 10), (1, 8, 8)),
}


def model_name(arg):
    name = os.path.basename(arg)
    for suffix in (".gz", ".onnx"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for suffix in ("_bn", "_dynamo"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name not in MODELS:
        sys.exit(f"error: {arg}: no PyTorch definition for '{name}' (known: {', '.join(MODELS)})")
    return name


def add_conv_bias(net):
    n = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.out_channels))
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="graphs/<name>.onnx or <name>")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--no-conv-bias", action="store_true", help="keep the bias-free convs of tools/models.py")
    ap.add_argument("--channels-last", action="store_true", help="torch.channels_last for the model and input")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="autocast dtype for the forward and loss (fp16 also uses GradScaler)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.batch < 1 or a.steps < 1:
        sys.exit("error: --batch and --steps must be at least 1")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    name = model_name(a.model)
    ctor, (c, h, w) = MODELS[name]
    torch.manual_seed(SEED)
    net = ctor()
    biases = 0 if a.no_conv_bias else add_conv_bias(net)
    dev = torch.device(a.device)
    net = net.to(dev)
    net.train()
    torch.manual_seed(0)
    x = torch.randn(a.batch, c, h, w).to(dev)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,)).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    low = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    scaler = torch.amp.GradScaler(a.device) if a.precision == "fp16" else None

    def step():
        with torch.autocast(a.device, dtype=low or torch.float32, enabled=low is not None):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss.item()

    loss = float("nan")
    for _ in range(a.warmup):
        loss = step()
    ms = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        ms.append(1000.0 * (time.perf_counter() - t0))
    median = statistics.median(ms)
    r = {
        "model": a.model,
        "engine": "pytorch-eager",
        "torch": torch.__version__,
        "device": a.device if a.device == "cpu" else torch.cuda.get_device_name(0),
        "precision": a.precision,
        "channels_last": a.channels_last,
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "steps": a.steps,
        "warmup": a.warmup,
        "median_ms": median,
        "mean_ms": statistics.fmean(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "images_per_s": a.batch / (median / 1000.0),
        "input": [c, h, w],
        "classes": 10,
        "conv_biases_added": biases,
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "final_loss": loss,
    }
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"{a.model}: {r['images_per_s']:.1f} img/s ({median:.1f} ms/step median, {r['mean_ms']:.1f} mean, "
            f"{r['min_ms']:.1f}-{r['max_ms']:.1f}) training at batch {a.batch} on {a.device} ({a.precision}) with {r['threads']} threads, "
            f"{a.steps} steps after {a.warmup} warm-up (PyTorch {torch.__version__} eager)"
        )


if __name__ == "__main__":
    main()
