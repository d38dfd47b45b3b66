#!/usr/bin/env python3
"""Markdown tables from `rlal bench agent` outputs (agent_bench.json), for docs/BENCHMARKS.md.

Usage: python3 tools/bench_agent_table.py runs/bench-agent-default/agent_bench.json [more.json ...]
Standard library only.
"""
import json
import statistics
import sys


def pts(x):
    return "-" if x is None else f"{100 * x:.2f}"


def table(path):
    d = json.load(open(path))
    a = d["agent"]
    print(f"`{path}`: {d['model']} ({d['layers']} layers) at {100 * d['budget_ratio']:.0f}% MACs, "
          f"{len(d['optimum'])} seeds, {d['epochs']} epochs (warm-up {d['warmup_epochs']}, buffer {d['buffer_epochs']}, "
          f"agent until {d['agent_epochs']}), P = {d['episodes_per_epoch']}, selection {d['selection']} (k = {d['incumbents']}); "
          f"agent: gamma {a['gamma']}, reward-norm {a['reward-norm']}, embed-init {a['embed-init']}, action-map {a['action-map']}, "
          f"credit {a['credit']}, actor-lr {a['actor-lr']}, alpha {a['alpha']}, {a['updates-per-epoch']} updates/epoch; "
          f"surface {d['surface'].get('family', 'separable')} (noise {d['surface'].get('noise', 'independent')}, "
          f"feedback {d['surface'].get('alignment_feedback', False)}), drift {d['surface']['drift']}, {d['surface']['reward_samples']} reward images, uniform drop {d['surface']['uniform_drop']}; "
          f"{d['seconds']:.0f} s in all.")
    opt = [o["value"] for o in d["optimum"]]
    print(f"Optimum (final surface): median {100 * statistics.median(opt):.2f}%, exact on "
          f"{sum(o['exact'] for o in d['optimum'])}/{len(opt)} seeds (else the best found: {', '.join(o.get('source', 'dp') for o in d['optimum'])}); uniform pruning median {100 * statistics.median(d['uniform_value']):.2f}%.\n")
    print("| method | median final regret (points) | per seed | mean episode reward, first / last 10 agent epochs (%) | greedy policy regret, last agent epoch (median) | final re-score changed the choice |")
    print("|---|---|---|---|---|---|")
    for s in d["summaries"]:
        per = " ".join(f"{100 * x:.2f}" for x in s["final_regret"])
        print(f"| {s['method']} | **{100 * s['median_final_regret']:.2f}** | {per} | {pts(s['mean_reward_first_agent_epochs'])} / {pts(s['mean_reward_last_agent_epochs'])} | {pts(s['median_greedy_regret'])} | {s['final_choice_changed']}/{len(s['final_regret'])} |")
    print()


for p in sys.argv[1:]:
    table(p)
