"""VirtualHome obs->text beyond the golden episodes, and the compiled text against tokenizers.

The golden episodes' text is checked step by step in test_virtualhome_env.py::test_golden_replay.
Here: the three variants without a trace (their text is food preparation's with two nouns
replaced, ADRL ``virtualhome_<variant>.py``), the reference's assertions, and the compiled text
tables of every task (SmolLM2's tokenizer and the tiny one) on every reachable observation and on
the golden prompts themselves.
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_virtualhome_env import ALL_TASKS, GOLDEN_TASKS, golden

from envs_jax.text import TextTableError
from envs_jax.virtualhome.env import VirtualHome
from envs_jax.virtualhome.text import describe

UNTRACED = {"hamburger": ("hamburger", "microwave"), "apple_pie": ("apple pie", "microwave"),
            "pizza": ("pizza", "microwave")}
RESET = [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0]


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


def golden_texts(task: str):
    for e in golden(task):
        for s in e["steps"] + [e["final"]]:
            yield s["obs"], s["prompt"], s["actions"], s["action_ids"]


@pytest.mark.parametrize("task", sorted(UNTRACED))
def test_untraced_variants_are_food_preparation_with_their_nouns(task):
    food, container = UNTRACED[task]
    n = 0
    for obs, prompt, actions, ids in golden_texts("food_preparation"):
        got = describe(obs, task)
        assert got.prompt == prompt.replace("pancake", food).replace("microwave", container)
        assert got.actions == [a.replace("pancake", food).replace("microwave", container) for a in actions]
        assert got.action_ids == ids
        n += 1
    assert n == 2563 + 58
    got = describe(RESET, task)
    assert got.prompt == (
        "There are four rooms: the kitchen, bathroom, bedroom, and living room. You are in the kitchen. "
        f"You notice {food} and microwave. Currently, you are not grabbing anything in hand. The {food} "
        f"and the microwave are not close to you. The microwave is not opend. In order to heat up the {food} "
        "in the microwave, your next step is to")
    assert got.actions == ["walk to the living room", "walk to the bathroom", "walk to the bedroom",
                           f"walk to the {food}", "walk to the microwave"]


def test_spec_examples_and_the_reference_assertions():
    got = describe([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "entertainment")
    assert got.prompt == (
        "There are four rooms: the kitchen, bathroom, bedroom, and living room. You are in the kitchen and "
        "notice chips and milk. But they are not close to you. Currently, you are not grabbing anything in "
        "hand. In order to enjoy the chips and the milk while watching TV, your next step is to")
    assert got.action_ids == [0, 2, 3, 4, 5]
    assert describe([0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0], "washing_plate").prompt == (
        "There are four rooms: the kitchen, bathroom, bedroom, and living room. You are in the bathroom. and "
        "notice nothing useful. Currently, you have grabbed the dishes in hand. In order to heat up the dishes "
        "in the dishwasher, your next step is to")
    with pytest.raises(AssertionError, match="one room"):
        describe([1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0], "food_preparation")
    with pytest.raises(AssertionError, match="more than one object"):
        describe([0, 0, 0, 1] + [0] * 8 + [1, 1, 0, 0, 1, 1, 0, 1, 0], "entertainment")


@pytest.mark.parametrize("task", ALL_TASKS)
def test_compiled_text_equals_tokenizer_on_reachable_and_golden(task, tokenizer):
    env = VirtualHome(task)
    table = env.text_table(tokenizer)  # verifies every reachable observation against describe
    obs = env.reachable_observations()
    assert table.num_actions == env.num_actions and table.prompt_len_max % 8 == 0
    out = jax.tree.map(np.asarray, table.tokenize(jnp.asarray(obs)))  # the build ran it jitted
    np.testing.assert_array_equal(out.action_mask, np.asarray(env.valid_actions(jnp.asarray(obs))))
    assert table.action_tokens_max == int(np.where(out.action_mask, out.action_len, 0).sum(-1).max())
    if task not in GOLDEN_TASKS:
        return
    # the golden text itself, tokenized here, against the table's rows
    seen = {}
    for o, prompt, actions, ids in golden_texts(task):
        seen[tuple(o)] = (prompt, actions, ids)
    keys = list(seen)
    out = jax.tree.map(np.asarray, table.tokenize(jnp.asarray(keys, jnp.int32)))
    for i, key in enumerate(keys):
        prompt, actions, ids = seen[key]
        p_ids = list(tokenizer(prompt)["input_ids"])
        assert out.prompt_ids[i, : out.prompt_len[i]].tolist() == p_ids
        assert np.flatnonzero(out.action_mask[i]).tolist() == sorted(ids)
        for a, k in zip(actions, ids):
            want = list(tokenizer(prompt + " " + a)["input_ids"])[len(p_ids):]
            assert out.action_ids[i, k, : out.action_len[i, k]].tolist() == want
            assert out.action_words[i, k] == len(a.split())


def test_text_table_rejects_a_tokenizer_that_merges_prompt_and_action():
    class Merging:  # one token for "to walk", across the prompt/action boundary
        def __call__(self, text):
            return {"input_ids": [1] + [2000 if text[i:i + 7] == "to walk" else ord(c) for i, c in enumerate(text)]}

    with pytest.raises(TextTableError, match="prefix"):
        VirtualHome("food_preparation").text_table(Merging())
