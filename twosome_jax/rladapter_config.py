"""The RLAdapter trainer's configuration: the guided PPO config plus the language models and stages.

An RLAdapter run (``twosome_jax.rladapter_train``) is guided PPO whose instructions come from
language models: every ``instruction_interval`` env steps the adapter LM writes an analysis of
each env's situation and the decision model picks 3 sub-goals from it; between stages the
adapter is fine-tuned (LoRA SFT) on the pairs it wrote. :class:`RLAdapterConfig` is a
:class:`~twosome_jax.guided_config.GuidedConfig` (same PPO keys, YAML files, ``--set``,
precedence and one-line errors) whose ``trainer`` is ``rladapter`` and whose ``instruction`` is
``rladapter``, with the keys of the loop added. ``total_timesteps`` counts one stage.

The release's open questions are keys (AdaRefiner: github.com/PKU-RL/AdaRefiner @ 2365033):

* ``policy_across_stages``: ``carry`` (default) trains one policy through all stages, as the
  paper's "@5M" results read; ``reinit`` makes a fresh policy at each stage, as the release's
  ``train.py`` does (it never loads the previous stage's policy).
* ``sft_data``: ``stage`` (default) fine-tunes on the stage's own pairs, as the paper describes a
  stage's feedback; ``accumulated`` on all stages' pairs so far, as the release's code does (its
  ``data.jsonl`` is opened in append mode and never cleared).

An extension the spec of the reproduction names (the release trains on every pair, with no
selection by score): ``sft_min_next_score`` keeps only the pairs whose analysis the agent then
followed, by the comprehension score of the env's next round.

The ablation arms are keys of the same command: ``adapter: none`` (the decision model alone, the
analysis left empty) and ``adapter_sft: false`` (the adapter frozen).

Like :mod:`twosome_jax.guided_config` this module imports no JAX; building a config checks the
SFT settings and the sub-goal count through ``twosome_jax.sft`` and ``twosome_jax.guidance``,
imported then.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from twosome_jax.config import DTYPES, ConfigError
from twosome_jax.guided_config import GuidedConfig, _f

TRAINER = "rladapter"
SFT_DATA = ("stage", "accumulated")
POLICY_ACROSS_STAGES = ("carry", "reinit")
ADAPTERS = ("lm", "none")


@dataclasses.dataclass(frozen=True)
class RLAdapterConfig(GuidedConfig):
    """Everything an RLAdapter run depends on. PPO defaults as :class:`GuidedConfig`'s, with a
    rollout of 20 envs x 200 steps (a whole number of query segments and of iterations per 1M
    env steps); language models and SFT as AdaRefiner's with SmolLM2-135M-Instruct for both."""

    TRAINER: ClassVar[str] = TRAINER
    INSTRUCTIONS: ClassVar[tuple[str, ...]] = ("rladapter",)
    FLAGS: ClassVar[tuple[tuple[str, str, str], ...]] = GuidedConfig.FLAGS + (
        ("--decision-model", "decision_model", "SPEC"),)

    trainer: str = _f(TRAINER, f"which trainer reads this config: {TRAINER}")
    instruction: str = _f("rladapter", "rladapter: the 3 sub-goals the decision model picks after the adapter "
                                       "LM's analysis, every instruction_interval steps per env")
    total_timesteps: int = _f(1_000_000, "env steps per seed in each stage")
    num_envs: int = _f(20, "parallel environments per seed (all queried in one batched round)")
    num_steps: int = _f(200, "env steps per environment per iteration (a multiple of instruction_interval)")
    num_minibatches: int = _f(32, "minibatches per epoch")
    stages: int = _f(5, "RL stages, each of total_timesteps env steps per seed, with adapter SFT after each")
    policy_across_stages: str = _f("carry", "carry: one policy trained through all stages | reinit: a fresh "
                                            "policy (and optimizer) at the start of every stage after the first")
    adapter: str = _f("lm", "lm: the adapter LM writes an analysis for the decision model | none: the decision "
                            "model alone, with an empty analysis")
    adapter_sft: bool = _f(True, "fine-tune the adapter between stages (false: the adapter stays frozen)")
    sft_data: str = _f("stage", "stage: SFT on the stage's own pairs | accumulated: on every stage's pairs so far")
    sft_max_pairs: int | None = _f(None, "SFT on at most this many pairs (a seeded subset in dataset order; "
                                         "none: all)")
    sft_min_next_score: float | None = _f(None, "SFT only on the analyses that were followed: pairs whose env's "
                                                "next comprehension score (of the actions taken under the sub-goals "
                                                "the analysis led to) is at least this; none: every pair (the release)")
    sft_lora_rank: int = _f(64, "LoRA rank r of the adapter")
    sft_lora_alpha: float = _f(16.0, "LoRA alpha of the adapter (scale alpha / r)")
    sft_learning_rate: float = _f(2e-4, "SFT AdamW learning rate (constant)")
    sft_batch_size: int = _f(4, "SFT batch size")
    sft_epochs: int = _f(1, "SFT epochs per stage")
    adapter_model: str = _f("smollm2-135m-instruct", "the adapter LM: a model spec (smollm2-135m-instruct, "
                                                     "tiny-random, an HF checkpoint directory, a llama GGUF)")
    decision_model: str = _f("smollm2-135m-instruct", "the decision model, scoring the 31 sub-goals with its "
                                                      "adapters off: a model spec (the same model as "
                                                      "adapter_model is loaded once)")
    dtype: str = _f("auto", "compute dtype of the language models: " + "|".join(DTYPES)
                    + " (auto: float32 on CPU, bfloat16 on accelerators)")
    adapter_max_new_tokens: int = _f(64, "tokens the adapter LM writes at most per analysis")
    adapter_temperature: float = _f(0.6, "the adapter LM's sampling temperature")
    adapter_top_p: float = _f(0.9, "the adapter LM's nucleus (top-p)")
    decision_temperature: float = _f(1.0, "temperature of the decision model's draw of 3 sub-goals")
    history_keep: str = _f("oldest", "which actions of a history longer than the sentence encoder reads count "
                                     "in the comprehension score: oldest (the release) | newest")

    def __post_init__(self):
        super().__post_init__()
        _validate(self)

    @property
    def iterations_per_stage(self) -> int:
        return self.total_timesteps // self.batch_size

    @property
    def segments_per_iteration(self) -> int:
        """Query rounds per iteration."""
        return self.num_steps // self.instruction_interval

    def sft_settings(self, **changes):
        """The adapter's ``sft.SFTSettings``: these keys over AdaRefiner ``sft.py``'s defaults."""
        from twosome_jax.sft import SFTSettings

        return SFTSettings(**{"lora_rank": self.sft_lora_rank, "lora_alpha": self.sft_lora_alpha,
                              "learning_rate": self.sft_learning_rate, "batch_size": self.sft_batch_size,
                              "epochs": self.sft_epochs, **changes})


