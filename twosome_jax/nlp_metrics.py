"""Accuracy, length-normalised accuracy and their standard errors, as lm-evaluation-harness
computes them (``lm_eval/api/task.py`` ``process_results``, ``lm_eval/api/metrics.py``).

Per item, with ``ll[k]`` the summed log-likelihood of choice ``k``'s continuation tokens:

* ``acc``: ``argmax(ll) == gold``;
* ``acc_norm``: ``argmax(ll / len(choice)) == gold``, the length in characters of the choice
  string (without the delimiter) - lighteval's and the SmolLM2 model card's "char-normalised"
  accuracy. Ties go to the first choice (``np.argmax``).

A task's figure is the mean over its items, with standard error ``sample std (n - 1) /
sqrt(n)`` (``mean_stderr``; undefined, ``None``, for one item). A group of subtasks (MMLU's
subjects, then its four categories) is the mean weighted by size, with lm-eval's pooled
standard error ``sqrt(sum((n_i - 1) * se_i^2 * n_i) / (N - k) / N)`` (``pooled_sample_stderr``).
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("acc", "acc_norm")


def item_metrics(logliks, choices, gold: int) -> dict[str, float]:
    """acc and acc_norm of one item from its choices' log-likelihoods."""
    ll = np.asarray(logliks, np.float64)
    lengths = np.array([float(len(c)) for c in choices])
    return {"acc": float(np.argmax(ll) == gold), "acc_norm": float(np.argmax(ll / lengths) == gold)}


def mean_stderr(values) -> float | None:
    """Standard error of the mean with the sample (n - 1) standard deviation; None for n < 2."""
    x = np.asarray(values, np.float64)
    if x.size < 2:
        return None
    return float(np.std(x, ddof=1) / math.sqrt(x.size))


def summarize(per_item: list[dict[str, float]]) -> dict:
    """{acc, acc_norm, acc_stderr, acc_norm_stderr, n} of one task or subtask."""
    out = {}
    for m in METRICS:
        values = [r[m] for r in per_item]
        out[m] = float(np.mean(values)) if values else None
        out[f"{m}_stderr"] = mean_stderr(values)
    out["n"] = len(per_item)
    return out


def pool(summaries: list[dict]) -> dict:
    """The size-weighted group of subtask summaries, with lm-eval's pooled standard error."""
    sizes = [s["n"] for s in summaries]
    total, k = sum(sizes), len(sizes)
    out = {}
    for m in METRICS:
        out[m] = sum(s[m] * s["n"] for s in summaries) / total
        errs = [s[f"{m}_stderr"] for s in summaries]
        if any(e is None for e in errs) or total == k:
            out[f"{m}_stderr"] = None
        else:
            var = sum((n - 1) * e ** 2 * n for n, e in zip(sizes, errs)) / (total - k)
            out[f"{m}_stderr"] = float(math.sqrt(var / total))
    out["n"] = total
    return out


def aggregate(per_item: list[dict[str, float]], subtasks: list[str | None],
              categories: dict[str, str] | None = None) -> dict:
    """A task's summary from its items' metrics. Items with a subtask are summarised per
    subtask, pooled per category (``categories[subtask]``), and the categories pooled, as lm-eval
    aggregates MMLU's subjects into its four categories and those into ``mmlu``."""
    if all(s is None for s in subtasks):
        return summarize(per_item)
    by_subtask: dict[str, list] = {}
    for r, s in zip(per_item, subtasks, strict=True):
        by_subtask.setdefault(s, []).append(r)
    by_category: dict[str, list] = {}
    for s, rows in by_subtask.items():
        by_category.setdefault(categories[s], []).append(summarize(rows))
    return pool([pool(group) for group in by_category.values()])
