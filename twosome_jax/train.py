"""``python -m twosome_jax.train``: TWOSOME (and the paper's baselines) by PPO.

Each PPO iteration is one compiled program (``trainer.Trainer.iteration``), vmapped over
``--num-seeds`` independent runs that share the frozen base. This file is the host side: it
builds the run, logs, checkpoints, evaluates, and exports the adapters at the end. With
``--distributed`` every process runs it; only process 0 writes the run's files
(``twosome_jax/distributed.py``).

A ``--config`` file (or a ``--resume`` run's ``config.yaml``) that says ``trainer: guided_ppo``
goes to the instruction-conditioned PPO trainer instead (``twosome_jax.guided_train``; Crafter,
``configs/crafter_*.yaml``), with the same run directory, resume, metrics and plots; one that
says ``trainer: rladapter`` goes to RLAdapter's loop of stages (``twosome_jax.rladapter_train``).
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


# what must stay finite in every iteration; a NaN anywhere in an update shows in one of these
FINITE_METRICS = ("pg_loss", "value_loss", "entropy", "approx_kl")


def _check_finite(metrics: dict, iteration: int, last_checkpoint) -> None:
    import numpy as np

    from twosome_jax.run import RunError

    bad = [k for k in FINITE_METRICS if k in metrics and not np.all(np.isfinite(metrics[k]))]
    if not np.all(np.asarray(metrics.get("params_finite", True))):
        bad.append("the adapter/critic parameters")
    if bad:
        kept = f"iteration {last_checkpoint}" if last_checkpoint is not None else "none yet"
        raise RunError(f"iteration {iteration}: {', '.join(bad)} became non-finite; stopped without saving it "
                       f"(latest checkpoint: {kept})")


def _greedy_streak(records: list[dict]) -> int:
    """Consecutive evaluations, counted back from the last, with greedy success 1.0 on every seed."""
    streak = 0
    for r in reversed([r for r in records if r.get("eval_success_greedy") is not None]):
        values = r.get("eval_success_greedy_per_seed") or [r["eval_success_greedy"]]
        if not all(v is not None and v >= 1.0 for v in values):
            break
        streak += 1
    return streak


def train(cfg, run_dir: Path, *, resume: bool, progress: bool | None = None) -> dict | None:
    """Run (or continue) training in ``run_dir``; returns the summary :func:`summarize` prints
    (None on processes other than 0).

    A run ends at its budget, or earlier once greedy success has held for
    ``stop_after_greedy_successes`` consecutive evaluations. An iteration whose losses or
    parameters are not finite stops the run with a :class:`~twosome_jax.run.RunError` before
    anything of it is saved, so the latest checkpoint stays the last good one."""
    import jax
    import numpy as np

    from twosome_jax import distributed, run as runlib
    from twosome_jax.config import save_config
    from twosome_jax.metrics import RunLogger, SilentLogger, read_metrics
    from twosome_jax.seeds import init_seeds
    from twosome_jax.trainer import Trainer, per_seed

    primary = distributed.is_main()
    setup = runlib.build(cfg)
    distributed.barrier("twosome_jax.train checked the run directory")  # before process 0 writes to it
    mesh = runlib.make_mesh(cfg.num_envs, cfg.model_parallel)
    trainer = Trainer.from_config(cfg, setup.agent, setup.env, setup.env_params, mesh=mesh)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)
    init = jax.jit(lambda keys: init_seeds(trainer.init, keys))
    iteration = jax.jit(per_seed(trainer.iteration, cfg.num_seeds), donate_argnums=1)

    if primary:
        run_dir.mkdir(parents=True, exist_ok=True)
    manager = runlib.checkpoint_manager(run_dir, keep=cfg.keep_checkpoints)
    notes = []
    if resume and manager.all_steps():
        step, state = runlib.restore_checkpoint(manager, jax.eval_shape(init, keys), warn=notes.append,
                                               set_aside=True)
    elif resume:  # killed before its first checkpoint: start again from the saved config
        step, state = 0, init(keys)
    else:
        if primary:
            save_config(cfg, run_dir / runlib.CONFIG_FILE)
        step, state = None, init(keys)
    frozen = setup.frozen
    if mesh is not None:
        state = runlib.shard_state(state, mesh, cfg.num_envs)
        frozen = runlib.shard_frozen(frozen, mesh)

    evaluation = _eval_fn(setup, cfg.eval_episodes) if cfg.eval_every else None
    start = int(np.asarray(state.iteration).reshape(-1)[0])
    batch = cfg.num_envs * cfg.num_steps
    logger = (RunLogger(run_dir, total_steps=trainer.num_updates * batch, resume=resume, after_iteration=step,
                        progress=progress, config=cfg.to_dict()) if primary else SilentLogger())
    metrics, stopped_early = {}, False
    with logger:
        for note in notes:
            logger.write(f"warning: {note}")
        if resume:
            logger.write(f"resumed {run_dir} at iteration {start}")
        # the evaluations behind the checkpoint, which the logger has kept; every process must
        # agree on when the run stops early
        streak = int(distributed.broadcast(_greedy_streak(read_metrics(logger.path)) if primary else 0))
        last_checkpoint = step or None
        for it in range(start, trainer.num_updates):
            t0 = time.perf_counter()
            state, metrics = iteration(frozen, state)
            metrics = distributed.to_host(metrics)
            elapsed = time.perf_counter() - t0
            done = it + 1
            _check_finite(metrics, done, last_checkpoint)
            metrics["steps_per_second"] = batch / elapsed
            evaluated = evaluation is not None and (done % cfg.eval_every == 0 or done == trainer.num_updates)
            if evaluated:
                eval_keys = jax.random.split(jax.random.PRNGKey(cfg.seed + 10_000 + done), cfg.num_seeds)
                metrics.update(distributed.to_host(evaluation(state.actor, eval_keys)))
                streak = streak + 1 if np.all(metrics["eval_success_greedy"] >= 1.0) else 0
            stopped_early = bool(cfg.stop_after_greedy_successes) and streak >= cfg.stop_after_greedy_successes
            env_steps = int(np.asarray(metrics.pop("env_steps")).reshape(-1)[0])
            metrics.pop("iteration")
            metrics.pop("params_finite")
            logger.log(done, env_steps, metrics)
            if done % cfg.checkpoint_every == 0 or done == trainer.num_updates or stopped_early:
                runlib.save_checkpoint(manager, done, state)
                last_checkpoint = done
            if stopped_early:
                break
    finish(setup, run_dir, state)
    if not primary:
        return None
    return summarize(cfg, run_dir, read_metrics(run_dir / "metrics.jsonl"), stopped_early)


def summarize(cfg, run_dir: Path, records: list[dict], stopped_early: bool) -> dict:
    """What a run reached, at which env step, and where its outputs are."""
    last = records[-1] if records else {}
    evals = [r for r in records if r.get("eval_success_greedy") is not None]
    first = next((r["env_steps"] for r in evals if r["eval_success_greedy"] >= 1.0), None)
    why = (f"greedy success held for {cfg.stop_after_greedy_successes} consecutive evaluations" if stopped_early
           else "the budget was used" if last.get("env_steps", 0) >= cfg.num_iterations * cfg.batch_size
           else "stopped")
    out = {"task": cfg.task, "agent": cfg.agent, "iterations": last.get("iteration", 0),
           "env_steps": last.get("env_steps", 0), "ended": why, "first_greedy_success_env_step": first,
           "last_eval_success_greedy": evals[-1]["eval_success_greedy"] if evals else None,
           "last_eval_success_sampled": evals[-1]["eval_success_sampled"] if evals else None,
           "last_training_success_rate": last.get("success_rate"), "run_dir": str(run_dir)}
    outputs = {"curve": run_dir / "learning_curve.png", "adapter": run_dir / "adapter",
               "metrics": run_dir / "metrics.jsonl", "tensorboard": run_dir / "tb"}
    out.update({k: str(v) for k, v in outputs.items() if v.exists()})
    return out


def print_summary(summary: dict, out=sys.stdout) -> None:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    first = summary["first_greedy_success_env_step"]
    print(f"{summary['task']} / {summary['agent']}: {summary['iterations']} iterations, {summary['env_steps']} env "
          f"steps; ended because {summary['ended']}", file=out)
    print(f"  greedy success first at env step {fmt(first) if first is not None else 'never'}; last evaluation: "
          f"greedy {fmt(summary['last_eval_success_greedy'])}, sampled {fmt(summary['last_eval_success_sampled'])}; "
          f"training episodes' success {fmt(summary['last_training_success_rate'])}", file=out)
    for k in ("curve", "adapter", "metrics", "tensorboard"):
        if k in summary:
            print(f"  {k + ':':<12} {summary[k]}", file=out)


def finish(setup, run_dir: Path, state) -> None:
    """Export every seed's adapter (PEFT) and critic, and draw the learning curve (process 0;
    every process takes part in gathering the state)."""
    import jax

    from twosome_jax.distributed import is_main, to_host
    from twosome_jax.plotting import plot_learning_curve

    state = to_host(state)
    if not is_main():
        return
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
    from twosome_jax import guided_train, rladapter_train

    if guided_train.handles(argv):  # a config (or resumed run) that says ``trainer: guided_ppo``
        return guided_train.main(argv)
    if rladapter_train.handles(argv):  # ... that says ``trainer: rladapter``
        return rladapter_train.main(argv)
    from twosome_jax import distributed
    from twosome_jax.config import ConfigError, add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(prog="python -m twosome_jax.train", description=DESCRIPTION)
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue a killed run from its latest checkpoint (uses RUN_DIR/config.yaml)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar: a one-line status every few iterations instead (also the "
                             "default when stderr is not a terminal)")
    add_config_arguments(parser)
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        distributed.initialize(args)  # before anything (an import included) starts a jax backend
    except distributed.DistributedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from envs_jax.registry import UnknownEnvironment
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
        summary = train(cfg, run_dir, resume=bool(args.resume), progress=False if args.no_progress else None)
    except (ConfigError, RunError, ModelLoadError, FetchError, UnknownEnvironment) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    distributed.shutdown()
    if summary is not None:
        print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
