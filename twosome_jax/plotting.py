"""Learning-curve plots from ``metrics.jsonl`` files: at the end of a run and on demand.

    python -m twosome_jax.plotting RUN_DIR [--compare [LABEL=]OTHER_RUN ...] [--out PNG]

One panel per metric (default: success rate and mean return) against env steps, with the greedy
evaluation (``eval_success_greedy`` / ``eval_return_greedy``) dashed and the sampled one dotted
where a run logged them. A
multi-seed run (records with ``KEY_per_seed`` lists of K > 1 values, see ``twosome_jax.metrics``)
is drawn as the mean over seeds with a min-max band. The figure is drawn with matplotlib's Agg
canvas directly (no pyplot, no global backend switch, so importing this from a notebook or a
training process is harmless) and written atomically, so a viewer or a concurrent ``--compare``
never reads half a PNG.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .metrics import METRICS_FILE, PER_SEED_SUFFIX, read_metrics

DEFAULT_KEYS = ("success_rate", "mean_return")
_TITLES = {"success_rate": "success rate", "mean_return": "mean episodic return"}
# Drawn dashed in a panel when a run logged them (``python -m twosome_jax.train --set eval_every=N``):
# the greedy policy is what the paper's "success rate reaches 0.95" refers to.
# Sampled evaluation (dotted) is over many episodes, so it is far smoother than the training curve.
# Per panel: (metric, line style, label suffix).
OVERLAYS = {"success_rate": (("eval_success_greedy", "--", "greedy eval"), ("eval_success_sampled", ":", "sampled eval")),
            "mean_return": (("eval_return_greedy", "--", "greedy eval"), ("eval_return_sampled", ":", "sampled eval"))}


def resolve_metrics_path(path: str | os.PathLike) -> str:
    """A run directory or a metrics file -> the metrics file (one-line FileNotFoundError)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics file at {path!r}")
    return path


def _label_of(metrics_path: str) -> str:
    d = os.path.dirname(os.path.abspath(metrics_path))
    return os.path.basename(d) or d


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last ``window`` points (no look-ahead)."""
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    n = np.minimum(np.arange(1, len(y) + 1), window)
    return (c[1:] - c[np.arange(len(y)) + 1 - n]) / n


def curve(records: list[dict], key: str, smooth: int = 1):
    """(x, mean, low, high) of ``key`` over env steps; low/high are None for a single seed.

    Records without a finite value are skipped (e.g. iterations in which no episode ended).
    """
    per_seed = key + PER_SEED_SUFFIX
    if any(len(r.get(per_seed) or ()) > 1 for r in records):
        rows = [(r["env_steps"], [np.nan if v is None else v for v in r[per_seed]])
                for r in records if per_seed in r]
        x = np.array([s for s, _ in rows], dtype=np.float64)
        ys = np.array([v for _, v in rows], dtype=np.float64)  # [T, K]
        keep = np.isfinite(ys).any(axis=1)
        x, ys = x[keep], ys[keep]
        # smooth each seed over its own finite points, then summarise across seeds
        cols = []
        for k in range(ys.shape[1]):
            col = ys[:, k].copy()
            ok = np.isfinite(col)
            col[ok] = _smooth(col[ok], smooth)
            cols.append(col)
        ys = np.stack(cols, axis=1) if cols else ys
        with np.errstate(all="ignore"):
            return x, np.nanmean(ys, axis=1), np.nanmin(ys, axis=1), np.nanmax(ys, axis=1)
    pts = [(r["env_steps"], r[key]) for r in records if isinstance(r.get(key), (int, float))
           and np.isfinite(r[key])]
    x = np.array([p[0] for p in pts], dtype=np.float64)
    y = np.array([p[1] for p in pts], dtype=np.float64)
    return x, _smooth(y, smooth), None, None


def plot_learning_curve(metrics_jsonl_path: str | os.PathLike, png_path: str | os.PathLike, *,
                        baselines: dict[str, str | os.PathLike] | None = None,
                        keys: tuple[str, ...] = DEFAULT_KEYS, smooth: int = 1,
                        title: str | None = None, label: str | None = None,
                        marks: dict[str, float] | None = None, log_x: bool = False,
                        x_label: str = "env steps (macro actions, per seed)") -> str:
    """Draw ``keys`` against env steps for a run and optional ``baselines`` {label: run or file}.

    ``smooth``: trailing moving-average window in iterations (1 = raw). ``marks``: {label: env
    step} drawn as vertical lines (e.g. a budget). ``log_x``: a logarithmic env-step axis, for
    runs whose budgets differ by orders of magnitude. ``x_label``: what an env step is (TWOSOME's
    environments count macro actions). Returns ``png_path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    main = resolve_metrics_path(metrics_jsonl_path)
    runs = [(label or _label_of(main), read_metrics(main))]
    for name, p in (baselines or {}).items():
        runs.append((name, read_metrics(resolve_metrics_path(p))))

    fig = Figure(figsize=(6.4 * len(keys), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        drawn = False
        for i, (name, records) in enumerate(runs):
            for extra, style, suffix in ((None, "-", None), *OVERLAYS.get(key, ())):
                x, y, lo, hi = curve(records, extra or key, smooth if extra is None else 1)
                if len(x) == 0:
                    continue
                line_label = name if extra is None else f"{name}, {suffix}"
                if lo is not None:
                    line_label += f" (mean of {_num_seeds(records, extra or key)} seeds, min-max)"
                    ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.2 if extra is None else 0.1, lw=0)
                ax.plot(x, y, style, color=f"C{i}", lw=1.6, label=line_label)
                drawn = True
        for name, at in (marks or {}).items():
            ax.axvline(at, color="0.35", ls=":", lw=1.4, label=name)
        if log_x:
            ax.set_xscale("log")
        if key == "success_rate":
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(x_label)
        ax.set_ylabel(_TITLES.get(key, key) + (f" (moving avg {smooth})" if smooth > 1 else ""))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title if title is not None else runs[0][0])
    return _save_atomic(fig, os.fspath(png_path))


