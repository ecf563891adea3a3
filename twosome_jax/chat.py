"""SmolLM2-Instruct's chat prompt format, rendered in Python.

SmolLM2's GGUF carries its chat template as ``tokenizer.chat_template`` metadata (Jinja): ChatML
turns ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, preceded by a default system turn when the
conversation does not start with one, and ``<|im_start|>assistant\\n`` as the generation prompt.
Rendering it here keeps prompt building free of a template engine and makes the format visible;
tests/test_chat.py checks it against transformers' ``apply_chat_template`` on the GGUF's template.
``<|im_end|>`` is SmolLM2's EOS, so a generated reply stops at the end of its turn.
"""

from __future__ import annotations

from typing import Mapping, Sequence

SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _turn(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def render_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """[{"role", "content"}, ...] -> SmolLM2 prompt text (tokenize it with special tokens parsed,
    as the GGUF tokenizer does by default). add_generation_prompt: end with the opening of an
    assistant turn, for the model to write the reply."""
    if not messages:
        raise ValueError("a chat prompt needs at least one message")
    turns = [_turn(m["role"], m["content"]) for m in messages]
    if messages[0]["role"] != "system":
        turns.insert(0, _turn("system", SMOLLM2_DEFAULT_SYSTEM))
    return "".join(turns) + ("<|im_start|>assistant\n" if add_generation_prompt else "")
