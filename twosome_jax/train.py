"""``python -m twosome_jax.train``: TWOSOME (and the paper's baselines) by PPO.

Each PPO iteration is one compiled program (``trainer.Trainer.iteration``), vmapped over
``--num-seeds`` independent runs that share the frozen base. This file is the host side: it
builds the run, logs, checkpoints, evaluates, and exports the adapters at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

DESCRIPTION = """Train an LLM policy (TWOSOME) or a baseline with PPO on any registered task.
With no arguments: tomato salad with SmolLM2-135M-Instruct and the reference's settings."""


# Where PyTorch users find the built-in bases, for the exported adapter's base_model_name_or_path.
HF_NAMES = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


# metrics.jsonl keys of the periodic evaluation <- keys of evaluation.evaluate_policy
EVAL_METRICS = {"eval_success_greedy": "success_rate_greedy", "eval_return_greedy": "return_greedy",
                "eval_success_sampled": "success_rate_sampled", "eval_return_sampled": "return_sampled"}


def _eval_fn(setup, episodes: int):
    """Per seed: :func:`~twosome_jax.evaluation.evaluate_policy` of the current adapters."""
    import jax

    from twosome_jax.evaluation import evaluate_policy

    def one(actor, key):
        out = evaluate_policy(setup.agent, setup.env, setup.env_params, setup.frozen, actor, key, episodes=episodes)
        return {k: out[v] for k, v in EVAL_METRICS.items()}

    return jax.jit(jax.vmap(one))


def train(cfg, run_dir: Path, *, resume: bool, progress: bool | None = None) -> dict:
    """Run (or continue) training in ``run_dir``; returns the last iteration's metrics (host)."""
    import jax
    import numpy as np

    from twosome_jax import run as runlib
    from twosome_jax.config import save_config
    from twosome_jax.metrics import RunLogger
    from twosome_jax.trainer import Trainer, per_seed

    setup = runlib.build(cfg)
    trainer = Trainer.from_config(cfg, setup.agent, setup.env, setup.env_params)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)
    init = jax.jit(jax.vmap(trainer.init))
    iteration = jax.jit(per_seed(trainer.iteration, cfg.num_seeds), donate_argnums=1)

    run_dir.mkdir(parents=True, exist_ok=True)
    manager = runlib.checkpoint_manager(run_dir, keep=cfg.keep_checkpoints)
    if resume and manager.latest_step() is not None:
        step, state = runlib.restore_checkpoint(manager, jax.eval_shape(init, keys))
    elif resume:  # killed before its first checkpoint: start again from the saved config
        step, state = 0, init(keys)
    else:
        save_config(cfg, run_dir / runlib.CONFIG_FILE)
        step, state = None, init(keys)
    frozen = setup.frozen
    mesh = runlib.make_mesh(cfg.num_envs, cfg.model_parallel)
    if mesh is not None:
        state = runlib.shard_state(state, mesh, cfg.num_envs)
        frozen = runlib.shard_frozen(frozen, mesh)

    evaluation = _eval_fn(setup, cfg.eval_episodes) if cfg.eval_every else None
    start = int(np.asarray(state.iteration).reshape(-1)[0])
    logger = RunLogger(run_dir, total_steps=trainer.num_updates * cfg.num_envs * cfg.num_steps, resume=resume,
                       after_iteration=step, progress=progress, config=cfg.to_dict())
    metrics = {}
    with logger:
        if resume:
            logger.write(f"resumed {run_dir} at iteration {start}")
        for it in range(start, trainer.num_updates):
            t0 = time.perf_counter()
            state, metrics = iteration(frozen, state)
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - t0
            metrics["steps_per_second"] = cfg.num_envs * cfg.num_steps / elapsed
            done = it + 1
            if evaluation is not None and (done % cfg.eval_every == 0 or done == trainer.num_updates):
                eval_keys = jax.random.split(jax.random.PRNGKey(cfg.seed + 10_000 + done), cfg.num_seeds)
                metrics.update(jax.device_get(evaluation(state.actor, eval_keys)))
            env_steps = int(np.asarray(metrics.pop("env_steps")).reshape(-1)[0])
            metrics.pop("iteration")
            logger.log(done, env_steps, metrics)
            if done % cfg.checkpoint_every == 0 or done == trainer.num_updates:
                runlib.save_checkpoint(manager, done, state)
    finish(setup, run_dir, state)
    return metrics


def finish(setup, run_dir: Path, state) -> None:
    """Export every seed's adapter (PEFT) and critic, and draw the learning curve."""
    import jax

    from twosome_jax.plotting import plot_learning_curve

    state = jax.device_get(state)
    num_seeds = len(jax.tree.leaves(state.critic)[0])
    if setup.model_config is not None and setup.agent.learns_policy:
        from twosome_jax.export import export_critic, export_peft_adapter

        for k in range(num_seeds):
            where = run_dir if k == 0 else run_dir / "seeds" / str(k)
            actor = jax.tree.map(lambda x: x[k], state.actor)
            critic = jax.tree.map(lambda x: x[k], state.critic)
            export_peft_adapter(actor, setup.model_config, setup.lora_config, where / "adapter",
                                HF_NAMES.get(setup.cfg.model, setup.cfg.model))
            export_critic(critic, where / "critic.safetensors")
    plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")


def default_run_dir(cfg) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.task}-{cfg.agent}-seed{cfg.seed}-{stamp}"


def main(argv: list[str] | None = None) -> int:
    from twosome_jax.config import ConfigError, add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(prog="python -m twosome_jax.train", description=DESCRIPTION)
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue a killed run from its latest checkpoint (uses RUN_DIR/config.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)

    from twosome_jax.hub import FetchError
    from twosome_jax.model import ModelLoadError
    from twosome_jax.run import RunError, load_run_config

    try:
        if args.resume:
            given = [k for k in ("config", "task", "model", "seed", "total_timesteps", "run_dir", "agent", "num_seeds")
                     if getattr(args, k, None) is not None] + (["set"] if args.overrides else [])
            if given:
                parser.error(f"--resume takes its settings from RUN_DIR/config.yaml; drop {', '.join(given)}")
            cfg, run_dir = load_run_config(args.resume), Path(args.resume)
        else:
            cfg = config_from_args(args, parser)
            run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
            if (run_dir / "config.yaml").exists():
                parser.error(f"run directory {str(run_dir)!r} already holds a run; use --resume {run_dir} "
                             "or another --run-dir")
        metrics = train(cfg, run_dir, resume=bool(args.resume), progress=False if args.no_progress else None)
    except (ConfigError, RunError, ModelLoadError, FetchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run directory: {run_dir}")
    if metrics:
        print("final: " + ", ".join(f"{k}={float(__import__('numpy').mean(metrics[k])):.4g}"
                                    for k in ("mean_return", "success_rate") if k in metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
