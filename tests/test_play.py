"""python -m envs_jax.play: --jsonl output, GIF, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envs_jax.registry import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
STEP_KEYS = ["obs", "prompt", "actions", "action", "reward", "done", "macro_action_steps", "prims"]


def run_play(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envs_jax.play", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_jsonl_optimal_episode_and_gif(tmp_path):
    gif = tmp_path / "ep.gif"
    res = run_play("--task", "tomato_salad", "--actions", "0", "2", "4", "0", "1", "3", "--jsonl",
                   "--gif", str(gif))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == 7
    assert list(lines[0]) == ["obs", "prompt", "actions"]
    assert lines[0]["obs"] == [0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 4, 1, 0, 0, 0, 0, 0, 0]
    assert lines[0]["prompt"].startswith("There is a fixed cutting board in the room. You notice")
    assert lines[0]["actions"][0] == "pick up the tomato"
    for line in lines[1:]:
        assert list(line) == STEP_KEYS
    assert [line["prims"] for line in lines[1:]] == ["03", "22222", "222", "2", "1111000011",
                                                      "3322222"]
    assert [line["done"] for line in lines[1:]] == [False] * 5 + [True]
    assert abs(lines[-1]["reward"] - 0.9346866841916989) < 1e-6
    # the last line carries the terminal observation (bowl on the delivery), not a reset one
    assert lines[-1]["obs"][3:5] == [3, 0]
    assert gif.exists() and gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_episode_stops_at_done_and_interactive_mode():
    res = run_play("--actions", "0", "2", "4", "0", "1", "3", "0", "0", "--jsonl")
    assert res.returncode == 0
    assert len(res.stdout.splitlines()) == 7
    assert "2 remaining action(s) not played" in res.stderr
    res = run_play("--task", "lettuce_tomato_salad", stdin="0\n9\n4\nq\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("[7] chop nothing") >= 1
    assert "-> get tomato" in res.stdout and "-> go to knife 1" in res.stdout
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "action 9 out of range; valid actions: 0-7" in err[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "sushi"], "unknown task 'sushi'; valid tasks: " + ", ".join(TASK_NAMES)),
        (["--actions", "0", "5"], "action 5 out of range; valid actions: 0-4 (0 pick up the tomato"),
        (["--task", "onion_salad", "--actions", "-1"], "action -1 out of range; valid actions: 0-7"),
        (["--actions", "x"], "action 'x' is not an integer; valid actions: 0-4"),
    ],
)
def test_errors_are_one_line(args, message):
    res = run_play(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert res.stdout == ""
