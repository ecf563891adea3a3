"""RLAdapter's guidance query, piece by piece: comprehension score, prompts, analyst, decision model.

Every ``QUERY_INTERVAL`` env steps RLAdapter (AdaRefiner ``models/lm.py`` ``AdaLM.inst_generate``)
asks its language models for a new instruction, for each env:

1. the **comprehension score** of the recent actions against the instruction they were taken
   under: ``sigmoid(10 (cos - 0.1))`` of the cosine of their sentence embeddings
   (:func:`comprehension_scores`);
2. the **adapter LM** (the "analyst") reads the situation and the score (:func:`adapter_prompt`)
   and writes a short analysis (:class:`AdapterLM`);
3. the **decision model** reads the situation and the analysis (:func:`decision_prompt`) and
   picks 3 of the 31 sub-goals (:class:`DecisionModel`); their sentence
   (:meth:`DecisionModel.instruction_text`) conditions the policy until the next query.

Where this keeps or fixes the release's quirks:

* Truncation (quirk Q5, kept). A window of 100 action names is more text than the sentence
  encoder reads (``max_seq_length``, 256 tokens for all-MiniLM-L6-v2; 70 names already fill it in
  tests/test_guidance.py), and its truncation keeps the first tokens: only the **oldest** actions
  of the window count. That is the default here, as in the release. ``keep="newest"`` instead
  drops the oldest names until the rest fits whole, a labelled fix.
* Prompts (quirk Q6, fixed). The release writes Llama-2-chat's ``[INST] <<SYS>>`` prompt and then
  wraps it a second time for SFT. Here the two prompts' system and user texts are the release's,
  literally, rendered once in SmolLM2's chat template (``chat.render_chat``), so an SFT example
  can be that same prompt followed by the analysis.
* Decision (quirk Q7, fixed). GPT-4 answered in free text, used verbatim. Here a frozen LLaMA
  *scores* the 31 sub-goals (:class:`ScoringDecisionModel`), so the answer is always 3 distinct
  valid sub-goals, and the instruction is their sentence in list order.
"""

from __future__ import annotations

import abc
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.crafter import text as crafter_text
from envs_jax.crafter.constants import SUBGOALS
from envs_jax.text import TextTableError, TextTokens, round_up
from twosome_jax.chat import render_chat
from twosome_jax.instructions import subgoal_sentences
from twosome_jax.model import Llama, load_model, split_model
from twosome_jax.model.generate import generate, pad_prompts, prefix_cache
from twosome_jax.scoring import IMPLEMENTATIONS, policy_logits

SUBGOALS_PER_INSTRUCTION = 3  # "suggest 3 sub-goals" (AdaRefiner utils.py gpt_template)
HISTORY_KEEP = ("oldest", "newest")  # which end of a too-long action history the score sees

# AdaRefiner models/lm.py: the adapter LM's system and user messages
ANALYST_SYSTEM = (
    "You are a professional game analyst. A player is playing a 2D Minecraft game. You will get the player's "
    "observation, status information, and its comprehension score of language guidance. You will be asked to "
    "provide concise summaries and suggestions about this player.")
ANALYST_USER = ("Player sees: <{sees}>. Player status: <{status}>. Past action: <{last_action}>. "
                "Past sub-goals: <{instruction}>. Player's comprehension score: <{score:.3f}>.")
# AdaRefiner utils.py gpt_template: the decision LLM's system and user messages
DECISION_SYSTEM = (
    "You are a professional game analyst. A player is playing a 2D Minecraft game. You will also get analysis "
    f"about this player from another analyst. Available sub-goals are: <{', '.join(SUBGOALS)}>. You are asked to "
    "suggest 3 sub-goals from available sub-goals in one sentence without any other words.")
DECISION_USER = ("Player sees: <{sees}>. Player status: <{status}>. Past action: <{last_action}>. "
                 "Past sub-goals: <{instruction}>. Analysis: <{analysis}>.")


# ------------------------------------------------------------------------ comprehension score
def comprehension_score(cosine):
    """``sigmoid(10 (cosine - 0.1))``: 0.5 at cosine 0.1 (a float for a float, else an array)."""
    value = 1.0 / (1.0 + np.exp(-10.0 * (np.asarray(cosine, np.float64) - 0.1)))
    return float(value) if np.ndim(value) == 0 else value


