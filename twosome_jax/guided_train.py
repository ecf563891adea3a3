"""``python -m twosome_jax.guided_train``: PPO conditioned on an instruction (RLAdapter's agent).

    python -m twosome_jax.guided_train --config configs/crafter_ppo.yaml --total-timesteps N --seed S --run-dir D
    python -m twosome_jax.guided_train --resume D          # continue a killed run exactly

Each iteration is one compiled program (``guided_trainer.GuidedTrainer.iteration``) over all
seeds; this file is the host side. A run directory gets what TWOSOME runs get (``twosome_jax.run``:
``config.yaml``, orbax ``checkpoints/``; ``twosome_jax.metrics``: ``metrics.jsonl``, ``tb/``;
``learning_curve.png``) and ``episodes.jsonl``: one line per finished training episode,
``{"seed", "env_step", "achievements": {NAME: count}, "return", "length"}``, ``env_step`` being
the seed's env steps when it ended. Every ``metrics.jsonl`` line carries the family's episode
metrics (Crafter: ``crafter_score``) over all episodes that ended so far within the budget
(``total_timesteps``; the last iteration may run past it). ``python -m envs_jax.crafter.score D``
recomputes the score from ``episodes.jsonl``.

Resume: episodes are appended one iteration at a time, whole lines, fsynced; a resumed run cuts
``episodes.jsonl`` back to the episodes that ended by its checkpoint's env step (and
``metrics.jsonl`` to its iteration) before continuing, so a killed run neither loses nor repeats
an episode, and its files end equal to an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

EPISODES_FILE = "episodes.jsonl"
FINITE_METRICS = ("pg_loss", "value_loss", "entropy", "approx_kl")


class EpisodeLog:
    """Append-only ``episodes.jsonl``: each :meth:`write` is one write of whole lines, fsynced.

    ``resume``: keep the complete lines whose ``env_step`` is at most ``after_env_step`` (the
    checkpoint's), dropping later ones and a cut-off last line; otherwise start an empty file."""

    def __init__(self, path: str | os.PathLike, *, resume: bool, after_env_step: int = 0):
        from twosome_jax.metrics import _read_complete

        self.path = os.fspath(path)
        keep = 0
        if resume:
            records, ends = _read_complete(self.path)
            n = next((i for i, r in enumerate(records) if r["env_step"] > after_env_step), len(records))
            keep = ends[n - 1] if n else 0
        with open(self.path, "r+b" if resume and os.path.exists(self.path) else "wb") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        self._file = open(self.path, "ab")

    def write(self, lines: list[dict]) -> None:
        if lines:
            self._file.write("".join(json.dumps(r) + "\n" for r in lines).encode())
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def instruction_table(cfg, env):
    """float32 [R, dim]: the embeddings of every instruction the run can give, or [1, 0] without
    instructions."""
    import numpy as np

    from twosome_jax.guided_config import ConfigError
    from twosome_jax.instructions import policy_table, subgoal_sentences

    if cfg.instruction == "none":
        return np.zeros((1, 0), np.float32)
    if cfg.subgoals_per_instruction > len(env.subgoals):
        raise ConfigError(f"subgoals_per_instruction={cfg.subgoals_per_instruction} is invalid; accepted: "
                          f"1..{len(env.subgoals)} (task {cfg.task!r} has {len(env.subgoals)} sub-goals)")
    return policy_table(subgoal_sentences(env.subgoals, cfg.subgoals_per_instruction), cfg.policy_encoder, cfg.seed)


def _check_finite(metrics: dict, iteration: int, last_checkpoint) -> None:
    import numpy as np

    from twosome_jax.run import RunError

    bad = [k for k in FINITE_METRICS if k in metrics and not np.all(np.isfinite(metrics[k]))]
    if not np.all(metrics["params_finite"]):
        bad.append("the agent's parameters")
    if bad:
        kept = f"iteration {last_checkpoint}" if last_checkpoint is not None else "none yet"
        raise RunError(f"iteration {iteration}: {', '.join(bad)} became non-finite; stopped without saving it "
                       f"(latest checkpoint: {kept})")


def train(cfg, run_dir: Path, *, resume: bool, progress: bool | None = None, table=None, on_iteration=None) -> dict:
    """Run (or continue) a guided PPO run in ``run_dir``; returns the summary it prints.

    ``table``: the instruction embeddings (default :func:`instruction_table`); a given table
    must be passed again on resume. ``on_iteration(i)`` is called after iteration ``i``'s
    records are written and before its checkpoint."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import envs_jax
    from envs_jax.interface import GuidedEnvironment
    from twosome_jax import run as runlib
    from twosome_jax.guided_config import save_guided_config
    from twosome_jax.guided_trainer import GuidedTrainer, init, iteration
    from twosome_jax.metrics import RunLogger, read_metrics
    from twosome_jax.plotting import plot_learning_curve

    env, env_params = envs_jax.make(cfg.task, **cfg.env_kwargs)
    if not isinstance(env, GuidedEnvironment):
        raise runlib.RunError(f"task {cfg.task!r} does not provide envs_jax.interface.GuidedEnvironment")
    table = instruction_table(cfg, env) if table is None else np.asarray(table, np.float32)
    # the names of the family's episode metrics (Crafter: crafter_score), for the plot and summary
    score_keys = tuple(env.episode_metrics(np.zeros((0, len(env.achievements))), np.zeros(0)))
    trainer = GuidedTrainer.from_config(cfg, env, env_params, instruction_dim=table.shape[1])
    table = jnp.asarray(table)
    key = jax.random.PRNGKey(cfg.seed)

    run_dir.mkdir(parents=True, exist_ok=True)
    manager = runlib.checkpoint_manager(run_dir, keep=cfg.keep_checkpoints)
    notes = []
    if resume and manager.all_steps():
        abstract = jax.eval_shape(lambda k: init(trainer, k), key)
        step, state = runlib.restore_checkpoint(manager, abstract, warn=notes.append, set_aside=True)
    else:
        if not resume:
            save_guided_config(cfg, run_dir / runlib.CONFIG_FILE)
        step, state = 0, init(trainer, key)  # a resumed run killed before its first checkpoint restarts
    start = int(state.iteration)
    batch = cfg.batch_size
    episodes_log = EpisodeLog(run_dir / EPISODES_FILE, resume=resume, after_env_step=int(state.env_steps))
    logger = RunLogger(run_dir, total_steps=trainer.num_updates * batch, resume=resume, after_iteration=step,
                       progress=progress, config=cfg.to_dict())
    last_checkpoint = step or None
    try:
        with logger:
            for note in notes:
                logger.write(f"warning: {note}")
            if resume:
                logger.write(f"resumed {run_dir} at iteration {start}")
            for it in range(start, trainer.num_updates):
                t0 = time.perf_counter()
                start_steps = int(state.env_steps)
                state, metrics, episodes = iteration(trainer, table, state)
                metrics, episodes = jax.device_get((metrics, episodes))
                elapsed = time.perf_counter() - t0
                done = it + 1
                _check_finite(metrics, done, last_checkpoint)
                episodes_log.write(_episode_lines(episodes, start_steps, cfg.num_envs, env.achievements))
                totals = jax.device_get((state.episodes, state.episodes_with))
                metrics.update(env.episode_metrics(totals[1], totals[0]))
                metrics.pop("params_finite")
                metrics.update(episodes_total=totals[0], steps_per_second=batch / elapsed,
                               steps_per_second_all_seeds=batch * cfg.num_seeds / elapsed)
                logger.log(done, int(state.env_steps), metrics)
                if on_iteration is not None:
                    on_iteration(done)
                if done % cfg.checkpoint_every == 0 or done == trainer.num_updates:
                    runlib.save_checkpoint(manager, done, state)
                    last_checkpoint = done
    finally:
        episodes_log.close()
    plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", keys=score_keys + ("mean_return",),
                        x_label="env steps (per seed)")
    return summarize(cfg, run_dir, read_metrics(run_dir / "metrics.jsonl"), score_keys)


def _episode_lines(episodes: dict, start_env_step: int, num_envs: int, achievements: tuple[str, ...]) -> list[dict]:
    """The finished episodes of one iteration ([T, K, N] host arrays) as ``episodes.jsonl``
    records, in order of time step, then seed, then env."""
    import numpy as np

    lines = []
    for t, k, i in zip(*np.nonzero(episodes["done"])):
        lines.append({"seed": int(k), "env_step": int(start_env_step + (t + 1) * num_envs),
                      "achievements": {a: int(v) for a, v in zip(achievements, episodes["achievements"][t, k, i])},
                      "return": float(episodes["ret"][t, k, i]), "length": int(episodes["length"][t, k, i])})
    return lines


def summarize(cfg, run_dir: Path, records: list[dict], score_keys: tuple[str, ...]) -> dict:
    """What the run reached: its size, the family's episode metrics (mean over seeds and per
    seed) and where its files are."""
    last = records[-1] if records else {}
    out = {"task": cfg.task, "instruction": cfg.instruction, "iterations": last.get("iteration", 0),
           "env_steps": last.get("env_steps", 0), "episodes": last.get("episodes_total_per_seed", [last.get("episodes_total")]),
           "scores": {k: (last.get(k), last.get(k + "_per_seed")) for k in score_keys}, "run_dir": str(run_dir)}
    for name in ("learning_curve.png", "metrics.jsonl", EPISODES_FILE):
        if (run_dir / name).exists():
            out[name] = str(run_dir / name)
    return out


def print_summary(summary: dict, out=sys.stdout) -> None:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3g}"

    def fmt_count(n):
        return "n/a" if n is None else str(int(n))

    scores = "; ".join(f"{k} {fmt(mean)}" + (f" (per seed: {', '.join(map(fmt, per_seed))})" if per_seed else "")
                       for k, (mean, per_seed) in summary["scores"].items())
    print(f"{summary['task']} / instruction {summary['instruction']}: {summary['iterations']} iterations, "
          f"{summary['env_steps']} env steps per seed, {', '.join(fmt_count(n) for n in summary['episodes'])} "
          f"episodes per seed within the budget; {scores}", file=out)
    for name in ("learning_curve.png", "metrics.jsonl", EPISODES_FILE):
        if name in summary:
            print(f"  {name + ':':<20} {summary[name]}", file=out)


def _option_values(argv: list[str], flag: str) -> list[str]:
    values = []
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif a.startswith(flag + "="):
            values.append(a.split("=", 1)[1])
    return values


def handles(argv: list[str] | None = None) -> bool:
    """Whether a ``twosome_jax.train`` command line is for this trainer: a ``--config`` file, or
    the ``--resume`` run's ``config.yaml``, says ``trainer: guided_ppo``."""
    from twosome_jax.guided_config import is_guided_config

    argv = sys.argv[1:] if argv is None else list(argv)
    files = _option_values(argv, "--config") + [os.path.join(d, "config.yaml") for d in _option_values(argv, "--resume")]
    return any(is_guided_config(f) for f in files)


