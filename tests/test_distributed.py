"""Multi-process training (jax.distributed): two CPU processes on localhost with two devices each
must train exactly as one process with four devices, write the run's files once, and resume."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from twosome_jax.train import main

# multi-process training runs
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# the smallest complete run: 4 envs x 2 steps, 3 iterations of one policy step per transition
# (one group size, so one branch to compile; advantages unnormalised, as a group of one has no
# spread), a checkpoint every iteration
TINY = ["--model", "tiny-random", "--no-progress", "--total-timesteps", "24", "--set", "num_steps=2",
        "--set", "policy_num_minibatches=8", "--set", "gradient_accumulation_steps=1",
        "--set", "value_num_minibatches=2", "--set", "norm_adv=false",
        "--set", "policy_learning_rate=1e-3", "--set", "value_learning_rate=1e-3", "--set", "checkpoint_every=1"]
VOLATILE = {"wall_time", "steps_per_second"}
OUTPUTS = ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "critic.safetensors")


def _env(devices: int) -> dict:
    # unoptimised XLA code compiles in less time; both sides of each comparison use it
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                                     "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    # the flags say who the processes are, nothing is to be detected; and no persistent
    # compilation cache: on CPU it serves process 0 alone, and the others, still compiling, would
    # miss gloo's 30 s deadline at the first collective
    for k in [k for k in env if k.startswith(("SLURM_", "OMPI_", "TPU_", "JAX_COMPILATION_CACHE"))]:
        env.pop(k)
    return env


def _tolerant(message: str) -> str:
    """A pattern of ``message`` with any whitespace (newlines included) allowed between its
    characters, a number where it has ``#`` and, where it has ``=``, the number its second ``#``
    matched."""
    parts = {"#": r"(\d+)", "=": r"\2"}
    return r"\s*".join(parts.get(c, re.escape(c)) for c in message.replace(" ", ""))


# gloo announces each rank's connections on stdout. The announcements of one process's ranks can
# be interleaved, and a line break can fall inside one (so a line filter can leave a lone number
# behind). They are removed innermost first, until none is left; the closing count must equal the
# count it repeats, so a removal never takes a digit of the announcement around it.
GLOO = re.compile(_tolerant("[Gloo] Rank # is connected to # peer ranks. Expected number of connected peer ranks is : ="))


def _without_gloo(text: str) -> str:
    n = 1
    while n:
        text, n = GLOO.subn("", text)
    return text


def test_gloo_announcements_are_removed_when_split_or_interleaved():
    one = "[Gloo] Rank 1 is connected to 3 peer ranks. Expected number of connected peer ranks is : 3"
    split = "[Gloo] Rank 3\n is connected to 3 peer ranks. Expected number of connected peer\n ranks is : 3"
    nested = "[Gloo] Rank " + one + "3\n is connected to 3 peer ranks. Expected number of connected peer ranks is : 3"
    for text in (one, split, nested, one + split):
        assert _without_gloo("out\n" + text + "\nend\n") == "out\n\nend\n", text
    assert _without_gloo("Rank 1 is connected to 3 peer ranks") == "Rank 1 is connected to 3 peer ranks"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(logs: Path, processes: int, devices: int, *args) -> list:
    """``python -m twosome_jax.train ARGS`` as ``processes`` processes of ``devices`` devices each;
    their output goes to files (a full pipe would stall one process and, through the collectives,
    all of them)."""
    cmd = [sys.executable, "-m", "twosome_jax.train", *args]
    extra = lambda i: []
    if processes > 1:
        address = f"127.0.0.1:{_free_port()}"
        extra = lambda i: ["--coordinator-address", address, "--num-processes", str(processes),
                           "--process-id", str(i)]
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for i in range(processes):
        out, err = logs / f"{i}.out", logs / f"{i}.err"
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen(cmd + extra(i), cwd=REPO, env=_env(devices),
                                    stdout=o, stderr=e)
        started.append((proc, out, err))
    return started


def _wait(started: list, timeout: float = 900) -> list[tuple[str, str]]:
    """(stdout, stderr) of each process, once all have exited successfully."""
    try:
        for proc, _, _ in started:
            proc.wait(timeout=timeout)
    finally:
        for proc, _, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    texts = []
    for i, (proc, out, err) in enumerate(started):
        stdout = _without_gloo(out.read_text()).lstrip("\n")
        stderr = err.read_text()
        assert proc.returncode == 0, f"process {i} of {len(started)} failed:\n{stdout}\n{stderr[-4000:]}"
        texts.append((stdout, stderr))
    return texts


def _records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _checkpoints(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process with 4 devices and two processes with 2 devices each, side by side."""
    root = tmp_path_factory.mktemp("distributed")
    one = _start(root / "logs_one", 1, 4, *TINY, "--run-dir", str(root / "one"))
    two = _start(root / "logs_two", 2, 2, *TINY, "--run-dir", str(root / "two"))
    try:
        _wait(one)
    finally:
        texts = _wait(two)
    return root / "one", root / "two", texts