def comprehension_scores(encoder, histories: Sequence[str], instructions: Sequence[str], *,
                         keep: str = "oldest") -> np.ndarray:
    """float64 [N]: the comprehension score of each action history (action names joined by
    ``", "``, ``envs_jax.crafter.text.action_history``) against the instruction it was acted
    under (``""`` before the first). ``encoder.encode(texts)`` gives unit embeddings
    (``SentenceEncoder``). keep: ``"oldest"`` passes the history as it is, and the encoder's
    truncation keeps its first tokens (the release); ``"newest"`` keeps the longest run of the
    latest actions that the encoder reads whole (needs the encoder's ``tokenizer``)."""
    histories, instructions = _strings("histories", histories), _strings("instructions", instructions)
    if len(histories) != len(instructions):
        raise ValueError(f"{len(histories)} histories but {len(instructions)} instructions; give one of each per env")
    if keep not in HISTORY_KEEP:
        raise ValueError(f"unknown keep {keep!r}; accepted: {', '.join(HISTORY_KEEP)}")
    if not histories:
        return np.zeros((0,), np.float64)
    if keep == "newest":
        tokenizer = getattr(encoder, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"keep='newest' needs an encoder with a tokenizer; {type(encoder).__name__} has none")
        histories = [_newest_that_fit(tokenizer, h) for h in histories]
    e = np.asarray(encoder.encode(histories + instructions), np.float64)
    n = len(histories)
    return comprehension_score(np.sum(e[:n] * e[n:], axis=-1))


def _newest_that_fit(tokenizer, history: str) -> str:
    """The longest tail of ``history``'s action names that ``tokenizer`` does not truncate."""
    names = history.split(", ")
    fits = lambda start: not tokenizer.encode(", ".join(names[start:])).overflowing
    lo, hi = 0, len(names)  # fits(hi) (nothing left) holds; find the smallest start that fits
    if fits(lo):
        return history
    while hi - lo > 1:  # invariant: not fits(lo), fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return ", ".join(names[hi:])


def _strings(name: str, values) -> list[str]:
    if isinstance(values, str):
        raise ValueError(f"{name} must be a list of strings, got one string {values[:40]!r}")
    values = list(values)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"{name}[{i}] is {type(v).__name__} {v!r:.40}; {name} must be strings")
    return values


# ------------------------------------------------------------------------------------ prompts
def situation(state, actions: Sequence[int]) -> tuple[str, str, str]:
    """``(sees, status, last_action)`` of a Craftax-Classic state and the env actions taken so
    far (oldest first), as the prompts write them: ``("grass, tree", "9 health, 9 food, ...",
    "do")`` (see ``envs_jax.crafter.text``)."""
    sees = ", ".join(crafter_text.fov_names(state))
    status = ", ".join(f"{v} {k}" for k, v in crafter_text.status_items(state))
    return sees, status, crafter_text.action_history(list(actions)[-1:])


def adapter_prompt(sees: str, status: str, last_action: str, instruction: str, score: float) -> str:
    """The adapter LM's prompt in SmolLM2's chat format, ending with the assistant turn's opening."""
    if not isinstance(score, (int, float, np.floating)) or not 0.0 <= float(score) <= 1.0:
        raise ValueError(f"score {score!r} is not a comprehension score; accepted: a number in [0, 1]")
    user = ANALYST_USER.format(score=float(score), **_pieces(sees=sees, status=status, last_action=last_action,
                                                              instruction=instruction))
    return render_chat([{"role": "system", "content": ANALYST_SYSTEM}, {"role": "user", "content": user}])


def decision_prompt(sees: str, status: str, last_action: str, instruction: str, analysis: str) -> str:
    """The decision model's prompt in SmolLM2's chat format, ending with the assistant turn's opening."""
    user = DECISION_USER.format(**_pieces(sees=sees, status=status, last_action=last_action,
                                          instruction=instruction, analysis=analysis))
    return render_chat([{"role": "system", "content": DECISION_SYSTEM}, {"role": "user", "content": user}])


def _pieces(**pieces) -> dict:
    for name, value in pieces.items():
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__} {value!r:.40}")
    return pieces


def _system_head(system: str) -> str:
    """The text every prompt with this system message starts with: the system turn and the
    opening of the user turn (everything before the user's content)."""
    marker = "\x00"
    full = render_chat([{"role": "system", "content": system}, {"role": "user", "content": marker}])
    return full[:full.index(marker)]


_OPENING = render_chat([{"role": "user", "content": ""}])[len(render_chat([{"role": "user", "content": ""}],
                                                                        add_generation_prompt=False)):]


