"""The training command end to end with the tiny random model: resume, seeds, devices, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# a dozen training runs in fresh processes
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# small but complete: 4 envs x 8 steps, 2 policy groups of 2 minibatches, 2 value minibatches
SMALL = ["--model", "tiny-random", "--no-progress", "--set", "num_steps=8", "--set", "policy_num_minibatches=4",
         "--set", "gradient_accumulation_steps=2", "--set", "value_num_minibatches=2",
         "--set", "policy_learning_rate=1e-3", "--set", "value_learning_rate=1e-3"]
VOLATILE = {"wall_time", "steps_per_second", "steps_per_second_per_seed"}


def _train(*args, env=None, check=True):
    cmd = [sys.executable, "-m", "twosome_jax.train", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _records(run_dir):
    rows = [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl")]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "full"
    _train(*SMALL, "--total-timesteps", "320", "--run-dir", str(run), "--set", "checkpoint_every=2")
    return run


def test_run_directory_contents(uninterrupted):
    for name in ("config.yaml", "metrics.jsonl", "learning_curve.png", "critic.safetensors",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        assert (uninterrupted / name).is_file(), name
    records = _records(uninterrupted)
    assert [r["iteration"] for r in records] == list(range(1, 11))
    assert records[-1]["env_steps"] == 320
    assert sorted(p.name for p in (uninterrupted / "checkpoints").iterdir() if p.name.isdigit()) == ["10", "6", "8"]


def test_kill_and_resume_reaches_the_same_result(uninterrupted, tmp_path):
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "twosome_jax.train", *SMALL, "--total-timesteps", "320", "--run-dir", str(run),
           "--set", "checkpoint_every=2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:  # kill (SIGKILL: no cleanup) once the first checkpoint is complete
        while not (run / "checkpoints" / "4").is_dir() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = len(_records(run))
    assert killed_at < 10, "the run finished before it could be killed"
    _train("--resume", str(run))
    assert _records(run) == _records(uninterrupted)
    from safetensors.numpy import load_file
    a = load_file(run / "adapter" / "adapter_model.safetensors")
    b = load_file(uninterrupted / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_four_devices_equal_one(uninterrupted, tmp_path):
    """4 devices as 2 x 2, environments split over the data axis and the base over the model
    axis, equal 1 device. (Four devices on the data axis alone run in tests/test_distributed.py,
    checked there against two processes of two devices.)"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    run = tmp_path / "four"
    _train(*SMALL, "--total-timesteps", "320", "--run-dir", str(run), "--set", "checkpoint_every=2",
           "--set", "model_parallel=2", env=env)
    one, four = _records(uninterrupted), _records(run)
    assert len(one) == len(four)
    for r1, r4 in zip(one, four):
        assert r1.keys() == r4.keys()
        for k, v in r1.items():  # same actions, episodes and counters; floats up to reduction order
            if v is None:
                assert r4[k] is None, (r1["iteration"], k)
            else:
                assert r4[k] == pytest.approx(v, rel=1e-3, abs=1e-5), (r1["iteration"], k)


def test_seeds_are_independent_runs(tmp_path):
    """--num-seeds K trains K different runs in one program and exports every seed."""
    multi = tmp_path / "multi"
    _train(*SMALL, "--total-timesteps", "96", "--run-dir", str(multi), "--num-seeds", "3")
    rows = _records(multi)
    per_seed = np.array([r["mean_macro_reward_per_seed"] for r in rows])
    assert per_seed.shape == (3, 3) and len(np.unique(per_seed[-1])) == 3  # the seeds differ
    for k in (1, 2):
        assert (multi / "seeds" / str(k) / "adapter" / "adapter_model.safetensors").is_file()
    assert rows[-1]["success_rate"] is None or isinstance(rows[-1]["success_rate"], float)


def test_errors_are_one_line(tmp_path):
    bad_key = _train("--set", "no_such_key=1", check=False)
    assert bad_key.returncode == 2 and "no_such_key" in bad_key.stderr and "Traceback" not in bad_key.stderr
    bad_model = _train("--model", str(tmp_path / "missing.gguf"), "--run-dir", str(tmp_path / "r"), check=False)
    assert bad_model.returncode == 2 and "missing.gguf" in bad_model.stderr
    assert "Traceback" not in bad_model.stderr and len(bad_model.stderr.strip().splitlines()) == 1
    no_run = _train("--resume", str(tmp_path / "nothing"), check=False)
    assert no_run.returncode == 2 and "does not exist" in no_run.stderr and "Traceback" not in no_run.stderr


