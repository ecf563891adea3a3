"""One process that times SmolLM2 training iterations of the code on its ``PYTHONPATH``.

Run by ``compare_commits.py``, one worker per (commit, task), so that two commits' iterations
can be timed in turn in one run: the worker builds what ``python -m twosome_jax.train`` builds
for the task at 4 envs x 32 steps (``run.build``, the task's reference gamma from
``configs/TASK.yaml``), compiles the jitted iteration with an untimed first call, prints
``{"ready": ...}`` and then, for each line ``time`` on stdin, runs one iteration from the same
fresh train state (every round does the same work) and prints its seconds and the process's
peak resident memory during that iteration (``VmHWM``, reset before it through
``/proc/self/clear_refs``). It uses only interfaces that every measured commit has.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def peak_rss_mb(reset: bool = False):
    """The process's peak resident set (MiB) since the last reset, or None off Linux."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()

    import jax

    import twosome_jax
    from twosome_jax import run as runlib
    from twosome_jax.config import TrainConfig, load_config
    from twosome_jax.trainer import Trainer

    repo = Path(twosome_jax.__file__).resolve().parents[1]
    task_config = repo / "configs" / f"{args.task}.yaml"
    gamma = {"gamma": load_config(task_config).gamma} if task_config.exists() else {}
    cfg = TrainConfig(model=args.model, task=args.task, num_envs=4, num_steps=32,
                      total_timesteps=4 * 32 * 100, **gamma)
    setup = runlib.build(cfg)
    trainer = Trainer.from_config(cfg, setup.agent, setup.env, setup.env_params)
    state0 = jax.jit(trainer.init)(jax.random.key(0))
    iteration = jax.jit(trainer.iteration)

    def run():
        t = time.perf_counter()
        state, metrics = iteration(setup.frozen, state0)
        jax.block_until_ready((state, metrics))
        return time.perf_counter() - t, metrics

    first, metrics = run()
    print(json.dumps({"ready": True, "code": str(repo), "first_call_s": round(first, 2),
                      "policy_steps": float(metrics["policy_steps"]),
                      "value_loss": float(metrics["value_loss"])}), flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            break
        peak_rss_mb(reset=True)
        seconds, metrics = run()
        print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": peak_rss_mb(),
                          "policy_steps": float(metrics["policy_steps"]),
                          "pg_loss": float(metrics["pg_loss"]),
                          "value_loss": float(metrics["value_loss"])}), flush=True)


if __name__ == "__main__":
    main()
