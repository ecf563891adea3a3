"""Markdown tables from pytest-benchmark JSON files (scoring ratios measured in the same run).

    python benchmarks/report.py RESULT.json [MORE.json ...]
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict


def _cases(paths):
    machine, out = None, []
    for p in paths:
        data = json.load(open(p))
        machine = machine or data.get("machine_info", {})
        for b in data["benchmarks"]:
            out.append(b)
    return machine, out


def scoring_table(benches):
    rows = defaultdict(dict)
    for b in benches:
        m = re.match(r"test_scoring\[(\w+)-(fwd|fwdbwd)-(\w+)-A(\d)-B(\d+)\]", b["name"])
        if m:
            impl, pas, model, A, B = m.groups()
            rows[(model, int(A), int(B), pas)][impl] = b
    if not rows:
        return ""
    lines = ["| case | naive ms | padded ms | packed ms | naive/packed | padded/packed | packed GFLOP | "
             "packed GFLOP/s | packed frac. of matmul | naive frac. |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {"tiny": 0, "smollm2": 1}
    for key in sorted(rows, key=lambda k: (order.get(k[0], 9), k[1], k[2], k[3])):
        r = rows[key]
        t = {k: v["stats"]["min"] * 1e3 for k, v in r.items()}
        fmt = lambda k: f"{t[k]:.1f}" if k in t else "skipped"
        ratio = lambda a, b: f"{t[a] / t[b]:.2f}x" if a in t and b in t else "-"
        pk = r.get("packed", {}).get("extra_info", {})
        nv = r.get("naive", {}).get("extra_info", {})
        model, A, B, pas = key
        lines.append(
            f"| {pas}-{model}-A{A}-B{B} | {fmt('naive')} | {fmt('padded')} | {fmt('packed')} | "
            f"{ratio('naive', 'packed')} | {ratio('padded', 'packed')} | {pk.get('flops', 0) / 1e9:.2f} | "
            f"{pk.get('achieved_gflops_best', '-')} | {pk.get('fraction_of_matmul_rate', '-')} | "
            f"{nv.get('fraction_of_matmul_rate', '-')} |")
    rate = next((b["extra_info"]["matmul_rate_gflops"] for b in benches if "matmul_rate_gflops" in b["extra_info"]), None)
    return "\n".join(lines) + f"\n\nMeasured f32 matmul rate (2048^3, same run): {rate} GFLOP/s\n"


def env_table(benches):
    """One row per case, with its speed-up over plain vmap of the same task and N (same run)."""
    envs = [b for b in benches if b["name"].startswith("test_env[")]
    vmap = {(b["name"].split("-N")[0], b["extra_info"]["num_envs"]): b["stats"]["min"]
            for b in envs if b["name"].endswith("-vmap]")}
    lines = ["| case | best s/call | macro steps per call | macro steps/s (best) | (mean) | x vmap |",
             "|---|---:|---:|---:|---:|---:|"]
    for b in envs:
        e = b["extra_info"]
        base = vmap.get((b["name"].split("-N")[0], e["num_envs"]))
        ratio = f"{base / b['stats']['min']:.2f}" if base else "-"
        lines.append(f"| {b['name']} | {b['stats']['min']:.4f} | {e['macro_steps']} | "
                     f"{e['macro_steps_per_s']:,} | {e['macro_steps_per_s_mean']:,} | {ratio} |")
    return "\n".join(lines) + "\n" if envs else ""


def train_table(benches):
    lines = ["| case | best s/iteration | env steps/s | s per env step | policy steps | rounds |",
             "|---|---:|---:|---:|---:|---:|"]
    n = 0
    for b in benches:
        if b["name"].startswith("test_train["):
            e = b["extra_info"]
            lines.append(f"| {b['name']} | {b['stats']['min']:.2f} | {e['env_steps_per_s']} | "
                         f"{e['seconds_per_env_step']} | {e.get('policy_steps')} | {b['stats']['rounds']} |")
            n += 1
    return "\n".join(lines) + "\n" if n else ""


def main():
    machine, benches = _cases(sys.argv[1:])
    keys = ("node", "cpu_count", "jax", "jax_backend", "date_utc", "date_utc_when_saved", "loadavg_when_saved", "loadavg_at_start")
    cpu = machine.get("cpu", {}).get("brand_raw", "")
    print("Machine: " + cpu + "; " + ", ".join(f"{k}={machine.get(k)}" for k in keys) + "\n")
    for table in (scoring_table(benches), env_table(benches), train_table(benches)):
        if table:
            print(table)


if __name__ == "__main__":
    main()