def test_two_processes_train_as_one_process_with_the_same_devices(runs):
    one, two, _ = runs
    assert len(_records(one)) == 3
    assert _records(two) == _records(one)  # every metric of every iteration
    for name in OUTPUTS:
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    assert _checkpoints(two) == _checkpoints(one) == [1, 2, 3]


def test_only_process_0_writes_files_and_prints(runs):
    one, two, procs = runs
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert len(list((two / "tb").iterdir())) == 1  # one TensorBoard event file
    # orbax lets process 0 write the (host) arrays of every checkpoint
    assert list(two.glob("checkpoints/*/default/ocdbt.process_0"))
    assert not list(two.glob("checkpoints/*/default/*process_1*"))
    (out0, err0), (out1, err1) = procs
    assert "3 iterations, 24 env steps" in out0 and out1 == ""
    status = lambda text: [line for line in text.splitlines() if line.startswith("iteration ")]
    assert status(err0) and not status(err1)


def test_resume_with_two_processes(runs, tmp_path):
    """A copy of the two-process run whose last checkpoint and outputs are gone (killed after
    iteration 2) resumes with two processes and ends as the uninterrupted run."""
    one, two, _ = runs
    run = tmp_path / "killed"
    shutil.copytree(two, run)
    shutil.rmtree(run / "checkpoints" / "3")
    for name in ("adapter", "critic.safetensors", "learning_curve.png"):
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    (_, err0), _ = _wait(_start(two.parent / "logs_resume", 2, 2, "--resume", str(run)))
    assert f"resumed {run} at iteration 2" in err0
    assert _records(run) == _records(one)
    for name in OUTPUTS:
        assert (run / name).read_bytes() == (one / name).read_bytes(), name


@pytest.mark.parametrize("flags, message", [
    (["--num-processes", "0"], "--num-processes 0 must be at least 1"),
    (["--num-processes", "2", "--process-id", "2"], "--process-id 2 must be in 0 .. 1"),
    (["--process-id", "-1"], "--process-id -1 must be in 0 or more"),
    (["--coordinator-address", "localhost"], "'localhost' must be HOST:PORT"),
    (["--coordinator-address", "localhost:99999"], "'localhost:99999' must be HOST:PORT"),
])
def test_bad_flags_are_one_line_errors(flags, message, capsys):
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_nothing_to_detect_says_which_flags_to_give():
    """--distributed outside any cluster: jax's own detection finds nothing, and the error says
    which flags to give instead."""
    env = {k: v for k, v in _env(1).items() if not k.startswith("KUBERNETES_")}
    proc = subprocess.run([sys.executable, "-m", "twosome_jax.train", "--distributed"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "give --coordinator-address, --num-processes and --process-id" in err[0], err