# ---------------------------------------------------------------------------------- the models
def _load(model, tokenizer, dtype, lora, who: str):
    """(model, tokenizer) from a model spec (``model.load_model``) or a loaded ``Llama``."""
    if isinstance(model, (str, os.PathLike)):
        _, model, tokenizer = load_model(model, dtype=dtype, lora=lora)
        return model, tokenizer
    if not isinstance(model, Llama):
        raise ValueError(f"{who} model must be a model spec or a Llama, got {type(model).__name__}")
    if tokenizer is None:
        raise ValueError(f"{who}: a loaded Llama needs its tokenizer")
    return model, tokenizer


class AdapterLM:
    """The analyst: writes an analysis for each adapter prompt of a batch, with a KV cache.

    Every adapter prompt starts with the same system turn. Its keys and values are computed once
    (``generate.prefix_cache``) and reused by every round, so a round reads only the situation;
    :meth:`update_adapters` recomputes them when SFT has changed the adapters. A round generates
    at most ``max_new_tokens`` tokens per prompt (64; the release allowed 100), sampled at
    ``temperature`` within the ``top_p`` nucleus or greedily, and stops at the end of the
    assistant turn (``<|im_end|>``, and the model's EOS). The analysis is the generated text
    without special tokens, stripped, as the release's ``text-generation`` pipeline returned it.
    Prompt widths after the prefix are padded to multiples of ``width_multiple`` tokens, so a run
    compiles a few decode programs.
    """

    def __init__(self, model="smollm2-135m-instruct", tokenizer=None, *, dtype=None, lora=None,
                 max_new_tokens: int = 64, temperature: float = 0.6, top_p: float = 0.9,
                 width_multiple: int = 32):
        """model: a model spec (``lora``: the LoRAConfig to attach) or a loaded ``Llama`` with its
        ``tokenizer``; its adapters, if any, are used."""
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (greedy decoding is analyses(..., greedy=True)), got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        model, self.tokenizer = _load(model, tokenizer, dtype, lora, "the adapter")
        self.graphdef, self.base, self.lora = split_model(model)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, float(temperature), float(top_p)
        self.width_multiple = int(width_multiple)
        vocab = self.tokenizer.get_vocab()
        config = model.config
        self.eos_ids = sorted({config.eos_token_id} | ({vocab["<|im_end|>"]} if "<|im_end|>" in vocab else set()))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.prefix_ids = list(self.tokenizer(_system_head(ANALYST_SYSTEM))["input_ids"])
        self.prefix = prefix_cache(self.graphdef, self.base, self.lora, self.prefix_ids)

    def update_adapters(self, lora) -> None:
        """Use new adapter weights (an ``nnx.State`` of ``LoRAParam``, as ``split_model`` gives)
        and recompute the cached system turn with them."""
        self.lora = lora
        self.prefix = prefix_cache(self.graphdef, self.base, self.lora, self.prefix_ids)

    def analyses(self, prompts: Sequence[str], key=None, *, greedy: bool = False) -> list[str]:
        """One analysis per prompt (built by :func:`adapter_prompt`); ``key`` (a jax key) drives
        the sampling and is required unless ``greedy``."""
        prompts = _strings("prompts", prompts)
        if not prompts:
            raise ValueError("analyses needs at least one prompt")
        if not greedy and key is None:
            raise ValueError("sampled analyses need a key (or greedy=True)")
        head = len(self.prefix_ids)
        rest = []
        for i, ids in enumerate(self.tokenizer(prompts)["input_ids"]):
            if list(ids[:head]) != self.prefix_ids or len(ids) == head:
                raise ValueError(f"prompts[{i}] does not start with the analyst's system turn and a user message "
                                 f"({prompts[i][:60]!r}...); build it with adapter_prompt()")
            rest.append(ids[head:])
        width = round_up(max(len(r) for r in rest), self.width_multiple)
        ids, lens = pad_prompts(rest, self.pad_id, width)
        out = generate(self.graphdef, self.base, self.lora, ids, lens, max_new_tokens=self.max_new_tokens,
                       eos_id=self.eos_ids, pad_id=self.pad_id, temperature=0.0 if greedy else self.temperature,
                       top_p=self.top_p, key=None if greedy else key, prefix=self.prefix)
        tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
        return [self.tokenizer.decode(t[:n], skip_special_tokens=True).strip() for t, n in zip(tokens, lengths)]


