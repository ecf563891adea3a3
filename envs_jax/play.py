"""Play any registered environment by hand or with a fixed action list.

    python -m envs_jax.play --task tomato_salad                 # interactive
    python -m envs_jax.play --task lettuce_tomato_salad --actions 0 4 7 1 5 7 3 0 1 6
    python -m envs_jax.play --actions 0 2 4 0 1 3 --jsonl       # one JSON object per step
    python -m envs_jax.play --task food_preparation --actions 4 6 5 8 7 9 --gif episode.gif

``A`` are environment action indices. ``--jsonl``: the first line is the reset observation
(``obs``, ``prompt``, ``actions`` and, where the offered actions depend on the state,
``action_ids``); then one line per step with the same keys *after* the action (on the last step
the terminal observation, not a reset one), then ``action``, ``reward``, ``done`` and the
family's own fields of its reference traces (Overcooked: ``macro_action_steps`` and ``prims``,
the primitive moves as a digit string, 0 right, 1 down, 2 left, 3 up, 4 stay; VirtualHome:
``succeed``). The episode ends at ``done``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterable, Iterator

from envs_jax.registry import TASK_NAMES, UnknownEnvironment, task_name


class PlayError(Exception):
    """A user error; printed as one line to stderr, exit status 2."""


def _check_action(a: str | int, names: tuple[str, ...]) -> int:
    valid = f"valid actions: 0-{len(names) - 1} (" + ", ".join(f"{i} {s}" for i, s in enumerate(names)) + ")"
    try:
        idx = int(a)
    except (TypeError, ValueError):
        raise PlayError(f"action {a!r} is not an integer; {valid}") from None
    if not 0 <= idx < len(names):
        raise PlayError(f"action {idx} out of range; {valid}")
    return idx


def _interactive_choices(names: tuple[str, ...]) -> Iterator[int]:
    """Read a choice per step from stdin (re-asks on a bad choice; 'q' or EOF ends)."""
    while True:
        try:
            line = input("choose an action (q to quit): ").strip()
        except EOFError:
            return
        if line.lower() in ("q", "quit", "exit"):
            return
        try:
            yield _check_action(line, names)
        except PlayError as e:
            print(f"error: {e}", file=sys.stderr)


def _text_fields(env, obs) -> dict:
    """``obs``, ``prompt``, ``actions`` and, where the state chooses the offered actions,
    ``action_ids`` (the keys of the family's reference traces)."""
    import numpy as np

    d = env.describe(np.asarray(obs))
    out = {"obs": np.asarray(obs).tolist(), "prompt": d.prompt, "actions": d.actions}
    if list(d.action_ids) != list(range(env.num_actions)):
        out["action_ids"] = [int(i) for i in d.action_ids]
    return out


def play(task: str, choices: Iterable[int] | None, jsonl: bool, gif: str | None, out=sys.stdout) -> int:
    import jax
    import numpy as np

    import envs_jax

    env, params = envs_jax.make(task)
    key = jax.random.PRNGKey(0)
    obs, state = env.reset_env(key, params)
    step = jax.jit(env.step_env)
    text = _text_fields(env, obs)
    frames = [env.render(state, "reset")] if gif else []

    def show(text):
        if jsonl:
            return
        print(text["prompt"], file=out)
        for i, a in zip(text.get("action_ids", range(len(text["actions"]))), text["actions"]):
            print(f"  [{i}] {a}", file=out)

    if jsonl:
        print(json.dumps(text), file=out, flush=True)
    show(text)
    if choices is None:
        choices = _interactive_choices(env.action_names)
    steps = 0
    choices = list(choices) if isinstance(choices, (list, tuple)) else choices
    for a in choices:
        obs, state, reward, done, info = step(key, state, a, params)
        text = _text_fields(env, obs)
        fields = env.trace_fields(info)
        steps += 1
        if gif:
            frames.append(env.render(state, f"{env.action_names[a]}  r={float(reward):+.4f}"))
        if jsonl:
            print(json.dumps({**text, "action": a, "reward": float(str(np.float32(reward))), "done": bool(done),
                              **fields}), file=out, flush=True)
        else:
            extra = ", ".join(f"{k} {v}" for k, v in fields.items())
            print(f"-> {env.action_names[a]}: reward {float(reward):+.6f}, {extra}, done={bool(done)}", file=out)
        if bool(done):
            if not jsonl:
                ok = "goal reached" if bool(info["success"]) else "time limit"
                print(f"episode over after {steps} steps ({int(info['returned_episode_lengths'])} in the "
                      f"environment's own time): {ok}", file=out)
            if isinstance(choices, list) and len(choices) > steps:
                print(f"note: the episode ended; {len(choices) - steps} remaining action(s) not played",
                      file=sys.stderr)
            break
        show(text)
    if gif:
        from envs_jax.gif import save_gif

        save_gif(frames, gif)
        if not jsonl:
            print(f"wrote {gif} ({len(frames)} frames)", file=out)
    return 0


def _action_labels(task: str) -> tuple[str, ...]:
    """A label per env action for error messages: its text at reset where the reset state
    offers it, else its short name."""
    import jax

    import envs_jax

    env, params = envs_jax.make(task)
    d = env.describe(env.reset_env(jax.random.PRNGKey(0), params)[0])
    text = dict(zip(d.action_ids, d.actions))
    return tuple(text.get(i, name) for i, name in enumerate(env.action_names))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m envs_jax.play", description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="tomato_salad", help=f"task name: {', '.join(TASK_NAMES)} (default tomato_salad)")
    ap.add_argument("--actions", nargs="+", metavar="A", help="play this list of env actions instead of asking")
    ap.add_argument("--jsonl", action="store_true", help="print one JSON object per step")
    ap.add_argument("--gif", metavar="PATH", help="write the episode as an animated GIF")
    args = ap.parse_args(argv)
    try:
        try:
            task = task_name(args.task)
        except UnknownEnvironment as e:
            raise PlayError(str(e)) from None
        choices = None
        if args.actions is not None:
            names = _action_labels(task)
            choices = [_check_action(a, names) for a in args.actions]
        return play(task, choices, args.jsonl, args.gif)
    except PlayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
