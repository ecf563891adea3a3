"""LoRA supervised fine-tuning of RLAdapter's adapter LM on its own (prompt, response) pairs.

Between RL stages RLAdapter fine-tunes the adapter LM on the pairs it generated during the stage
(AdaRefiner ``sft.py``): the first 90 % of the dataset's lines train, the last 10 % evaluate, one
epoch, batch 4, LoRA r 64 / alpha 16 / dropout 0.1 on q_proj and v_proj, AdamW at a constant
2e-4 with weight decay 0.001 and the gradient norm clipped at 0.3. Here the adapter LM is our
Flax LLaMA (SmolLM2-135M-Instruct) and only its ``LoRAParam`` state is trained; the base weights
are an argument of the compiled step that gets no gradient and no optimizer state.

What differs from the release, on purpose:

* **The loss counts the response only.** Each example is ``prompt + response + EOS``, where
  ``prompt`` is the adapter prompt already rendered once in the model's chat template
  (``chat.render_chat(..., add_generation_prompt=True)``) and EOS closes the assistant turn
  (``<|im_end|>`` for SmolLM2). The loss is the mean token cross-entropy over the response's
  tokens and that EOS, averaged over all counted tokens of the batch (Hugging Face's causal-LM
  mean). The release (TRL ``SFTTrainer``, text field, no packing) puts the loss on every token,
  prompt included, and wraps the stored prompt, already a full Llama-2 chat prompt, a second time
  in ``[INST] <<SYS>> ... <</SYS>> ... [/INST]``, so its training text holds the system block and
  ``[/INST]`` twice. Training the prompt tokens would teach the adapter to reproduce the
  situation text the environment writes, which it never has to generate.
* **Token ids.** The prompt is tokenised as the model reads it (special tokens added, as
  ``envs_jax.text.token_ids`` does) and the response apart from it, without special tokens,
  followed by the EOS id. That is the split the adapter generated the response with (prompt
  tokens, then sampled tokens), and it never fails on a merge across the boundary, which the
  joint tokenisation of ``prompt + response`` used by the scoring code can produce.
* **Order.** The training pairs are visited in a seeded random order grouped by length, like the
  release's Hugging Face ``Trainer`` with ``group_by_length`` (``get_length_grouped_indices``:
  a random permutation, cut into mega-batches of ``min(n // (4 * batch), 50)`` batches, each
  sorted by length, longest first; its swap of the longest batch to the front is left out). The
  permutation is numpy's, not torch's, so the order is not the release's. ``shuffle=False``
  keeps the dataset order.
* **Evaluation** runs once, after the epoch, on the 10 % tail (the release evaluates every 5
  steps): the token-weighted mean cross-entropy over the whole split.
* Plain LoRA on a float32 (or bfloat16) base instead of QLoRA on a 4-bit base.

Batches are padded to widths on ``nlp_scoring.ladder`` (16, 24, 32, 48, 64, 96, ...; at most 1.5x
padding), so the jitted step compiles once per width, a handful of times per run. A last, short
batch is filled with empty rows, which count no token.

``run_sft`` trains whatever LoRA state the model holds, with a fresh optimizer, and leaves the
model unchanged (``nnx.update(model, result.lora)`` installs the result). The release instead
merges each stage's adapter into the base and adds a fresh one for the next stage; continuing the
same adapter starts the next stage from the same function. With ``adapter_dir`` the trained
adapter is written in PEFT format (``export.export_peft_adapter``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from twosome_jax.export import export_peft_adapter
from twosome_jax.model import (
    LoRAConfig,
    apply_hidden,
    apply_lm_head,
    split_model,
    token_logprobs,
)
from twosome_jax.nlp_scoring import ladder

MIN_WIDTH = 16  # the narrowest padded batch width


class SFTError(ValueError):
    """Bad SFT input or settings; the message is one line naming the bad value."""


@dataclasses.dataclass(frozen=True)
class SFTSettings:
    """SFT hyperparameters; the defaults are AdaRefiner ``sft.py``'s (with PEFT 0.4's and
    transformers' ``TrainingArguments`` defaults where the script sets nothing)."""

    lora_rank: int = 64  # sft.py lora_r
    lora_alpha: float = 16.0  # sft.py lora_alpha
    lora_dropout: float = 0.1  # sft.py lora_dropout
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # PEFT 0.4's default targets for LLaMA
    learning_rate: float = 2e-4  # sft.py learning_rate, lr_scheduler_type "constant"
    weight_decay: float = 0.001  # sft.py weight_decay (AdamW, decoupled)
    max_grad_norm: float = 0.3  # sft.py max_grad_norm
    adam_b1: float = 0.9  # TrainingArguments adam_beta1 (paged_adamw_32bit is AdamW)
    adam_b2: float = 0.999  # TrainingArguments adam_beta2
    adam_eps: float = 1e-8  # TrainingArguments adam_epsilon
    batch_size: int = 4  # sft.py per_device_train_batch_size (and eval), gradient accumulation 1
    epochs: int = 1  # sft.py num_train_epochs
    eval_fraction: float = 0.1  # sft.py split_data(train_ratio=0.9): the last 10 % of lines
    shuffle: bool = True  # Trainer's random sampler (see the module docstring)
    group_by_length: bool = True  # sft.py group_by_length
    seed: int = 42  # TrainingArguments seed: the training order and the dropout masks
    max_length: int = 1024  # TRL 0.4.7 SFTTrainer's max_seq_length when None (it truncates; we refuse)

    def __post_init__(self):
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        checks = [
            (self.lora_rank >= 1, "lora_rank", "a positive integer"),
            (self.lora_alpha > 0, "lora_alpha", "positive"),
            (0.0 <= self.lora_dropout < 1.0, "lora_dropout", "in [0, 1)"),
            (self.learning_rate > 0, "learning_rate", "positive"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.max_grad_norm > 0, "max_grad_norm", "positive"),
            (self.batch_size >= 1, "batch_size", "a positive integer"),
            (self.epochs >= 1, "epochs", "a positive integer"),
            (0.0 <= self.eval_fraction < 1.0, "eval_fraction", "in [0, 1)"),
            (self.max_length >= 2, "max_length", "at least 2"),
        ]
        for ok, name, accepted in checks:
            if not ok:
                raise SFTError(f"SFT setting {name}={getattr(self, name)!r} must be {accepted}")
        try:
            self.lora_config()
        except ValueError as e:
            raise SFTError(f"SFT LoRA settings: {e}") from None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SFTSettings:
        """Settings from a config mapping; unknown keys are an error."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SFTError(f"unknown SFT setting(s) {unknown}; accepted: {', '.join(known)}")
        return cls(**values)

    def lora_config(self) -> LoRAConfig:
        """The adapter to build the model with (``load_model(..., lora=settings.lora_config())``)."""
        return LoRAConfig(rank=self.lora_rank, alpha=self.lora_alpha, targets=self.lora_targets)


@dataclasses.dataclass(frozen=True)
class Example:
    """One training sequence: ``ids`` = prompt tokens + response tokens + EOS; the loss counts the
    tokens from ``prompt_len`` on."""

    ids: tuple[int, ...]
    prompt_len: int


@struct.dataclass
class SFTBatch:
    """A padded batch. Row b reads ``input_ids[b]`` and is scored on ``targets[b]`` (the next
    tokens) where ``weights[b]`` is 1. The batch carries its dropout key, so a step is a pure
    function of its arguments."""

    input_ids: jax.Array  # int32 [B, W]
    attention: jax.Array  # bool [B, W] real input tokens (right padded)
    targets: jax.Array  # int32 [B, W]
    weights: jax.Array  # float32 [B, W] 1 where the target is a response token or the EOS
    dropout_key: jax.Array  # a PRNG key


@dataclasses.dataclass(frozen=True)
class SFTResult:
    lora: Any  # the trained LoRAParam state (nnx.State)
    losses: np.ndarray  # float32 [steps] the training loss of each step's batch, before its update
    eval_loss: float | None  # token-weighted mean cross-entropy on the eval split after training
    train_pairs: int
    eval_pairs: int


def split_pairs(pairs: Sequence, eval_fraction: float) -> tuple[list, list]:
    """The release's split: the first ``int(n * (1 - eval_fraction))`` pairs train, the rest evaluate."""
    n_train = int(len(pairs) * (1.0 - eval_fraction))
    return list(pairs[:n_train]), list(pairs[n_train:])


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[Example]:
    """Token ids of each (prompt, response) pair (see the module docstring).

    ``response`` is the generated text without its closing EOS; one that already ends with the
    EOS text (decoded together with its stop token) does not get a second one."""
    if tokenizer.eos_token_id is None:
        raise SFTError("the tokenizer has no EOS token to close the response with")
    eos_text = tokenizer.eos_token
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise SFTError(f"pair {i} is {type(pair).__name__} {str(pair)[:60]!r}; expected (prompt, response) strings")
        if not pair[0]:
            raise SFTError(f"pair {i} has an empty prompt; the first response token needs a token before it")
    responses = [r[:-len(eos_text)] if eos_text and r.endswith(eos_text) else r for _, r in pairs]
    prompt_ids = tokenizer([p for p, _ in pairs])["input_ids"] if pairs else []
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"] if pairs else []
    out = []
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        ids = tuple(p) + tuple(r) + (int(tokenizer.eos_token_id),)
        if len(ids) > max_length:
            raise SFTError(f"pair {i}: prompt + response + EOS is {len(ids)} tokens, more than max_length "
                           f"{max_length} ({len(p)} prompt tokens)")
        out.append(Example(ids, len(p)))
    return out


