"""Derive tests/data/overcooked_*.jsonl.gz from the shared golden traces (mechanically).

Source: ../shared/golden/overcooked_{tomato_salad,lettuce_tomato_salad}.jsonl, recorded from
the reference implementation github.com/WeihaoTan/TWOSOME at commit
969456668ca312742fa2d79381414cb2872adaa7 (see tests/data/README.md).

Kept per episode: task, task_index, episode, policy, success, primitive_steps, the steps'
obs / prompt / actions / action / action_name / reward / done / macro_action_steps / prims /
episode_info (last step), and final obs / prompt / actions. Dropped: full_state, holding
(debug fields), env_id, recipe, epsilon, seed. Output is gzip with mtime 0, so rerunning the
script reproduces the committed bytes.

Usage: python tests/data/make_golden.py [--src ../shared/golden]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = ("tomato_salad", "lettuce_tomato_salad")
EP_KEYS = ("task", "task_index", "episode", "policy", "success", "primitive_steps")
STEP_KEYS = ("obs", "prompt", "actions", "action", "action_name", "reward", "done",
             "macro_action_steps", "prims", "episode_info")
FINAL_KEYS = ("obs", "prompt", "actions")


def convert(src: Path, dst: Path) -> int:
    out = io.StringIO()
    n = 0
    for line in src.read_text().splitlines():
        ep = json.loads(line)
        small = {k: ep[k] for k in EP_KEYS}
        small["steps"] = [{k: s[k] for k in STEP_KEYS if k in s} for s in ep["steps"]]
        small["final"] = {k: ep["final"][k] for k in FINAL_KEYS}
        out.write(json.dumps(small, separators=(",", ":")) + "\n")
        n += 1
    with open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(out.getvalue().encode())
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=HERE.parents[1] / ".." / "shared" / "golden")
    args = ap.parse_args()
    for task in TASKS:
        dst = HERE / f"overcooked_{task}.jsonl.gz"
        n = convert(args.src / f"overcooked_{task}.jsonl", dst)
        print(f"{dst.name}: {n} episodes, {dst.stat().st_size} bytes")


if __name__ == "__main__":
    main()