def pick_subgoals(scores, key=None, *, k: int = SUBGOALS_PER_INSTRUCTION, temperature: float = 1.0,
                  greedy: bool = False) -> np.ndarray:
    """int32 [N, k]: k distinct candidates per row of ``scores`` [N, C].

    greedy: the k best, best first. Otherwise k draws without replacement from
    softmax(scores / temperature), in the order drawn, by Gumbel-top-k: the k largest of
    ``scores / temperature + Gumbel noise`` are distributed as successive draws without
    replacement (Kool, van Hoof and Welling, ICML 2019), one vectorised step for all rows."""
    scores = jnp.asarray(scores, jnp.float32)
    if scores.ndim != 2 or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"cannot pick {k} of scores shaped {tuple(scores.shape)}; need [N, C] with C >= {k}")
    if greedy:
        return np.asarray(jax.lax.top_k(scores, k)[1], np.int32)
    if key is None:
        raise ValueError("sampled picks need a key (or greedy=True)")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    noisy = scores / temperature + jax.random.gumbel(key, scores.shape, jnp.float32)
    return np.asarray(jax.lax.top_k(noisy, k)[1], np.int32)


class DecisionModel(abc.ABC):
    """What picks the sub-goals of the next instruction, for a batch of :func:`decision_prompt`s.

    ``choose(prompts, key, greedy)`` returns one tuple of 3 distinct indices into ``SUBGOALS`` per
    prompt: sampled when training (``key`` required), the model's best when ``greedy``
    (evaluation). ``instruction_text`` is the sentence the policy is conditioned on."""

    subgoals: tuple[str, ...] = SUBGOALS

    @abc.abstractmethod
    def choose(self, prompts: Sequence[str], key=None, greedy: bool = False) -> list[tuple[int, int, int]]:
        ...

    def instruction_text(self, indices: Sequence[int]) -> str:
        """``"eat plant, attack zombie, chop tree."``: the sub-goals in list order, whatever the
        order they were picked in, so the sentence is a row of the random-sub-goal control's
        table (``instructions.subgoal_sentences``) and the draw order does not change it."""
        picked = list(indices)
        n = len(self.subgoals)
        if (len(picked) != SUBGOALS_PER_INSTRUCTION or len(set(picked)) != len(picked)
                or not all(isinstance(i, (int, np.integer)) and 0 <= i < n for i in picked)):
            raise ValueError(f"sub-goals {picked!r} are not an instruction; accepted: {SUBGOALS_PER_INSTRUCTION} "
                             f"distinct indices in 0..{n - 1}")
        chosen = [self.subgoals[int(i)] for i in sorted(picked)]
        return subgoal_sentences(chosen, len(chosen))[0]  # the rule of every instruction sentence


@functools.partial(jax.jit, static_argnums=0, static_argnames=("implementation", "action_tokens_max"))
def _subgoal_scores(graphdef, base, lora, tokens, prefix, *, implementation, action_tokens_max):
    return policy_logits(graphdef, base, lora, tokens, implementation=implementation, normalization="token",
                         use_lora=False, action_tokens_max=action_tokens_max, prefix=prefix)