def main(argv: list[str] | None = None) -> int:
    from twosome_jax.guided_config import ConfigError, add_guided_arguments, guided_config_from_args, load_guided_config

    parser = argparse.ArgumentParser(prog="python -m twosome_jax.guided_train",
                                     description="PPO conditioned on an instruction embedding (RLAdapter's agent) "
                                                 "on a task whose family accepts agent guided-ppo (Crafter).")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue a killed run from its latest checkpoint (uses RUN_DIR/config.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar: a status line every few iterations")
    add_guided_arguments(parser)
    args = parser.parse_args(argv)

    from envs_jax.registry import UnknownEnvironment
    from twosome_jax.hub import FetchError
    from twosome_jax.model import ModelLoadError
    from twosome_jax.run import CONFIG_FILE, RunError

    try:
        if args.resume:
            given = [k for k in ("config", "task", "seed", "total_timesteps", "run_dir", "num_seeds")
                     if getattr(args, k, None) is not None] + (["set"] if args.overrides else [])
            if given:
                parser.error(f"--resume takes its settings from RUN_DIR/config.yaml; drop {', '.join(given)}")
            run_dir = Path(args.resume)
            if not (run_dir / CONFIG_FILE).is_file():
                raise RunError(f"{str(run_dir)!r} is not a run directory: it has no {CONFIG_FILE}")
            cfg = load_guided_config(run_dir / CONFIG_FILE)
        else:
            cfg = guided_config_from_args(args)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = Path(cfg.run_dir) if cfg.run_dir else Path("runs") / f"{cfg.task}-{cfg.instruction}-seed{cfg.seed}-{stamp}"
            if (run_dir / CONFIG_FILE).exists():
                parser.error(f"run directory {str(run_dir)!r} already holds a run; use --resume {run_dir} or another --run-dir")
        summary = train(cfg, run_dir, resume=bool(args.resume), progress=False if args.no_progress else None)
    except (ConfigError, RunError, ModelLoadError, FetchError, UnknownEnvironment) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