MLP = ["--agent", "ppo-mlp", "--no-progress", "--set", "num_steps=8", "--set", "policy_num_minibatches=4",
       "--set", "gradient_accumulation_steps=2", "--set", "value_num_minibatches=2"]


def test_status_lines_and_summary_without_a_terminal(tmp_path):
    """With no progress bar a run prints a status line every few iterations, and a summary at the end."""
    run = tmp_path / "mlp"
    proc = _train(*MLP, "--total-timesteps", "480", "--run-dir", str(run), "--set", "eval_every=5")
    status = [line for line in proc.stderr.splitlines() if line.startswith("iteration ")]
    assert [line.split()[1] for line in status] == ["1", "11", "15"], proc.stderr
    assert "env steps 32/480" in status[0] and "steps/s" in status[0] and "eval greedy" in status[2]
    out = proc.stdout
    assert "tomato_salad / ppo-mlp: 15 iterations, 480 env steps; ended because the budget was used" in out
    assert f"curve:       {run / 'learning_curve.png'}" in out and f"metrics:     {run / 'metrics.jsonl'}" in out
    assert "PyTorch was not found" not in proc.stderr


def test_non_finite_update_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    """A learning rate of 1e38 drives the parameters to the edge of float32 in the first
    iteration's single optimizer steps, and the second iteration's forward pass overflows; the run
    stops with one line naming the iteration, and never checkpoints the bad state."""
    run = tmp_path / "nan"
    proc = _train(*MLP, "--total-timesteps", "640", "--run-dir", str(run), "--set", "checkpoint_every=1",
                  "--set", "mlp_learning_rate=1e38", "--set", "value_num_minibatches=1",
                  "--set", "gradient_accumulation_steps=4", check=False)
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "became non-finite; stopped without saving it" in err[0], proc.stderr
    bad = int(err[0].split("iteration ")[1].split(":")[0])
    assert "Traceback" not in proc.stderr
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert bad > 1 and steps and steps[-1] == bad - 1  # the last good iteration, not the bad one
    from twosome_jax.run import checkpoint_manager

    assert checkpoint_manager(run, create=False).latest_step() == bad - 1


def test_resume_falls_back_past_a_corrupt_latest_checkpoint(tmp_path):
    """A truncated latest checkpoint (a copy cut short) makes --resume use the newest one that
    restores, say so, and reach the uninterrupted run's result."""
    run = tmp_path / "full"
    _train(*MLP, "--total-timesteps", "320", "--run-dir", str(run), "--set", "checkpoint_every=2")
    want = _records(run)
    latest = run / "checkpoints" / "10"
    files = sorted((p for p in latest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    for p in files[-3:]:  # cut the largest files (the array data) in half
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    proc = _train("--resume", str(run))
    assert "checkpoint 10 cannot be restored" in proc.stderr and "resuming from checkpoint 8" in proc.stderr
    assert _records(run) == want


def test_reference_ppo_baseline_config_trains_and_resumes(tmp_path):
    """The reference PPO baseline's settings (configs/tomato_salad_ppo.yaml: CleanRL's joint
    update, the whole map in view) take update_epochs x minibatches optimizer steps, and a run
    resumed from an earlier checkpoint (one optimizer state, no critic optimizer) ends where
    the uninterrupted one did."""
    run = tmp_path / "ref"
    _train("--config", "configs/tomato_salad.yaml", "--config", "configs/tomato_salad_ppo.yaml", "--no-progress",
           "--set", "num_steps=8", "--total-timesteps", "320", "--run-dir", str(run), "--set", "checkpoint_every=2")
    want = _records(run)
    assert all(r["policy_steps"] == 16 for r in want)  # 4 epochs x 4 minibatches, no early stop
    for step in ("8", "10"):
        for p in sorted((run / "checkpoints" / step).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (run / "checkpoints" / step).rmdir()
    _train("--resume", str(run))
    assert _records(run) == want