class ScoringDecisionModel(DecisionModel):
    """A frozen LLaMA (adapters off) as the decision model: it scores each sub-goal as the opening
    of its reply to the decision prompt and picks 3 (``pick_subgoals``, temperature 1 like the
    release's GPT-4 call).

    A sub-goal's score is the mean log-probability of its tokens (TWOSOME's ``"token"``
    normalisation) right after the assistant turn's opening ``<|im_start|>assistant\\n``, with
    nothing in between: that is where the model would start writing the sub-goals the prompt asks
    for, the same context for all 31, and the sub-goal text is the list's own spelling. (The
    environments' rule, the action after the prompt and a space, would start the reply with a
    space token at the start of a line.) The 31 candidates are scored in one packed sequence per
    prompt (``scoring``, ``packed``), batched over prompts.

    The candidates' tokens are found once: every decision prompt ends with the same opening, and
    the tokenizers the project loads (byte-level BPE split at special tokens and newlines) start
    a new token after it, so what a sub-goal adds is the same after every prompt. The constructor
    checks that after two different prompts. Prompt widths are padded to multiples of
    ``width_multiple`` tokens, so a run compiles a few scoring programs.

    Every decision prompt starts with the same system turn (179 of 256-324 tokens with SmolLM2,
    benchmarks/README.md). Its keys and values are computed once (``generate.prefix_cache``,
    adapters off; the weights never change) and each prompt is scored from the tokens after it
    (``scoring``'s ``prefix``), which gives the scores of the whole prompt; ``cache_prefix=False``
    reads the whole prompt every time (the baseline of benchmarks/guidance_speed.py). The head's
    tokens start every prompt's tokens for the reason the candidates' do: the head ends with a
    newline, where these tokenizers start a new token; :meth:`scores` checks it.
    """

    def __init__(self, model="smollm2-135m-instruct", tokenizer=None, *, dtype=None, temperature: float = 1.0,
                 implementation: str = "packed", width_multiple: int = 32, cache_prefix: bool = True):
        """model: a model spec (``model.load_model``: ``smollm2-135m-instruct``, an HF checkpoint
        directory, a llama GGUF) or a loaded ``Llama`` with its ``tokenizer``."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (greedy picks are choose(..., greedy=True)), got {temperature}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"unknown scoring implementation {implementation!r}; accepted: {', '.join(IMPLEMENTATIONS)}")
        model, self.tokenizer = _load(model, tokenizer, dtype, None, "the decision")
        self.graphdef, self.base, self.lora = split_model(model)
        self.temperature, self.implementation = float(temperature), implementation
        self.width_multiple = int(width_multiple)
        first = self._candidate_tokens(decision_prompt("", "", "", "", ""))
        if first != self._candidate_tokens(decision_prompt("grass, tree", "9 health", "do", "sleep.", "Rest.")):
            raise TextTableError("this tokenizer splits the sub-goals differently after different decision prompts; "
                                 "the scoring decision model needs them to start a new token after the prompt")
        n, L = len(self.subgoals), round_up(max(len(t) for t in first))
        self.candidate_ids = np.zeros((n, L), np.int32)
        for i, t in enumerate(first):
            self.candidate_ids[i, :len(t)] = t
        self.candidate_len = np.array([len(t) for t in first], np.int32)
        self.candidate_words = np.array([len(s.split()) for s in self.subgoals], np.int32)
        self.prefix_ids = list(self.tokenizer(_system_head(DECISION_SYSTEM))["input_ids"]) if cache_prefix else []
        self.prefix = (prefix_cache(self.graphdef, self.base, self.lora, self.prefix_ids, use_lora=False)
                       if cache_prefix else None)

    def _candidate_tokens(self, prompt: str) -> list[list[int]]:
        head = list(self.tokenizer(prompt)["input_ids"])
        out = []
        for s, ids in zip(self.subgoals, self.tokenizer([prompt + s for s in self.subgoals])["input_ids"]):
            if list(ids[:len(head)]) != head or len(ids) == len(head):
                raise TextTableError(f"the tokens of a decision prompt are not a prefix of its tokens followed by "
                                     f"{s!r}; this tokenizer cannot split them")
            out.append(list(ids[len(head):]))
        return out

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """float32 [N, 31]: each sub-goal's token-normalised log-probability after each prompt."""
        prompts = _strings("prompts", prompts)
        if not prompts:
            raise ValueError("the decision model needs at least one prompt")
        for i, p in enumerate(prompts):
            if not p.endswith(_OPENING):
                raise ValueError(f"prompts[{i}] does not end with the assistant turn's opening {_OPENING!r} "
                                 f"(...{p[-60:]!r}); build it with decision_prompt()")
        ids, head = self.tokenizer(prompts)["input_ids"], len(self.prefix_ids)
        for i, x in enumerate(ids):
            if list(x[:head]) != self.prefix_ids or len(x) == head:
                raise ValueError(f"prompts[{i}] does not start with the decision model's system turn and a user "
                                 f"message ({prompts[i][:60]!r}...); build it with decision_prompt()")
        ids = [x[head:] for x in ids]
        N, P = len(ids), round_up(max(len(x) for x in ids), self.width_multiple)
        prompt_ids = np.zeros((N, P), np.int32)
        for row, x in zip(prompt_ids, ids):
            row[:len(x)] = x
        A = len(self.subgoals)
        tokens = TextTokens(
            prompt_ids=prompt_ids, prompt_len=np.array([len(x) for x in ids], np.int32),
            action_ids=np.broadcast_to(self.candidate_ids, (N, *self.candidate_ids.shape)),
            action_len=np.broadcast_to(self.candidate_len, (N, A)),
            action_words=np.broadcast_to(self.candidate_words, (N, A)), action_mask=np.ones((N, A), bool))
        return np.asarray(_subgoal_scores(self.graphdef, self.base, self.lora, tokens, self.prefix,
                                          implementation=self.implementation,
                                          action_tokens_max=int(self.candidate_len.sum())))

    def choose(self, prompts: Sequence[str], key=None, greedy: bool = False) -> list[tuple[int, int, int]]:
        picks = pick_subgoals(self.scores(prompts), key, temperature=self.temperature, greedy=greedy)
        return [tuple(int(i) for i in row) for row in picks]
