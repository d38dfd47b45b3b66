#!/usr/bin/env python3
"""Runs the comparison of docs/RESULTS.md and writes that file.

For each base recipe (default: recipes/results_mnist.yaml and
recipes/results_digits.yaml) and each seed, runs with the same data split and
the same total number of epochs:

  unpruned     `rlal train` for training.epochs + finetune.epochs (same held-out images)
  RLAL         `rlal prune` (SAC + environment model + soft alignment)
  w/o EE       `rlal prune --no-env-model`
  w/o EE + SR  `rlal prune --no-env-model --no-alignment`
  uniform L1   `rlal prune --policy uniform`
  random       `rlal prune --policy random`

and reports mean +- std of the final test accuracy (ONNX Runtime on the
written model) and of the achieved MACs ratio, the search cost, and the mean
episode reward per search epoch with and without the environment model.

Usage: .venv/bin/python tools/results.py [--seeds 0 1 2] [--recipes a.yaml ...]
       [--out docs/RESULTS.md] [--runs runs/results]
Needs target/release/rlal (cargo build --release). Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RLAL = os.path.join(ROOT, "target", "release", "rlal")

VARIANTS = [
    ("RLAL", []),
    ("w/o EE", ["--no-env-model"]),
    ("w/o EE + w/o SR", ["--no-env-model", "--no-alignment"]),
    ("uniform L1", ["--policy", "uniform"]),
    ("random policy", ["--policy", "random"]),
]


def load_recipe(path):
    # `rlal prune --show-recipe` gives the merged recipe as YAML (sections since 2026-12, docs/RECIPES.md),
    # which we read with a tiny reader to stay dependency-free: top-level scalars and the scalars and lists
    # of the sections, as "section.field" keys (lists as "[a, b]").
    out = subprocess.run([RLAL, "prune", "--recipe", path, "--show-recipe"], check=True, capture_output=True, text=True).stdout
    rec, section, last = {}, None, None
    for line in out.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if not body:
            continue
        if body.startswith("- "):
            if last is not None:
                items = rec[last].strip("[]")
                rec[last] = "[" + (items + ", " if items else "") + body[2:].strip() + "]"
            continue
        if ":" not in body:
            continue
        k, v = (x.strip() for x in body.split(":", 1))
        if indent == 0:
            section = k if not v else None
            key = k
        elif indent == 2 and section:
            key = f"{section}.{k}"
        else:
            last = None
            continue
        rec[key], last = v, (key if not v else None)
        if not v:
            rec[key] = "[]" if key != section else ""
    return rec


def train_recipe(rec, seed, out_onnx):
    # The `training:` section of the prune recipe, for joint + fine-tuning epochs, in an `rlal train` recipe.
    fields = ["batch-size", "lr", "min-lr", "schedule", "gamma", "lr-warmup-epochs", "momentum", "nesterov",
              "weight-decay", "label-smoothing", "threads", "workers", "scale", "mean", "std", "crop-pad", "hflip",
              "insert-bn"]
    lines = [f"model: {rec['model']}", f"data: {rec['data']}", f"holdout: {rec['search.reward-samples']}", f"output: {out_onnx}",
             "training:"]
    lines += [f"  {f}: {rec['training.' + f]}" for f in fields if rec.get("training." + f) not in (None, "", "null")]
    total = int(rec["training.epochs"]) + int(rec["finetune.epochs"])
    lines += [f"  epochs: {total}", f"  seed: {seed}", "  eval-every: 0"]
    return "\n".join(lines) + "\n"


def run(cmd, log):
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}; see {log}")
    return time.time() - t0


def ms(xs, pct=True):
    if not xs:
        return "-"
    m = statistics.mean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * m:.2f} ± {100 * s:.2f}" if pct else f"{m:.3f} ± {s:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=["recipes/results_mnist.yaml", "recipes/results_digits.yaml"])
    ap.add_argument("--out", default="docs/RESULTS.md")
    ap.add_argument("--runs", default="runs/results")
    ap.add_argument("--reuse", action="store_true", help="keep finished runs found in --runs (only run what is missing)")
    a = ap.parse_args()
    os.chdir(ROOT)
    if not os.path.exists(RLAL):
        sys.exit("build first: cargo build --release")
    sections = []
    t_all = time.time()
    for rpath in a.recipes:
        rec = load_recipe(rpath)
        name = os.path.splitext(os.path.basename(rpath))[0]
        res = {v: [] for v, _ in [("unpruned", None)] + VARIANTS}
        rewards = {"RLAL": [], "w/o EE": []}
        for seed in a.seeds:
            base = os.path.join(a.runs, name, f"seed{seed}")
            os.makedirs(base, exist_ok=True)
            # Unpruned baseline: same images, same total epochs.
            ty = os.path.join(base, "unpruned.yaml")
            onnx = os.path.join(base, "unpruned.onnx")
            with open(ty, "w") as f:
                f.write(train_recipe(rec, seed, onnx))
            if a.reuse and os.path.exists(onnx):
                secs = float("nan")
            else:
                secs = run([RLAL, "train", "--recipe", ty], os.path.join(base, "unpruned.log"))
            ev = subprocess.run([RLAL, "eval", onnx, "--data", rec["data"], "--engine", "ort", "--json", "--threads", rec.get("training.threads", "0"), "--mean", rec["training.mean"].strip("[]").replace(" ", ""), "--std", rec["training.std"].strip("[]").replace(" ", "")], check=True, capture_output=True, text=True).stdout
            ev = json.loads(ev)
            res["unpruned"].append({"accuracy": ev["accuracy"], "macs_ratio": 1.0, "seconds": secs})
            print(f"{name} seed {seed} unpruned: {100 * ev['accuracy']:.2f}% ({secs:.0f}s)", flush=True)
            for label, flags in VARIANTS:
                rd = os.path.join(base, label.replace("/", "").replace(" ", "_").replace("+", "").lower())
                if not (a.reuse and os.path.exists(os.path.join(rd, "report.json"))):
                    run([RLAL, "prune", "--recipe", rpath, "--seed", str(seed), "--run-dir", rd, "-q"] + flags, rd + ".log")
                rep = json.load(open(os.path.join(rd, "report.json")))
                secs = rep["total_seconds"]
                rows = [json.loads(l) for l in open(os.path.join(rd, "metrics.jsonl"))]
                res[label].append({"accuracy": rep["accuracy"], "macs_ratio": rep["macs_ratio"], "masked": rep["masked_accuracy"], "best_reward": rep["best_reward"],
                                   "seconds": secs, "train_s": rep["train_seconds"], "search_s": rep["search_seconds"], "overhead": rep["search_overhead"]})
                if label in rewards:
                    rewards[label].append([(r["epoch"], r["mean_reward"], r["best_reward"]) for r in rows if r.get("mean_reward") is not None])
                print(f"{name} seed {seed} {label}: {100 * rep['accuracy']:.2f}% MACs {rep['macs_ratio']:.3f} ({secs:.0f}s)", flush=True)
        s = [f"## {name}: `{rec['model']}` on `{rec['data']}`, {100 * float(rec.get('macs-ratio', 'nan')):.0f}% MACs",
             "",
             f"Recipe [`{rpath}`]({'../' + rpath}): {rec['training.epochs']} joint epochs (weights only {rec['search.weights-only-epochs']}, buffer {rec['search.buffer-epochs']}, "
             f"agent until {rec['search.agent-epochs']}) + {rec['finetune.epochs']} fine-tuning epochs; P = {rec['search.episodes-per-epoch']} episodes per search epoch, "
             f"{rec['search.reward-samples']} held-out reward images. Unpruned: `rlal train` for the same {int(rec['training.epochs']) + int(rec['finetune.epochs'])} epochs on the same training images. "
             f"Seeds {', '.join(map(str, a.seeds))}; accuracy = ONNX Runtime on the written model, test split.",
             "",
             "| method | test accuracy % (mean ± std) | MACs ratio | masked acc. before fine-tuning % | best reward % |",
             "|---|---|---|---|---|"]
        for label in ["unpruned"] + [v for v, _ in VARIANTS]:
            xs = res[label]
            s.append(f"| {label} | {ms([x['accuracy'] for x in xs])} | {ms([x['macs_ratio'] for x in xs], False)} | "
                     f"{ms([x['masked'] for x in xs]) if 'masked' in xs[0] else '-'} | {ms([x['best_reward'] for x in xs]) if 'best_reward' in xs[0] else '-'} |")
        rl = res["RLAL"]
        s += ["", "Wall-clock figures are not compared here (other jobs shared the 2 cores during these runs); "
              "the search cost is measured on a quiet machine in docs/BENCHMARKS.md.", ""]
        s += ["Mean episode reward per search epoch (mean over seeds; best-so-far in brackets):", "",
              "| epoch | RLAL | w/o EE |", "|---|---|---|"]
        epochs = sorted({e for runs in rewards.values() for r in runs for e, _, _ in r})
        for e in epochs:
            cells = []
            for label in ("RLAL", "w/o EE"):
                m = [mr for r in rewards[label] for ep, mr, _ in r if ep == e]
                b = [br for r in rewards[label] for ep, _, br in r if ep == e]
                cells.append(f"{100 * statistics.mean(m):.1f} [{100 * statistics.mean(b):.1f}]" if m else "-")
            s.append(f"| {e} | {cells[0]} | {cells[1]} |")
        sections.append("\n".join(s))
    head = [
        "# Results",
        "",
        f"Generated by `.venv/bin/python tools/results.py` on {datetime.date.today().isoformat()}, {platform.machine()} CPU "
        f"({os.cpu_count()} cores), in {(time.time() - t_all) / 60:.0f} min. Small offline data: these runs check that the "
        "method and its ablations behave sensibly on data anyone can reproduce; they are not the paper's CIFAR-10/ImageNet "
        "figures (recipes for those are in `recipes/`). Numbers are reported as measured, including where RLAL does not win.",
        "",
    ]
    text = "\n".join(head) + "\n" + "\n\n".join(sections) + "\n"
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
