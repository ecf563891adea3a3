"""Before/after NLP benchmarks of a trained TWOSOME run: does RL cost the model its language?

    .venv/bin/python scripts/nlp_retention.py runs/results/food_preparation/twosome

runs ``python -m twosome_jax.nlp_eval --adapter RUN_DIR --paired --json`` on ARC-Easy,
ARC-Challenge, PIQA and HellaSwag (the first ``--limit`` items, 300 by default) and on MMLU in
both forms (the first ``--mmlu-limit`` questions of each of the 57 subjects, 5 by default):
the same items with the adapters off (before) and on (after), so the difference's standard error
is the paired one. Writes ``docs/results/nlp_retention_<run task>.md`` (``scripts/results.py``
puts it into docs/RESULTS.md after the generalisation tables) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUPS = (("arc_easy,arc_challenge,piqa,hellaswag", "limit"), ("mmlu,mmlu_cloze", "mmlu_limit"))


def pct(value, stderr) -> str:
    return f"{100 * value:.1f} ± {100 * stderr:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--limit", type=int, default=300, help="items per task (ARC, PIQA, HellaSwag)")
    parser.add_argument("--mmlu-limit", type=int, default=5, help="questions per MMLU subject")
    args = parser.parse_args(argv)

    from twosome_jax.run import RunError, load_run_config

    try:
        cfg = load_run_config(args.run_dir)
    except RunError as e:
        parser.error(str(e))
    results = {}
    for tasks, limit_key in GROUPS:
        limit = getattr(args, limit_key)
        cmd = [sys.executable, "-m", "twosome_jax.nlp_eval", "--adapter", str(args.run_dir), "--paired",
               "--tasks", tasks, "--limit", str(limit), "--json", "--no-progress"]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            return done.returncode
        out = json.loads(done.stdout)
        for name in out["results"]:
            results[name] = {key: out[key][name] for key in ("before", "results", "difference")}
        source = os.path.relpath(out["adapter_from"], REPO)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    lines = [f"### Before and after TWOSOME training on {cfg.task}", "",
             f"`.venv/bin/python scripts/nlp_retention.py {args.run_dir} --limit {args.limit} --mmlu-limit "
             f"{args.mmlu_limit}` ({date.today().isoformat()}, commit {commit}; adapters from {source}). Before: "
             f"the same model with the adapters off. Accuracies in percent ± standard error; the difference is "
             f"taken item by item on the same items, so its standard error is the paired one.", "",
             "| task | items | metric | before | after | after - before |", "| --- | ---: | --- | ---: | ---: | ---: |"]
    for name, r in results.items():
        metrics = ("acc",) if name == "mmlu" else ("acc", "acc_norm")  # one-letter choices: acc_norm = acc
        for m in metrics:
            before, after, diff = (r[k][m] for k in ("before", "results", "difference"))
            errs = [r[k][m + "_stderr"] for k in ("before", "results", "difference")]
            lines.append(f"| {name} | {r['results']['n']} | {m} | {pct(before, errs[0])} | {pct(after, errs[1])} | "
                         f"{100 * diff:+.1f} ± {100 * errs[2]:.1f} |")
    text = "\n".join(lines) + "\n"
    (REPO / "docs" / "results" / f"nlp_retention_{cfg.task}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
