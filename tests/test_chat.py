"""The SmolLM2 chat format: a literal expected prompt, and transformers' ``apply_chat_template``
with the template the GGUF carries, as text and as token ids."""

from __future__ import annotations

import pytest

from twosome_jax.chat import render_chat

CONVERSATIONS = [
    [{"role": "user", "content": "What should I do next?"}],
    [{"role": "system", "content": "You are a professional game analyst."},
     {"role": "user", "content": "Player sees: <grass, tree>."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Name a vegetable.\nJust one."}],
]


def test_literal_prompt():
    assert render_chat([{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert render_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                       add_generation_prompt=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
    with pytest.raises(ValueError, match="at least one message"):  # as transformers refuses it
        render_chat([])


@pytest.mark.smollm2
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_matches_transformers_on_the_gguf_template(smollm2_gguf, add_generation_prompt):
    from twosome_jax.tokenizer import load_gguf_tokenizer

    tok = load_gguf_tokenizer(smollm2_gguf)
    assert "<|im_start|>" in tok.chat_template  # the GGUF's own template, not a transformers default
    for messages in CONVERSATIONS:
        text = render_chat(messages, add_generation_prompt)
        assert text == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        want = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
        want = want["input_ids"] if hasattr(want, "keys") else want
        assert tok(text)["input_ids"] == list(want)
    ids = tok(render_chat(CONVERSATIONS[0]))["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3  # markers are single special tokens
