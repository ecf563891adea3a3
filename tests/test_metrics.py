"""RunLogger: JSONL records, per-seed values, resume truncation, TensorBoard scalars."""

import json

import numpy as np
import pytest
from tensorboardX.proto import event_pb2
from tb_events import tb_events, tb_histograms, tb_scalars, tb_texts

from twosome_jax.metrics import METRICS_FILE, RunLogger, read_metrics


def _log_iterations(run_dir, iterations, **kw):
    with RunLogger(run_dir, total_steps=10 * 128, progress=False, **kw) as lg:
        for it in iterations:
            lg.log(it, it * 128, {"mean_return": 0.1 * it, "success_rate": it / 10})


def test_records_scalars_and_per_seed(tmp_path):
    with RunLogger(tmp_path, total_steps=512, progress=False) as lg:
        rec = lg.log(1, 128, {"mean_return": np.array([0.5, 1.5], np.float32),
                              "success_rate": np.array([np.nan, 1.0]),
                              "approx_kl": np.float32(0.25), "episodes": 3, "kl_stop": True})
    assert rec["mean_return"] == 1.0 and rec["mean_return_per_seed"] == [0.5, 1.5]
    assert rec["success_rate"] == 1.0 and rec["success_rate_per_seed"] == [None, 1.0]  # NaN -> null
    assert rec["approx_kl"] == 0.25 and rec["episodes"] == 3 and rec["kl_stop"] is True
    assert rec["steps_per_second"] > 0
    text = (tmp_path / METRICS_FILE).read_text()
    assert text.endswith("\n") and "NaN" not in text
    assert json.loads(text) == rec == read_metrics(tmp_path / METRICS_FILE)[0]
    tb = tb_scalars(tmp_path)
    assert tb["mean_return"] == [(128, 1.0)]
    assert tb["mean_return/seed_1"] == [(128, 1.5)]
    assert "success_rate/seed_0" not in tb  # non-finite values are not written
    assert tb["kl_stop"] == [(128, 1.0)]


def test_summary_scalars_counts_and_texts(tmp_path):
    """A stretch's summary: scalars (None and NaN skipped), a categorical histogram with one
    bin per category and a table naming them, and markdown text, all at the given env step."""
    with RunLogger(tmp_path, total_steps=512, progress=False) as lg:
        lg.log(1, 128, {"mean_return": 1.0})
        lg.log_summary(128, scalars={"stage/score": 0.75, "stage/loss": None, "stage/nan": float("nan")},
                       counts={"stage/picks": {"chop tree": 3, "sleep": 0, "drink water": 1}},
                       texts={"stage/lines": "    stage 1: 8 queries"})
    scalars = tb_scalars(tmp_path)
    assert scalars["stage/score"] == [(128, 0.75)] and "stage/loss" not in scalars and "stage/nan" not in scalars
    [(step, histo)] = tb_histograms(tmp_path)["stage/picks"]
    assert step == 128 and (histo.num, histo.sum, histo.min, histo.max) == (4, 2.0, 0.0, 2.0)  # 0, 0, 0, 2
    # one bin per category: 3 of index 0, none of 1, 1 of 2
    counts = dict(zip(histo.bucket_limit, histo.bucket))
    assert [counts.get(limit, 0.0) for limit in (0.5, 1.5, 2.5)] == [3.0, 0.0, 1.0]  # right edges
    texts = tb_texts(tmp_path)
    assert texts["stage/picks/table"] == [(128, "|bin|name|count|\n|-|-|-|\n|0|chop tree|3|\n|1|sleep|0|\n"
                                                "|2|drink water|1|")]
    assert texts["stage/lines"] == [(128, "    stage 1: 8 queries")]


def test_single_seed_vector_is_a_plain_scalar(tmp_path):
    with RunLogger(tmp_path, total_steps=512, progress=False) as lg:
        rec = lg.log(1, 128, {"mean_return": np.array([0.5]), "success_rate": np.array([np.nan])})
    assert rec["mean_return"] == 0.5 and "mean_return_per_seed" not in rec
    assert rec["success_rate"] is None and "success_rate_per_seed" not in rec
    assert sorted(t for t in tb_scalars(tmp_path) if t.startswith("mean_return")) == ["mean_return"]


def test_rejects_bad_shapes_reserved_names_and_going_back(tmp_path):
    with RunLogger(tmp_path, total_steps=512, progress=False) as lg:
        with pytest.raises(ValueError, match="per-seed vectors"):
            lg.log(1, 128, {"x": np.zeros((2, 2))})
        with pytest.raises(ValueError, match="reserved"):
            lg.log(1, 128, {"env_steps": 3})
        lg.log(2, 256, {})
        with pytest.raises(ValueError, match="iteration 2 logged after iteration 2"):
            lg.log(2, 256, {})


def test_resume_truncates_beyond_checkpoint_and_partial_line(tmp_path):
    _log_iterations(tmp_path, range(1, 6))
    path = tmp_path / METRICS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    # a run killed mid-write leaves half a line
    with open(path, "ab") as f:
        f.write(b'{"iteration": 6, "env_steps": 7')
    _log_iterations(tmp_path, [4, 5, 6], resume=True, after_iteration=3)
    new = path.read_bytes().splitlines(keepends=True)
    assert new[:3] == lines[:3]  # earlier records kept byte for byte
    recs = read_metrics(path)
    assert [r["iteration"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert all(json.loads(line) for line in new)  # every line whole
    # TensorBoard: the resumed writer's purge marker hides old events from env step 3*128+1 on
    starts = [ev.step for ev in tb_events(tmp_path)
              if ev.HasField("session_log") and ev.session_log.status == event_pb2.SessionLog.START]
    assert starts == [0, 3 * 128 + 1]


def test_resume_without_checkpoint_iteration_drops_only_partial_line(tmp_path):
    _log_iterations(tmp_path, [1, 2])
    path = tmp_path / METRICS_FILE
    with open(path, "ab") as f:
        f.write(b'{"iteration": 3, "env_st')
    with RunLogger(tmp_path, total_steps=1280, progress=False, resume=True) as lg:
        assert (lg.last_iteration, lg.last_env_steps) == (2, 256)
        lg.log(3, 384, {})
    assert [r["iteration"] for r in read_metrics(path)] == [1, 2, 3]
    assert path.read_bytes().count(b"\n") == 3


def test_resume_to_before_first_record_and_missing_file(tmp_path):
    _log_iterations(tmp_path, [1, 2])
    with RunLogger(tmp_path, total_steps=1280, progress=False, resume=True, after_iteration=0) as lg:
        assert lg.last_iteration is None and lg.last_env_steps == 0
    assert (tmp_path / METRICS_FILE).read_bytes() == b""
    with RunLogger(tmp_path / "new", total_steps=1280, progress=False, resume=True, after_iteration=5):
        pass
    assert read_metrics(tmp_path / "new" / METRICS_FILE) == []


def test_fresh_run_replaces_old_file(tmp_path):
    _log_iterations(tmp_path, [1, 2, 3])
    _log_iterations(tmp_path, [1])
    assert [r["iteration"] for r in read_metrics(tmp_path / METRICS_FILE)] == [1]


def test_progress_bar_shows_steps_return_and_success(tmp_path, capsys):
    with RunLogger(tmp_path, total_steps=256, progress=True) as lg:
        lg.log(1, 128, {"mean_return": 0.25, "success_rate": np.array([0.5, 1.0])})
    err = capsys.readouterr().err
    assert "128/256" in err and "return=0.250" in err and "success=0.750" in err
