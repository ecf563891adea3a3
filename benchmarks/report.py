"""Markdown tables from pytest-benchmark JSON files (scoring ratios measured in the same run).

    python benchmarks/report.py RESULT.json [MORE.json ...]

:func:`provenance` is what the stand-alone scripts (``env_stages.py``, ``profile_iteration.py``)
write into their JSON so that every result file names its commit and machine, as
pytest-benchmark's ``commit_info`` and ``machine_info`` do for the suites.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance() -> dict:
    """Date, commit (and whether the working tree differed from it) and machine of a measurement."""
    cpu, mem_gb = platform.processor(), None
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
        mem = Path("/proc/meminfo").read_text().splitlines()
        kb = next(int(ln.split()[1]) for ln in mem if ln.startswith("MemTotal:"))
        mem_gb = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "machine": {"cpu": cpu, "cpu_count": os.cpu_count(), "mem_total_gib": mem_gb,
                        "loadavg": list(os.getloadavg())}}


def _cases(paths):
    machine, commits, out = None, [], []
    for p in paths:
        data = json.load(open(p))
        machine = machine or data.get("machine_info", {})
        c = data.get("commit_info", {})
        commits.append(f"{p}: {c.get('id', '?')[:7]}" + (" (+ uncommitted changes)" if c.get("dirty") else ""))
        for b in data["benchmarks"]:
            out.append(b)
    return machine, commits, out


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
    machine, commits, benches = _cases(sys.argv[1:])
    keys = ("node", "cpu_count", "jax", "jax_backend", "date_utc", "date_utc_when_saved", "loadavg_when_saved", "loadavg_at_start")
    cpu = machine.get("cpu", {}).get("brand_raw", "")
    print("Machine: " + cpu + "; " + ", ".join(f"{k}={machine.get(k)}" for k in keys))
    print("Commit: " + "; ".join(commits) + "\n")
    for table in (scoring_table(benches), env_table(benches), train_table(benches)):
        if table:
            print(table)


if __name__ == "__main__":
    main()