def _num_seeds(records: list[dict], key: str) -> int:
    return max(len(r[key + PER_SEED_SUFFIX]) for r in records if key + PER_SEED_SUFFIX in r)


def _save_atomic(fig, png_path: str) -> str:
    from twosome_jax.atomic import write_atomic

    write_atomic(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return png_path


def _compare_arg(s: str) -> tuple[str, str]:
    """``LABEL=PATH`` or ``PATH`` (label: the run directory's name)."""
    name, path = s.split("=", 1) if "=" in s and not os.path.exists(s) else (None, s)
    return name or _label_of(resolve_metrics_path(path)), path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m twosome_jax.plotting",
        description="Draw the learning curve (success rate and return vs env steps) of a run.")
    p.add_argument("run", metavar="RUN_DIR", help="run directory (or its metrics.jsonl)")
    p.add_argument("--compare", metavar="[LABEL=]RUN", nargs="+", action="extend", default=[],
                   help="other runs to draw on the same axes (e.g. ppo-mlp=runs/mlp)")
    p.add_argument("--out", metavar="PNG", help="output image (default: RUN_DIR/learning_curve.png)")
    p.add_argument("--keys", metavar="KEY", nargs="+", default=list(DEFAULT_KEYS),
                   help="metrics to draw, one panel each (default: %(default)s)")
    p.add_argument("--smooth", metavar="N", type=int, default=1,
                   help="trailing moving average over N iterations (default: 1 = raw)")
    p.add_argument("--title", help="figure title (default: the run directory's name)")
    args = p.parse_args(argv)
    if args.smooth < 1:
        p.error(f"--smooth {args.smooth} is invalid; accepted: an integer >= 1")
    try:
        main_path = resolve_metrics_path(args.run)
        baselines = dict(_compare_arg(c) for c in args.compare)
        if len(baselines) != len(args.compare):
            p.error("--compare labels must be distinct (use LABEL=RUN)")
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(main_path)), "learning_curve.png")
        plot_learning_curve(main_path, out, baselines=baselines, keys=tuple(args.keys),
                            smooth=args.smooth, title=args.title)
    except FileNotFoundError as e:
        p.error(str(e))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
