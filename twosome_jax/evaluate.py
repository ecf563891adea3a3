"""``python -m twosome_jax.evaluate RUN_DIR``: success rate and return of a trained policy.

Greedy (argmax) and sampled episodes from reset, run in parallel in one compiled loop, from the
run's latest checkpoint (seed 0 of a multi-seed run unless ``--seed-index``). ``--task`` scores
the same adapters on another recipe (unseen-task evaluation; LLM agents only, since their input
is text). ``--gif`` writes one greedy episode; ``--trace`` lists it macro by macro with the policy's
probabilities (where a failing greedy policy loops, and how close the runner-up is).

The environment has no randomness, so all greedy episodes of a policy are the same episode: the
greedy figures are exact for any episode count, and one episode is run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def evaluate_run(run_dir, *, episodes: int, task: str | None = None, seed_index: int = 0, seed: int = 0,
                 gif: str | None = None, trace: bool = False) -> dict:
    import jax
    import numpy as np

    from twosome_jax import run as runlib
    from twosome_jax.trainer import Trainer, evaluate, evaluation_table

    cfg = runlib.load_run_config(run_dir)
    if task is not None and task != cfg.task and cfg.agent == "ppo-mlp":
        raise runlib.RunError("--task needs an LLM agent: a ppo-mlp policy reads one layout's vector only")
    setup = runlib.build(cfg, task=task)
    trainer = Trainer.from_config(cfg, setup.agent, setup.env, setup.env_params)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)
    manager = runlib.checkpoint_manager(run_dir, keep=cfg.keep_checkpoints, create=False)
    step, state = runlib.restore_checkpoint(manager, jax.eval_shape(jax.vmap(trainer.init), keys))
    if not 0 <= seed_index < cfg.num_seeds:
        raise runlib.RunError(f"--seed-index {seed_index} out of range; the run has {cfg.num_seeds} seed(s)")
    actor = jax.tree.map(lambda x: x[seed_index], state.actor)

    table = jax.jit(lambda a: evaluation_table(setup.agent, setup.frozen, a, episodes))(actor)

    def run(greedy, n):
        fn = jax.jit(lambda a, t, k: evaluate(setup.agent, setup.env, setup.env_params, setup.frozen, a, k,
                                              episodes=n, greedy=greedy, table=t))
        return jax.device_get(fn(actor, table, jax.random.PRNGKey(seed)))

    greedy, sampled = run(True, 1), run(False, episodes)
    result = {
        "run_dir": str(run_dir), "checkpoint": int(step), "task": task or cfg.task, "agent": cfg.agent,
        "episodes": episodes,
        "success_rate_greedy": float(np.mean(greedy["success"])),
        "success_rate_sampled": float(np.mean(sampled["success"])),
        "return_greedy": float(np.mean(greedy["returns"])),
        "return_sampled": float(np.mean(sampled["returns"])),
        "length_greedy": float(np.mean(greedy["lengths"])),
        "length_sampled": float(np.mean(sampled["lengths"])),
    }
    if gif or trace:
        episode = greedy_episode(setup, actor)
        if trace:  # the greedy episode, macro by macro, with the policy's probabilities
            result["greedy_trace"] = [{k: s[k] for k in ("action", "reward", "probs")} for s in episode[1:]]
        if gif:
            result["gif"] = write_episode_gif(setup, actor, gif, episode)
    return result


def greedy_episode(setup, actor, max_macro_steps: int = 256) -> list[dict]:
    """Play the greedy episode from reset: per macro step the action taken, its reward, the
    policy's probabilities of every macro action, and the state after it (``None`` first)."""
    import jax
    import numpy as np

    env, params = setup.env, setup.env_params
    probs_fn = jax.jit(lambda a, o: jax.nn.softmax(setup.agent.policy_logits(setup.frozen, a, o)[0]))
    step = jax.jit(env.step_env)
    key = jax.random.PRNGKey(0)
    obs, state = env.reset_env(key, params)
    steps = [dict(action=None, reward=0.0, probs=None, state=state)]
    for _ in range(max_macro_steps):  # a macro takes >= 1 primitive step; episodes end by 210
        probs = np.asarray(probs_fn(actor, obs[None]))
        action = int(np.argmax(probs))
        obs, state, reward, done, _ = step(key, state, action, params)
        steps.append(dict(action=env.macro_names[action], reward=float(reward), state=state,
                          probs={env.macro_names[i]: round(float(p), 4) for i, p in enumerate(probs) if p > 0}))
        if bool(done):
            break
    return steps


def write_episode_gif(setup, actor, path: str, episode: list[dict] | None = None) -> str:
    """Write the greedy episode as a GIF, each frame captioned with its macro action."""
    from envs_jax.overcooked.render import save_gif

    episode = episode or greedy_episode(setup, actor)
    frames = [setup.env.render(s["state"], "reset" if s["action"] is None else f"{s['action']} ({s['reward']:+.3f})")
              for s in episode]
    save_gif(frames, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twosome_jax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--episodes", type=int, default=100, help="sampled episodes (default 100)")
    parser.add_argument("--task", default=None, help="evaluate on another task (LLM agents)")
    parser.add_argument("--seed-index", type=int, default=0, help="which seed of a multi-seed run")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the sampled episodes")
    parser.add_argument("--gif", default=None, metavar="PATH", help="write one greedy episode as a GIF")
    parser.add_argument("--trace", action="store_true",
                        help="also report the greedy episode macro by macro with the action probabilities")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")

    from twosome_jax.config import TASKS, ConfigError
    from twosome_jax.model import ModelLoadError
    from twosome_jax.run import RunError

    if args.task is not None and args.task not in TASKS:
        parser.error(f"unknown task {args.task!r}; valid: {', '.join(TASKS)}")
    try:
        result = evaluate_run(Path(args.run_dir), episodes=args.episodes, task=args.task,
                              seed_index=args.seed_index, seed=args.seed, gif=args.gif, trace=args.trace)
    except (ConfigError, RunError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        trace = result.pop("greedy_trace", None)
        width = max(map(len, result))
        for k, v in result.items():
            print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
        for i, s in enumerate(trace or []):
            top = sorted(s["probs"].items(), key=lambda kv: -kv[1])[:4]
            print(f"{i:3d} {s['action']:<16} {s['reward']:+.3f} | " + " ".join(f"{a}={p:.2f}" for a, p in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