def _validate(c: RLAdapterConfig) -> None:
    from twosome_jax.guidance import HISTORY_KEEP, SUBGOALS_PER_INSTRUCTION
    from twosome_jax.sft import SFTError

    def bad(name, accepted):
        raise ConfigError(f"{name}={getattr(c, name)!r} is invalid; accepted: {accepted}")

    for name, choices in (("policy_across_stages", POLICY_ACROSS_STAGES), ("adapter", ADAPTERS),
                          ("sft_data", SFT_DATA), ("history_keep", HISTORY_KEEP), ("dtype", DTYPES)):
        if getattr(c, name) not in choices:
            bad(name, ", ".join(choices))
    for name in ("stages", "adapter_max_new_tokens"):
        if getattr(c, name) <= 0:
            bad(name, "an integer > 0")
    for name in ("adapter_temperature", "decision_temperature"):
        if not getattr(c, name) > 0:
            bad(name, "a number > 0")
    if not 0 < c.adapter_top_p <= 1:
        bad("adapter_top_p", "a number in (0, 1]")
    if c.subgoals_per_instruction != SUBGOALS_PER_INSTRUCTION:
        bad("subgoals_per_instruction", f"{SUBGOALS_PER_INSTRUCTION} (the decision model picks "
                                        f"{SUBGOALS_PER_INSTRUCTION} sub-goals)")
    if c.num_steps % c.instruction_interval:
        raise ConfigError(f"num_steps={c.num_steps} is not a multiple of instruction_interval="
                          f"{c.instruction_interval}; accepted: a multiple of {c.instruction_interval} "
                          "(an iteration is a whole number of query segments)")
    if c.total_timesteps % c.batch_size:
        raise ConfigError(f"total_timesteps={c.total_timesteps} is not a multiple of the batch num_envs*num_steps="
                          f"{c.num_envs}*{c.num_steps}={c.batch_size}; accepted: a multiple of {c.batch_size} "
                          "(a stage ends with an iteration)")
    if c.adapter == "none" and c.adapter_sft:
        raise ConfigError("adapter_sft=true needs adapter=lm; accepted with adapter=none: adapter_sft=false "
                          "(there is no adapter to fine-tune)")
    if c.policy_across_stages == "reinit" and c.anneal_lr:
        raise ConfigError("anneal_lr=true is invalid with policy_across_stages=reinit; accepted: anneal_lr=false "
                          "(the rate anneals over the whole run, so a re-made policy would start low)")
    if c.sft_max_pairs is not None and c.sft_max_pairs < 2:
        bad("sft_max_pairs", "an integer >= 2, or none")
    if c.sft_min_next_score is not None and not 0.0 <= c.sft_min_next_score <= 1.0:
        bad("sft_min_next_score", "a number in [0, 1], or none")
    try:
        settings = c.sft_settings()
    except SFTError as e:
        raise ConfigError(f"{e} (set by the sft_* config keys)") from None
    pairs = c.num_seeds * (c.total_timesteps // c.instruction_interval)  # one per env per round of a stage
    if c.adapter_sft and int(min(pairs, c.sft_max_pairs or pairs) * (1 - settings.eval_fraction)) < 1:
        raise ConfigError(f"a stage gives {pairs} SFT pair(s) (num_seeds * total_timesteps / instruction_interval), "
                          "none of which would train after the 10% evaluation split; accepted: a longer stage, "
                          "or adapter_sft=false")


__all__ = ["RLAdapterConfig", "ConfigError", "TRAINER"]
