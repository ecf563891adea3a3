"""Overcooked obs->text: describe() vs the reference text; compiled TextTable vs tokenizers."""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs_jax.overcooked.layout import TASK_NAMES, get_task
from envs_jax.overcooked.reachable import enumerate_reachable
from envs_jax.overcooked.text import (TextTable, TextTableError, TextTokens, describe,
                                      tokenize_jit)

DATA = Path(__file__).parent / "data"
GOLDEN_TASKS = ("tomato_salad", "lettuce_tomato_salad")


@lru_cache(maxsize=None)
def golden(task: str) -> list[dict]:
    with gzip.open(DATA / f"overcooked_{task}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def golden_texts(task: str):
    for e in golden(task):
        for s in e["steps"] + [e["final"]]:
            yield s["obs"], s["prompt"], s["actions"]


def golden_obs(task: str) -> np.ndarray:
    return np.unique(np.array([o for o, _, _ in golden_texts(task)], np.int32), axis=0)


@lru_cache(maxsize=None)
def tiny():
    from twosome_jax.tokenizer import tiny_tokenizer

    return tiny_tokenizer()


@lru_cache(maxsize=None)
def smollm2(path):
    from twosome_jax.tokenizer import load_gguf_tokenizer

    return load_gguf_tokenizer(path)


@pytest.fixture(params=["tiny", "smollm2"])
def tokenizer(request):
    if request.param == "tiny":
        return tiny()
    return smollm2(request.getfixturevalue("smollm2_gguf"))


@pytest.mark.parametrize("task", GOLDEN_TASKS)
def test_describe_equals_reference_text(task):
    n = 0
    for obs, prompt, actions in golden_texts(task):
        got_prompt, got_actions = describe(obs, task)
        assert got_prompt == prompt, obs
        assert got_actions == actions, obs
        n += 1
    assert n == sum(len(e["steps"]) + 1 for e in golden(task))


def test_describe_spec_examples_and_extra_recipes():
    p, a = describe([0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 4, 1, 0, 0, 0, 0, 0, 0], "tomato_salad")
    assert p == ("There is a fixed cutting board in the room. You notice a tomato on the table. "
                 "Currently you don't have anything in hand. To serve the dish of a bowl only "
                 "containing chopped tomato, you should first")
    assert a == ["pick up the tomato", "take the bowl", "walk to the cutting board",
                 "serve nothing", "chop nothing"]
    reset3 = [0, 5, 0, 1, 6, 0, 2, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 1, 0, 0, 0]
    closing = {
        "lettuce_tomato_salad": "tomato and lettuce",
        "lettuce_salad": "lettuce",
        "onion_salad": "onion",
        "onion_tomato_salad": "tomato and onion",
        "lettuce_onion_salad": "lettuce and onion",
        "lettuce_onion_tomato_salad": "tomato, lettuce and onion",
    }
    for task, foods in closing.items():
        p, a = describe(reset3, task)
        assert p == ("There are two fixed cutting boards in the room. You notice a tomato, a "
                     "lettuce and an onion on the different tables. Currently you don't have "
                     "anything in hand. To serve the dish of a bowl only containing chopped "
                     f"{foods}, you should first")
        assert len(a) == 8 and a[3] == "take the empty bowl"
    # Q7: the reference raises at (2,1) with an empty hand in task 0
    with pytest.raises(IndexError):
        describe([0, 0, 0, 0, 0, 1, 0, 3, 0, 2, 1, 1, 0, 0, 0, 0, 0, 0], "tomato_salad")


def test_reachable_counts():
    counts = {t: enumerate_reachable(t)["num_obs"] for t in TASK_NAMES}
    assert counts == {
        "tomato_salad": 22, "lettuce_tomato_salad": 806, "lettuce_salad": 810,
        "onion_salad": 810, "onion_tomato_salad": 806, "lettuce_onion_salad": 806,
        "lettuce_onion_tomato_salad": 802,
    }
    for t in GOLDEN_TASKS:  # every golden observation is reachable
        reach = {tuple(o) for o in enumerate_reachable(t)["obs"].tolist()}
        assert {tuple(o) for o in golden_obs(t).tolist()} <= reach
    for t in TASK_NAMES:  # describe never raises on a reachable observation (Q7 unreachable)
        for obs in enumerate_reachable(t)["obs"]:
            describe(obs, t)


def _check_tokens(table: TextTable, tok, obs: np.ndarray):
    """Independent re-check of TextTable.tokenize against the tokenizer (the contract)."""
    out = jax.tree.map(np.asarray, tokenize_jit(table, jnp.asarray(obs)))
    n = len(obs)
    assert out.prompt_ids.shape == (n, table.prompt_len_max)
    assert out.action_ids.shape == (n, table.num_actions, table.action_len_max)
    for x in (out.prompt_ids, out.prompt_len, out.action_ids, out.action_len, out.action_words):
        assert x.dtype == np.int32
    assert out.action_mask.dtype == np.bool_ and out.action_mask.all()
    for i in range(n):
        prompt, actions = describe(obs[i], table.task)
        p_ids = tok(prompt)["input_ids"]
        assert out.prompt_ids[i, : out.prompt_len[i]].tolist() == p_ids
        assert (out.prompt_ids[i, out.prompt_len[i]:] == 0).all()
        for k, a in enumerate(actions):
            full = tok(prompt + " " + a)["input_ids"]
            assert full[: len(p_ids)] == p_ids
            assert out.action_ids[i, k, : out.action_len[i, k]].tolist() == full[len(p_ids):]
            assert (out.action_ids[i, k, out.action_len[i, k]:] == 0).all()
            assert out.action_words[i, k] == len(a.split())


@pytest.mark.parametrize("task", TASK_NAMES)
def test_compiled_text_equals_tokenizer_on_reachable_and_golden(task, tokenizer):
    table = TextTable.build(task, tokenizer)  # verifies every reachable observation itself
    assert table.prompt_len_max % 8 == 0 and table.action_len_max % 8 == 0
    assert table.num_actions == get_task(task).layout.num_actions
    obs = enumerate_reachable(task)["obs"]
    if task in GOLDEN_TASKS:
        obs = np.unique(np.concatenate([obs, golden_obs(task)]), axis=0)
        assert len(obs) == enumerate_reachable(task)["num_obs"]
    _check_tokens(table, tokenizer, obs)
    # also the golden text itself (not only describe) for the golden tasks
    if task in GOLDEN_TASKS:
        seen = {}
        for o, prompt, actions in golden_texts(task):
            seen[tuple(o)] = (prompt, actions)
        keys = list(seen)
        out = jax.tree.map(np.asarray, table.tokenize(jnp.asarray(keys, jnp.int32)))
        for i, key in enumerate(keys):
            prompt, actions = seen[key]
            p_ids = tokenizer(prompt)["input_ids"]
            assert out.prompt_ids[i, : out.prompt_len[i]].tolist() == p_ids
            for k, a in enumerate(actions):
                want = tokenizer(prompt + " " + a)["input_ids"][len(p_ids):]
                assert out.action_ids[i, k, : out.action_len[i, k]].tolist() == want


def _random_obs(task_name: str, n: int, rng) -> np.ndarray:
    """Random observation vectors biased towards the cells the text rules look at."""
    task = get_task(task_name)
    lay = task.layout
    cells = [(0, 0), (1, 1), (2, 1), (3, 1), (1, 5), (5, 5), (2, 3)] + list(lay.food_spawn)
    cells += [lay.plate_spawn, lay.delivery] + list(lay.knives)
    out = []
    while len(out) < n:
        agent = cells[rng.integers(0, 4)] if rng.random() < 0.7 else tuple(rng.integers(1, 6, 2))
        obs = []
        for _ in lay.foods:
            c = agent if rng.random() < 0.2 else cells[rng.integers(0, len(cells))]
            obs += [*c, int(rng.choice([0, 3]))]
        c = agent if rng.random() < 0.3 else cells[rng.integers(0, len(cells))]
        obs += [*c]
        for cell in list(lay.knives) + [lay.delivery]:
            obs += [*cell]
        obs += [*agent] + [int(i == task.recipe_index) for i in range(7)]
        try:
            describe(obs, task)
        except IndexError:  # Q7
            continue
        out.append(obs)
    return np.array(out, np.int32)


@pytest.mark.parametrize("task", ["tomato_salad", "lettuce_tomato_salad"])
def test_compiled_text_on_random_observations(task):
    """The in-graph features follow describe() on arbitrary observation vectors too."""
    rng = np.random.default_rng(0)
    obs = _random_obs(task, 300, rng)
    tok = tiny()
    table = TextTable.build(task, tok, extra_observations=obs, verify=False)
    assert table.verify(tok, obs) == len(obs)


def test_tokenize_single_and_jit_vmap():
    table = TextTable.build("lettuce_tomato_salad", tiny(), verify=False)
    obs = enumerate_reachable("lettuce_tomato_salad")["obs"][:16]
    batch = jax.jit(table.tokenize)(jnp.asarray(obs))
    one = table.tokenize(jnp.asarray(obs[3]))
    assert isinstance(batch, TextTokens) and one.prompt_ids.shape == (table.prompt_len_max,)
    np.testing.assert_array_equal(one.prompt_ids, batch.prompt_ids[3])
    # the table is a pytree: it can be passed into jit as an argument
    f = jax.jit(lambda t, o: t.tokenize(o).prompt_len)
    np.testing.assert_array_equal(f(table, jnp.asarray(obs)), batch.prompt_len)


class _MergingTokenizer:
    """A fake character tokenizer whose token for ". X" spans the sentence boundary, so the
    sentence-fragment decomposition cannot hold; with ``merge_actions`` only the last word
    of the prompt merges with the action's first character instead."""

    def __init__(self, merge_sentences=True):
        self.merge_sentences = merge_sentences

    def __call__(self, text):
        ids, i = [1], 0
        while i < len(text):
            if self.merge_sentences and text[i:i + 2] == ". " and i + 2 < len(text):
                ids.append(1000 + ord(text[i + 2]))
                i += 3
            elif not self.merge_sentences and text[i:i + 7] == "first p":
                ids.append(2000)
                i += 7
            else:
                ids.append(ord(text[i]))
                i += 1
        return {"input_ids": ids}


def test_build_fails_loudly_when_the_tokenizer_breaks_the_assumption():
    with pytest.raises(TextTableError, match="sentence boundary"):
        TextTable.build("tomato_salad", _MergingTokenizer(True))
    with pytest.raises(TextTableError, match="prefix"):
        TextTable.build("tomato_salad", _MergingTokenizer(False))