def training_order(lengths: Sequence[int], settings: SFTSettings, epoch: int = 0) -> np.ndarray:
    """Indices in the order the training pairs are visited (see the module docstring)."""
    n = len(lengths)
    if not settings.shuffle:
        return np.arange(n)
    order = np.random.default_rng([settings.seed, epoch]).permutation(n)
    if settings.group_by_length:
        size = max(min(n // (settings.batch_size * 4), 50), 1) * settings.batch_size
        lengths = np.asarray(lengths)
        order = np.concatenate([mb[np.argsort(-lengths[mb], kind="stable")]
                                for mb in np.array_split(order, range(size, n, size))])
    return order


def make_batches(examples: Sequence[Example], order: Sequence[int], batch_size: int, seed: int = 0,
                 first_step: int = 0) -> list[SFTBatch]:
    """Consecutive ``batch_size`` examples of ``order`` as padded batches (numpy arrays); batch k
    gets the dropout key ``fold_in(key(seed), first_step + k)``."""
    order = list(order)
    base_key = jax.random.key(seed)
    batches = []
    for k, start in enumerate(range(0, len(order), batch_size)):
        rows = [examples[i] for i in order[start:start + batch_size]]
        W = ladder(max(len(e.ids) - 1 for e in rows), MIN_WIDTH)
        ids = np.zeros((batch_size, W), np.int32)
        targets = np.zeros((batch_size, W), np.int32)
        weights = np.zeros((batch_size, W), np.float32)
        attention = np.zeros((batch_size, W), bool)
        for b, e in enumerate(rows):
            n = len(e.ids) - 1
            ids[b, :n] = e.ids[:-1]
            targets[b, :n] = e.ids[1:]
            attention[b, :n] = True
            weights[b, e.prompt_len - 1:n] = 1.0  # targets e.ids[prompt_len:], the response and EOS
        batches.append(SFTBatch(ids, attention, targets, weights, jax.random.fold_in(base_key, first_step + k)))
    return batches


def _loss_sums(graphdef, base, lora, batch: SFTBatch, dropout_rate: float = 0.0):
    """(summed cross-entropy, counted tokens) of a batch."""
    drop = (dropout_rate, batch.dropout_key) if dropout_rate > 0 else None
    hidden = apply_hidden(graphdef, base, lora, batch.input_ids, None, batch.attention, lora_dropout=drop)
    logp = token_logprobs(apply_lm_head(graphdef, base, lora, hidden), batch.targets)
    return -jnp.sum(logp * batch.weights), jnp.sum(batch.weights)


def sft_loss(graphdef, base, lora, batch: SFTBatch, dropout_rate: float = 0.0):
    """Mean token cross-entropy over the batch's response tokens (and EOS); ``dropout_rate`` > 0
    applies LoRA dropout with the batch's key (training)."""
    total, count = _loss_sums(graphdef, base, lora, batch, dropout_rate)
    return total / count


def sft_optimizer(settings: SFTSettings) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW at a constant learning rate (decay on every LoRA weight,
    as the Trainer decays every weight that is not a bias or a norm)."""
    return optax.chain(
        optax.clip_by_global_norm(settings.max_grad_norm),
        optax.adamw(settings.learning_rate, b1=settings.adam_b1, b2=settings.adam_b2, eps=settings.adam_eps,
                    weight_decay=settings.weight_decay))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_step(graphdef, settings, base, lora, opt_state, batch):
    loss, grads = jax.value_and_grad(
        lambda lora: sft_loss(graphdef, base, lora, batch, settings.lora_dropout))(lora)
    updates, opt_state = sft_optimizer(settings).update(grads, opt_state, lora)
    return optax.apply_updates(lora, updates), opt_state, loss


_eval_sums = jax.jit(_loss_sums, static_argnums=0)


def make_train_step(graphdef, base, settings: SFTSettings):
    """``step(lora, opt_state, batch) -> (lora, opt_state, loss)``: one AdamW step on the LoRA
    state, ``loss`` the batch's loss before it (with dropout). ``base`` is passed to the compiled
    step as an argument (not a constant folded into it) and is never differentiated; the compiled
    step is shared by every call with the same model structure and settings."""
    return functools.partial(_train_step, graphdef, settings, base)


def evaluate_loss(graphdef, base, lora, examples: Sequence[Example], batch_size: int) -> float | None:
    """Token-weighted mean cross-entropy over ``examples`` (no dropout); None when empty."""
    if not examples:
        return None
    order = np.argsort([len(e.ids) for e in examples], kind="stable")  # less padding; the mean is order-free
    total = count = 0.0
    for batch in make_batches(examples, order, batch_size):
        s, c = _eval_sums(graphdef, base, lora, batch)
        total, count = total + float(s), count + float(c)
    return total / count


def _check_model(model, settings: SFTSettings) -> None:
    lc = model.lora_config
    want = settings.lora_config()
    if lc is None or (lc.rank, lc.alpha, tuple(lc.targets)) != (want.rank, want.alpha, want.targets):
        have = "no LoRA" if lc is None else f"rank {lc.rank}, alpha {lc.alpha:g}, targets {list(lc.targets)}"
        raise SFTError(f"the model has {have}; the SFT settings need rank {want.rank}, alpha {want.alpha:g}, "
                       f"targets {list(want.targets)} (build it with lora=settings.lora_config())")
    if settings.max_length > model.config.max_position_embeddings:
        raise SFTError(f"SFT setting max_length={settings.max_length} is more than the model's "
                       f"{model.config.max_position_embeddings} positions")


def run_sft(model, tokenizer, pairs: Sequence[tuple[str, str]], settings: SFTSettings = SFTSettings(), *,
            adapter_dir: str | os.PathLike | None = None, base_model_name_or_path: str | None = None) -> SFTResult:
    """Split ``pairs`` (dataset order), train the model's LoRA for ``settings.epochs`` epochs on
    the head of the split, evaluate on its tail, and (with ``adapter_dir``) write the trained
    adapter in PEFT format for the base ``base_model_name_or_path``. The model is not changed."""
    _check_model(model, settings)
    if adapter_dir is not None and not base_model_name_or_path:
        raise SFTError("adapter_dir needs base_model_name_or_path (the base the PEFT adapter belongs to)")
    train_pairs, eval_pairs = split_pairs(pairs, settings.eval_fraction)
    if not train_pairs:
        raise SFTError(f"no training pairs: {len(pairs)} pair(s), of which the first "
                       f"{1 - settings.eval_fraction:.0%} train; SFT needs at least one")
    train = encode_pairs(tokenizer, train_pairs, settings.max_length)
    held_out = encode_pairs(tokenizer, eval_pairs, settings.max_length)
    graphdef, base, lora = split_model(model)
    step = make_train_step(graphdef, base, settings)
    opt_state = sft_optimizer(settings).init(lora)
    lengths = [len(e.ids) for e in train]
    losses = []
    for epoch in range(settings.epochs):
        order = training_order(lengths, settings, epoch)
        for batch in make_batches(train, order, settings.batch_size, settings.seed, first_step=len(losses)):
            lora, opt_state, loss = step(lora, opt_state, batch)
            losses.append(float(loss))
    eval_loss = evaluate_loss(graphdef, base, lora, held_out, settings.batch_size)
    if adapter_dir is not None:
        export_peft_adapter(lora, model.config, model.lora_config, adapter_dir, base_model_name_or_path,
                            lora_dropout=settings.lora_dropout)
    return SFTResult(lora=lora, losses=np.asarray(losses, np.float32), eval_loss=eval_loss,
                     train_pairs=len(train), eval_pairs=len(held_out))
