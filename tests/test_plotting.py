"""Learning-curve plotting: curve summaries, atomic PNG output, the on-demand CLI."""

import os

import numpy as np
import pytest

from twosome_jax.metrics import RunLogger, read_metrics
from twosome_jax.plotting import curve, main, plot_learning_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(run_dir, rows):
    """rows: [(success_rate, mean_return)] per iteration, scalars or per-seed arrays."""
    with RunLogger(run_dir, total_steps=128 * len(rows), progress=False) as lg:
        for it, (sr, ret) in enumerate(rows, start=1):
            lg.log(it, it * 128, {"success_rate": sr, "mean_return": ret})
    return os.path.join(run_dir, "metrics.jsonl")


def _assert_png(path):
    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    leftovers = [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]
    assert leftovers == []


def test_curve_single_seed_skips_missing_and_smooths(tmp_path):
    path = _run(tmp_path, [(np.nan, 0.0), (0.0, 1.0), (1.0, 2.0), (0.5, 3.0)])
    recs = read_metrics(path)
    x, y, lo, hi = curve(recs, "success_rate")
    assert x.tolist() == [256, 384, 512] and y.tolist() == [0.0, 1.0, 0.5] and lo is None
    x, y, _, _ = curve(recs, "mean_return", smooth=2)
    assert y.tolist() == [0.0, 0.5, 1.5, 2.5]  # trailing window, no look-ahead


def test_curve_per_seed_mean_and_min_max_band(tmp_path):
    path = _run(tmp_path, [(np.array([np.nan, np.nan]), np.array([0.0, 1.0])),
                           (np.array([0.0, np.nan]), np.array([1.0, 3.0])),
                           (np.array([0.5, 1.0]), np.array([2.0, 2.0]))])
    recs = read_metrics(path)
    x, y, lo, hi = curve(recs, "success_rate")
    assert x.tolist() == [256, 384]  # the iteration with no finite seed is dropped
    assert y.tolist() == [0.0, 0.75] and lo.tolist() == [0.0, 0.5] and hi.tolist() == [0.0, 1.0]
    x, y, lo, hi = curve(recs, "mean_return")
    assert y.tolist() == [0.5, 2.0, 2.0] and lo.tolist() == [0.0, 1.0, 2.0] and hi.tolist() == [1.0, 3.0, 2.0]


def test_single_seed_vectors_have_no_band(tmp_path):
    path = _run(tmp_path, [(np.array([0.25]), np.array([1.0])), (np.array([0.5]), np.array([2.0]))])
    x, y, lo, hi = curve(read_metrics(path), "success_rate")
    assert y.tolist() == [0.25, 0.5] and lo is None and hi is None


def test_greedy_eval_overlay_is_a_curve(tmp_path):
    with RunLogger(tmp_path, total_steps=512, progress=False) as lg:
        for it in range(1, 5):
            extra = {"eval_success_greedy": np.array([1.0, 0.5])} if it % 2 == 0 else {}
            lg.log(it, it * 128, {"success_rate": 0.1 * it, **extra})
    x, y, lo, hi = curve(read_metrics(tmp_path / "metrics.jsonl"), "eval_success_greedy")
    assert x.tolist() == [256, 512] and y.tolist() == [0.75, 0.75] and lo.tolist() == [0.5, 0.5]
    plot_learning_curve(tmp_path, tmp_path / "c.png")
    _assert_png(tmp_path / "c.png")


def test_plot_writes_png_atomically_with_baselines(tmp_path):
    rng = np.random.default_rng(0)
    main_path = _run(tmp_path / "llm", [(rng.uniform(0, 1, 3), rng.normal(size=3)) for _ in range(20)])
    _run(tmp_path / "mlp", [(i / 20, i / 20) for i in range(20)])
    out = tmp_path / "plots" / "curve.png"
    assert plot_learning_curve(main_path, out, baselines={"ppo-mlp": tmp_path / "mlp"}) == str(out)
    _assert_png(out)
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"
    plot_learning_curve(main_path, out, smooth=5)  # overwrite in place
    _assert_png(out)


def test_plot_with_no_data_yet(tmp_path):
    with RunLogger(tmp_path, total_steps=128, progress=False):
        pass
    plot_learning_curve(tmp_path, tmp_path / "c.png")
    _assert_png(tmp_path / "c.png")


def test_cli_default_output_and_compare(tmp_path, capsys):
    _run(tmp_path / "a", [(0.1, 0.2), (0.3, 0.4)])
    _run(tmp_path / "b", [(0.2, 0.1), (0.5, 0.3)])
    assert main([str(tmp_path / "a"), "--compare", str(tmp_path / "b"), f"saycan={tmp_path / 'b'}"]) == 0
    out = tmp_path / "a" / "learning_curve.png"
    assert capsys.readouterr().out.strip() == str(out)
    _assert_png(out)


@pytest.mark.parametrize("argv, fragment", [
    (["{d}/missing"], "no metrics file at"),
    (["{d}/a", "--compare", "{d}/nope"], "no metrics file at"),
    (["{d}/a", "--smooth", "0"], "--smooth 0 is invalid"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, fragment):
    _run(tmp_path / "a", [(0.1, 0.2)])
    with pytest.raises(SystemExit) as e:
        main([a.format(d=tmp_path) for a in argv])
    assert e.value.code == 2
    assert fragment in capsys.readouterr().err.strip().splitlines()[-1]
