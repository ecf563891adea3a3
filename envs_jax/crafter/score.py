"""The Crafter score, as Crafter's protocol defines it (danijar/crafter ``analysis/common.py``).

For one training run (one seed): the success rate of achievement ``i`` is ``s_i = 100 x`` the
fraction of *all* training episodes that ended within the step budget in which ``i`` was
unlocked at least once (``compute_success_rates``); the score is the geometric mean of
``1 + s_i`` over the 22 achievements, minus 1 (``compute_scores``: ``exp(mean(ln(1 + s))) - 1``,
in percent). Over seeds it is reported as mean and population standard deviation
(``np.nanstd``). A run with no finished episode has NaN rates and a NaN score.

This is not craftax's ``info["score"]``, which is the same geometric mean taken over *one*
episode's 0/100 achievements; the mean of that over episodes is a mean of per-episode geometric
means, much lower. numpy only: the score can be recomputed from ``episodes.jsonl`` anywhere.

``python -m envs_jax.crafter.score RUN_DIR [RUN_DIR ...] [--budget N]`` prints the score and
the 22 success rates of each seed found in the runs' ``episodes.jsonl`` files, then mean ± std.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .constants import ACHIEVEMENTS

EPISODES_FILE = "episodes.jsonl"


def success_rates(unlocked) -> np.ndarray:
    """float64 [22] in percent from ``unlocked`` [episodes, 22] (counts or flags, Crafter's
    achievement order): 100 x the fraction of episodes with a count >= 1. NaN without episodes."""
    table = np.asarray(unlocked, dtype=np.float64).reshape(-1, len(ACHIEVEMENTS))
    if not len(table):
        return np.full(len(ACHIEVEMENTS), np.nan)
    return 100.0 * (table >= 1).mean(axis=0)


def rates_from_totals(episodes_with, episodes) -> np.ndarray:
    """The same rates from totals: ``episodes_with`` [22], the number of episodes in which each
    achievement was unlocked, over ``episodes`` finished episodes (NaN when there are none)."""
    episodes_with = np.asarray(episodes_with, dtype=np.float64)
    if episodes_with.shape[-1] != len(ACHIEVEMENTS):
        raise ValueError(f"episodes_with has {episodes_with.shape[-1]} achievements, expected {len(ACHIEVEMENTS)}")
    episodes = np.asarray(episodes, dtype=np.float64)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(episodes > 0, 100.0 * episodes_with / np.maximum(episodes, 1), np.nan)


def crafter_score(rates) -> np.ndarray | float:
    """``exp(mean_i ln(1 + s_i)) - 1`` over the last axis of ``rates`` (percent, 0-100)."""
    rates = np.asarray(rates, dtype=np.float64)
    if np.any(rates[np.isfinite(rates)] < 0) or np.any(rates[np.isfinite(rates)] > 100):
        raise ValueError(f"success rates must be percentages in [0, 100], got {rates.min()}..{rates.max()}")
    with warnings.catch_warnings():  # a seed without episodes is NaN, as in Crafter's analysis
        warnings.simplefilter("ignore", category=RuntimeWarning)
        score = np.exp(np.nanmean(np.log1p(rates), axis=-1)) - 1.0
    return float(score) if score.ndim == 0 else score


def mean_std(scores) -> tuple[float, float]:
    """Mean and population standard deviation over seeds, NaN seeds left out (``np.nanstd``)."""
    scores = np.asarray(scores, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return float(np.nanmean(scores)), float(np.nanstd(scores))


def read_episodes(path: str | os.PathLike) -> list[dict]:
    """The complete lines of an ``episodes.jsonl`` file (a cut-off last line is ignored)."""
    records = []
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            if line.strip():
                records.append(json.loads(line))
    return records


def episode_table(records: list[dict], budget: float | None = None) -> dict[int, np.ndarray]:
    """Per seed (``record["seed"]``, 0 if absent): the [episodes, 22] achievement counts of the
    episodes that ended at an env step within ``budget`` (all of them when None)."""
    seeds: dict[int, list] = {}
    for r in records:
        if budget is not None and r["env_step"] > budget:
            continue
        seeds.setdefault(int(r.get("seed", 0)), []).append([r["achievements"][a] for a in ACHIEVEMENTS])
    return {k: np.asarray(v, np.float64).reshape(-1, len(ACHIEVEMENTS)) for k, v in sorted(seeds.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envs_jax.crafter.score",
                                     description="The Crafter score of training runs, from their episodes.jsonl.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or episodes.jsonl files)")
    parser.add_argument("--budget", type=float, default=None,
                        help="count only the episodes that ended within this many env steps per seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        path = Path(run) / EPISODES_FILE if Path(run).is_dir() else Path(run)
        if not path.is_file():
            print(f"error: {str(path)!r} does not exist; expected a run directory holding {EPISODES_FILE}",
                  file=sys.stderr)
            return 2
        for seed, table in episode_table(read_episodes(path), args.budget).items():
            rates = success_rates(table)
            rows.append({"run": str(run), "seed": seed, "episodes": len(table),
                         "score": crafter_score(rates), "success_rates": dict(zip(ACHIEVEMENTS, rates.tolist()))})
    mean, std = mean_std([r["score"] for r in rows]) if rows else (math.nan, math.nan)
    if args.json:
        print(json.dumps({"seeds": rows, "score_mean": mean, "score_std": std}))
        return 0
    for r in rows:
        print(f"{r['run']} seed {r['seed']}: {r['episodes']} episodes, Crafter score {r['score']:.2f} %")
    if rows:
        print(f"Crafter score over {len(rows)} seed(s): {mean:.2f} ± {std:.2f} %")
        rates = np.array([list(r["success_rates"].values()) for r in rows])
        for name, column in zip(ACHIEVEMENTS, rates.T):
            print(f"  {name:<20} {np.nanmean(column):6.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
