#!/usr/bin/env python3
"""torchvision's DataLoader on the folder `rlal bench data` reads, with the same
transforms (train: RandomResizedCrop(224, scale=(0.08, 1)), RandomHorizontalFlip;
eval: Resize(256), CenterCrop(224); then ToTensor, Normalize) and batch; one JSON
line per worker count, as `rlal bench data --json`.

    .venv-ref/bin/python tools/bench_data_torch.py --dir runs/bench-data --workers 1,2
"""
import argparse
import json
import time

import torch
import torchvision
from torchvision import transforms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="runs/bench-data")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--pipeline", choices=["train", "eval"], default="train")
    a = ap.parse_args()
    torch.set_num_threads(1)
    norm = [transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    if a.pipeline == "train":
        tf = transforms.Compose([transforms.RandomResizedCrop(a.size, scale=(0.08, 1.0)),
                                 transforms.RandomHorizontalFlip()] + norm)
    else:
        tf = transforms.Compose([transforms.Resize(round(a.size / 0.875)),
                                 transforms.CenterCrop(a.size)] + norm)
    ds = torchvision.datasets.ImageFolder(f"{a.dir}/train", tf)
    for w in [int(x) for x in a.workers.split(",")]:
        dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=w,
                                         prefetch_factor=2 if w > 0 else None,
                                         persistent_workers=False)
        it = iter(dl)
        next(it)  # starts the workers (untimed, as rlal's first batch)
        t0 = time.perf_counter()
        n = 0
        for _ in range(a.batches):
            x, _ = next(it)
            n += x.shape[0]
        s = time.perf_counter() - t0
        print(json.dumps({"engine": "torchvision", "pipeline": a.pipeline, "workers": w, "batch": a.batch, "images": n,
                          "seconds": s, "images_per_s": n / s}), flush=True)
        del it


if __name__ == "__main__":
    main()
