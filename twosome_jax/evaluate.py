"""``python -m twosome_jax.evaluate RUN_DIR``: success rate and return of a trained policy.

Greedy (argmax) and sampled episodes from reset, run in parallel in one compiled loop
(``evaluation.evaluate_policy``, the function training's periodic evaluation uses too), from the
run's latest checkpoint (seed 0 of a multi-seed run unless ``--seed-index``). ``--task``
evaluates the same adapters on another task: an LLM policy reads text, so it can act wherever
the environment describes its states and actions in words, with that task's own prompts and
offered actions (the unseen-task and crossover tests). ``--zero-shot`` evaluates the untrained
model of the same run. ``--gif`` writes one greedy episode; ``--trace`` lists it step by step
with the policy's probabilities (where a failing greedy policy loops, and how close the
runner-up is).

A run of RLAdapter's loop (``trainer: rladapter``) goes to ``twosome_jax.rladapter_eval``
instead: its policy under the language models' greedy guidance.

In a deterministic environment all greedy episodes of a policy are the same episode: the greedy
figures are exact for any episode count, and one episode is run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def evaluate_run(run_dir, *, episodes: int, task: str | None = None, seed_index: int = 0, seed: int = 0,
                 gif: str | None = None, trace: bool = False, zero_shot: bool = False) -> dict:
    import jax
    import jax.numpy as jnp

    from twosome_jax import run as runlib
    from twosome_jax.evaluation import evaluate_policy
    from twosome_jax.trainer import Trainer

    cfg = runlib.load_run_config(run_dir)
    if task is not None and task != cfg.task and cfg.agent == "ppo-mlp":
        raise runlib.RunError("--task needs an LLM agent: a ppo-mlp policy reads one task's vector only")
    setup = runlib.build(cfg, task=task, critic=False)  # an evaluation reads no value
    # the checkpoint holds the training task's environment states: restore in that structure
    # (an LLM agent's adapters and critic do not depend on the task)
    import envs_jax

    trained_env, trained_params = envs_jax.make(cfg.task, **cfg.env_kwargs)
    trainer = Trainer.from_config(cfg, setup.agent, trained_env, trained_params)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)
    manager = runlib.checkpoint_manager(run_dir, keep=cfg.keep_checkpoints, create=False)
    step, state = runlib.restore_checkpoint(manager, jax.eval_shape(jax.vmap(trainer.init), keys))
    if not 0 <= seed_index < cfg.num_seeds:
        raise runlib.RunError(f"--seed-index {seed_index} out of range; the run has {cfg.num_seeds} seed(s)")
    actor = jax.tree.map(lambda x: x[seed_index], state.actor)
    if zero_shot:
        actor = jax.tree.map(jnp.zeros_like, actor) if cfg.agent != "ppo-mlp" else actor
    fn = jax.jit(lambda a, k: evaluate_policy(setup.agent, setup.env, setup.env_params, setup.frozen, a, k,
                                              episodes=episodes))
    summary = {k: float(v) for k, v in jax.device_get(fn(actor, jax.random.PRNGKey(seed))).items()}
    result = {"run_dir": str(run_dir), "checkpoint": int(step), "task": task or cfg.task, "agent": cfg.agent,
              "adapters": "none (zero-shot)" if zero_shot else "trained", "episodes": episodes, **summary}
    if gif or trace:
        episode = greedy_episode(setup, actor)
        if trace:  # the greedy episode, macro by macro, with the policy's probabilities
            result["greedy_trace"] = [{k: s[k] for k in ("action", "reward", "probs")} for s in episode[1:]]
        if gif:
            result["gif"] = write_episode_gif(setup, actor, gif, episode)
    return result


def greedy_episode(setup, actor) -> list[dict]:
    """Play the greedy episode from reset: per step the action taken, its reward, the policy's
    probabilities of every offered action, and the state after it (``None`` first)."""
    import jax
    import numpy as np

    env, params = setup.env, setup.env_params
    probs_fn = jax.jit(lambda a, o: jax.nn.softmax(setup.agent.policy_logits(setup.frozen, a, o)[0]))
    step = jax.jit(env.step_env)
    key = jax.random.PRNGKey(0)
    obs, state = env.reset_env(key, params)
    steps = [dict(action=None, reward=0.0, probs=None, state=state)]
    for _ in range(env.max_episode_steps):
        probs = np.asarray(probs_fn(actor, obs[None]))
        action = int(np.argmax(probs))
        obs, state, reward, done, _ = step(key, state, action, params)
        steps.append(dict(action=env.action_names[action], reward=float(reward), state=state,
                          probs={env.action_names[i]: round(float(p), 4) for i, p in enumerate(probs) if p > 0}))
        if bool(done):
            break
    return steps


def write_episode_gif(setup, actor, path: str, episode: list[dict] | None = None) -> str:
    """Write the greedy episode as a GIF, each frame captioned with its macro action."""
    from envs_jax.gif import save_gif

    episode = episode or greedy_episode(setup, actor)
    frames = [setup.env.render(s["state"], "reset" if s["action"] is None else f"{s['action']} ({s['reward']:+.3f})")
              for s in episode]
    save_gif(frames, path)
    return path


def main(argv: list[str] | None = None) -> int:
    from twosome_jax import rladapter_eval

    argv = sys.argv[1:] if argv is None else list(argv)
    if rladapter_eval.handles(argv):  # a run whose config.yaml says ``trainer: rladapter``
        return rladapter_eval.main(argv)
    parser = argparse.ArgumentParser(prog="python -m twosome_jax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--episodes", type=int, default=100, help="sampled episodes (default 100)")
    parser.add_argument("--task", default=None,
                        help="evaluate on another task (LLM agents: the same adapters read that task's text)")
    parser.add_argument("--zero-shot", action="store_true",
                        help="evaluate the untrained model (adapters zeroed: the run's base with no training)")
    parser.add_argument("--seed-index", type=int, default=0, help="which seed of a multi-seed run")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the sampled episodes")
    parser.add_argument("--gif", default=None, metavar="PATH", help="write one greedy episode as a GIF")
    parser.add_argument("--trace", action="store_true",
                        help="also report the greedy episode macro by macro with the action probabilities")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")

    from envs_jax.registry import UnknownEnvironment, task_name

    if args.task is not None:
        try:
            args.task = task_name(args.task)
        except UnknownEnvironment as e:
            parser.error(str(e))

    from twosome_jax.config import ConfigError
    from twosome_jax.model import ModelLoadError
    from twosome_jax.run import RunError

    try:
        result = evaluate_run(Path(args.run_dir), episodes=args.episodes, task=args.task,
                              seed_index=args.seed_index, seed=args.seed, gif=args.gif, trace=args.trace,
                              zero_shot=args.zero_shot)
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
