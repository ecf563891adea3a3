"""Play the JAX Overcooked by hand or with a fixed action list.

    python -m envs_jax.play --task tomato_salad                 # interactive
    python -m envs_jax.play --task lettuce_tomato_salad --actions 0 4 7 1 5 7 3 0 1 6
    python -m envs_jax.play --actions 0 2 4 0 1 3 --jsonl       # one JSON object per step
    python -m envs_jax.play --actions 0 2 4 0 1 3 --gif episode.gif

``--jsonl``: the first line is the reset observation ``{"obs", "prompt", "actions"}``; then one
line per macro step with exactly the keys ``obs, prompt, actions, action, reward, done,
macro_action_steps, prims``, where ``obs``/``prompt``/``actions`` are those *after* the action
(on the last step the terminal observation, not a reset one) and ``prims`` is the primitive
moves as a digit string (0 right, 1 down, 2 left, 3 up, 4 stay). The episode ends at ``done``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterable, Iterator

from envs_jax.overcooked.layout import TASK_NAMES, TASKS, ENV_IDS


class PlayError(Exception):
    """A user error; printed as one line to stderr, exit status 2."""


def _task_name(name: str) -> str:
    if name in TASKS:
        return name
    if name in ENV_IDS:
        return ENV_IDS[name]
    raise PlayError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")


def _check_action(a: str | int, actions: list[str]) -> int:
    valid = f"valid actions: 0-{len(actions) - 1} (" + ", ".join(
        f"{i} {s}" for i, s in enumerate(actions)) + ")"
    try:
        idx = int(a)
    except (TypeError, ValueError):
        raise PlayError(f"action {a!r} is not an integer; {valid}") from None
    if not 0 <= idx < len(actions):
        raise PlayError(f"action {idx} out of range; {valid}")
    return idx


def _interactive_choices(actions_now) -> Iterator[int]:
    """Read a choice per step from stdin (re-asks on a bad choice; 'q' or EOF ends)."""
    while True:
        try:
            line = input("choose an action (q to quit): ").strip()
        except EOFError:
            return
        if line.lower() in ("q", "quit", "exit"):
            return
        try:
            yield _check_action(line, actions_now())
        except PlayError as e:
            print(f"error: {e}", file=sys.stderr)


def play(task: str, choices: Iterable[int] | None, jsonl: bool, gif: str | None,
         out=sys.stdout) -> int:
    import jax
    import numpy as np

    from envs_jax.overcooked.env import Overcooked
    from envs_jax.overcooked.text import describe

    env = Overcooked(task)
    params = env.default_params
    key = jax.random.PRNGKey(0)
    obs, state = env.reset_env(key, params)
    step = jax.jit(env.step_env)
    prompt, actions = describe(np.asarray(obs), env.task)
    frames = []
    if gif:
        from envs_jax.overcooked.render import render

        frames.append(render(state, env.task, "reset"))

    def show(prompt, actions):
        if jsonl:
            return
        print(prompt, file=out)
        for i, a in enumerate(actions):
            print(f"  [{i}] {a}", file=out)

    if jsonl:
        print(json.dumps({"obs": np.asarray(obs).tolist(), "prompt": prompt, "actions": actions}),
              file=out, flush=True)
    show(prompt, actions)
    if choices is None:
        choices = _interactive_choices(lambda: actions)
    steps = 0
    choices = list(choices) if isinstance(choices, (list, tuple)) else choices
    for a in choices:
        obs, state, reward, done, info = step(key, state, a, params)
        k = int(info["macro_action_steps"])
        prims = "".join(str(int(p)) for p in np.asarray(info["prims"])[:k])
        prompt, actions = describe(np.asarray(obs), env.task)
        steps += 1
        if gif:
            frames.append(render(state, env.task, f"{env.macro_names[a]}  r={float(reward):+.4f}"))
        if jsonl:
            print(json.dumps({
                "obs": np.asarray(obs).tolist(), "prompt": prompt, "actions": actions,
                "action": a, "reward": float(str(np.float32(reward))), "done": bool(done),
                "macro_action_steps": k, "prims": prims,
            }), file=out, flush=True)
        else:
            print(f"-> {env.macro_names[a]}: reward {float(reward):+.6f}, {k} primitive steps "
                  f"({prims}), done={bool(done)}", file=out)
        if bool(done):
            if not jsonl:
                ok = "correct dish delivered" if bool(info["success"]) else "time limit"
                print(f"episode over after {steps} macro steps ({int(state.time)} primitive "
                      f"steps): {ok}", file=out)
            if isinstance(choices, list) and len(choices) > steps:
                print(f"note: the episode ended; {len(choices) - steps} remaining action(s) "
                      "not played", file=sys.stderr)
            break
        show(prompt, actions)
    if gif:
        from envs_jax.overcooked.render import save_gif

        save_gif(frames, gif)
        if not jsonl:
            print(f"wrote {gif} ({len(frames)} frames)", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m envs_jax.play", description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="tomato_salad",
                    help=f"task name: {', '.join(TASK_NAMES)} (default tomato_salad)")
    ap.add_argument("--actions", nargs="+", metavar="A",
                    help="play this list of macro actions instead of asking")
    ap.add_argument("--jsonl", action="store_true", help="print one JSON object per step")
    ap.add_argument("--gif", metavar="PATH", help="write the episode as an animated GIF")
    args = ap.parse_args(argv)
    try:
        task = _task_name(args.task)
        choices = None
        if args.actions is not None:
            from envs_jax.overcooked.text import _spec

            names = _spec(task).default_actions
            choices = [_check_action(a, names) for a in args.actions]
        return play(task, choices, args.jsonl, args.gif)
    except PlayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
