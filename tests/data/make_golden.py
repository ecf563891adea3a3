"""Derive the test data under tests/data/ from the shared reference data (mechanically).

Sources (see tests/data/README.md):

* ../shared/golden/overcooked_{tomato_salad,lettuce_tomato_salad}.jsonl and
  ../shared/golden/virtualhome_{food_preparation,entertainment}.jsonl, recorded from the reference
  implementation github.com/WeihaoTan/TWOSOME at commit
  969456668ca312742fa2d79381414cb2872adaa7;
* ../shared/golden/virtualhome_{cheese,washing_plate,laundry}.jsonl, the food-preparation episodes
  with the text of the unseen-task variants of github.com/morning9393/ADRL at commit
  5ec1aa5450d150906455056c2a6718fcaeb2d12b;
* ../shared/spec/vh_{food_preparation,entertainment}_fsm.json, the minimal state machines of the
  reference VirtualHome simulator (every graph state reachable from reset under all actions).

Overcooked episodes keep task, task_index, episode, policy, success, primitive_steps, the steps'
obs / prompt / actions / action / action_name / reward / done / macro_action_steps / prims /
episode_info (last step), and final obs / prompt / actions; full_state, holding (debug fields),
env_id, recipe, epsilon and seed are dropped. VirtualHome episodes keep task, variant (the
unseen-task variants only), episode, policy, success, the steps' obs / prompt / actions /
action_ids / action / env_action / reward / done / succeed / episode_info (last step), and final
obs / prompt / actions / action_ids; choice (the position of action in action_ids), env_id,
epsilon and seed are dropped. The state machines are copied whole. Output is gzip with mtime 0,
so rerunning the script reproduces the committed bytes.

Usage: python tests/data/make_golden.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (file stem, episode keys, step keys, final keys); absent optional keys are skipped
OVERCOOKED = (("task", "task_index", "episode", "policy", "success", "primitive_steps"),
              ("obs", "prompt", "actions", "action", "action_name", "reward", "done",
               "macro_action_steps", "prims", "episode_info"),
              ("obs", "prompt", "actions"))
VIRTUALHOME = (("task", "variant", "episode", "policy", "success"),
               ("obs", "prompt", "actions", "action_ids", "action", "env_action", "reward", "done",
                "succeed", "episode_info"),
               ("obs", "prompt", "actions", "action_ids"))
GOLDEN = {
    "overcooked_tomato_salad": OVERCOOKED,
    "overcooked_lettuce_tomato_salad": OVERCOOKED,
    "virtualhome_food_preparation": VIRTUALHOME,
    "virtualhome_entertainment": VIRTUALHOME,
    "virtualhome_cheese": VIRTUALHOME,
    "virtualhome_washing_plate": VIRTUALHOME,
    "virtualhome_laundry": VIRTUALHOME,
}
FSMS = ("vh_food_preparation_fsm", "vh_entertainment_fsm")


def write_gzip(dst: Path, text: str) -> None:
    with open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.encode())


def convert_episodes(src: Path, dst: Path, keys) -> int:
    ep_keys, step_keys, final_keys = keys
    out = io.StringIO()
    n = 0
    for line in src.read_text().splitlines():
        ep = json.loads(line)
        small = {k: ep[k] for k in ep_keys if k in ep}
        small["steps"] = [{k: s[k] for k in step_keys if k in s} for s in ep["steps"]]
        small["final"] = {k: ep["final"][k] for k in final_keys}
        out.write(json.dumps(small, separators=(",", ":")) + "\n")
        n += 1
    write_gzip(dst, out.getvalue())
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=HERE.parents[1] / ".." / "shared")
    args = ap.parse_args()
    for stem, keys in GOLDEN.items():
        dst = HERE / f"{stem}.jsonl.gz"
        n = convert_episodes(args.shared / "golden" / f"{stem}.jsonl", dst, keys)
        print(f"{dst.name}: {n} episodes, {dst.stat().st_size} bytes")
    for stem in FSMS:
        dst = HERE / f"{stem}.json.gz"
        table = json.loads((args.shared / "spec" / f"{stem}.json").read_text())
        write_gzip(dst, json.dumps(table, separators=(",", ":")))
        print(f"{dst.name}: {len(table['obs'])} states, {dst.stat().st_size} bytes")


if __name__ == "__main__":
    main()
