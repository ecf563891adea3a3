"""One RLAdapter query round: every env of every seed asks the language models for its next instruction.

Every ``instruction_interval`` env steps RLAdapter (AdaRefiner ``models/lm.py``
``AdaLM.inst_generate``) turns each env's situation into a new instruction. Here one round
serves all ``K`` seeds x ``N`` envs at once, on the host, with the pieces of
:mod:`twosome_jax.guidance`:

1. the situation of each env from its Craftax-Classic state (``guidance.situation``: what the
   player sees, its status, its last action) and its actions since the previous round;
2. the comprehension score of those actions against the instruction they were taken under
   (``guidance.comprehension_scores``; ``""`` for both before the first round, as the release
   starts with an empty history and ``inst_last = ''``);
3. the adapter LM's analyses (``AdapterLM.analyses``, sampled), or ``""`` without an adapter
   (the decision-only arm);
4. the decision model's 3 sub-goals (``DecisionModel.choose``, sampled in training).

The instruction is the 3 sub-goals in list order (``DecisionModel.instruction_text``), which is a
row of the random-sub-goal arm's table (``instructions.subgoal_sentences(SUBGOALS, 3)``,
``itertools.combinations`` order), so the round returns row indices and the policy, its input
and its update are the same as in that arm. Each query also gives one record for the stage's
dataset: the adapter's prompt and response (the SFT pair), the score, the env step, the seed,
the env and the sub-goals in the order drawn.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Sequence

import jax
import numpy as np

from envs_jax.crafter.text import action_history
from twosome_jax.guidance import (
    SUBGOALS_PER_INSTRUCTION,
    adapter_prompt,
    comprehension_scores,
    decision_prompt,
    situation,
)


@dataclasses.dataclass(frozen=True)
class RoundResult:
    rows: np.ndarray  # int32 [K, N]: each env's new instruction row
    scores: np.ndarray  # float64 [K, N]: the comprehension scores
    records: list[dict]  # one per env, seed-major: the stage dataset's lines
    seconds: dict[str, float]  # wall time of each part: situation, score, adapter, decision


class QueryRound:
    """The models of a run and the instruction table's sentences; ``round(...)`` is one round.

    ``encoder``: the sentence encoder of the comprehension score (``encode(list[str])`` -> unit
    vectors). ``adapter``: an :class:`~twosome_jax.guidance.AdapterLM`, or None for an empty
    analysis. ``decision``: a :class:`~twosome_jax.guidance.DecisionModel`. ``sentences``: the
    instruction table's texts, row by row (``subgoal_sentences(decision.subgoals, 3)``)."""

    def __init__(self, encoder, adapter, decision, sentences: Sequence[str], *, history_keep: str = "oldest",
                 greedy: bool = False):
        self.encoder, self.adapter, self.decision = encoder, adapter, decision
        self.sentences = list(sentences)
        combos = list(itertools.combinations(range(len(decision.subgoals)), SUBGOALS_PER_INSTRUCTION))
        if len(combos) != len(self.sentences):
            raise ValueError(f"{len(self.sentences)} instruction sentences for {len(combos)} sets of "
                             f"{SUBGOALS_PER_INSTRUCTION} of the decision model's {len(decision.subgoals)} sub-goals")
        self.row_of = {c: i for i, c in enumerate(combos)}
        self.history_keep, self.greedy = history_keep, greedy

    def __call__(self, env_state, histories, previous, key, env_step: int) -> RoundResult:
        """One round. ``env_state``: the vector's state on the host (leading axis K * N, seed-major);
        ``histories``: int [K, N, H] each env's actions since the previous round, oldest first
        (H = 0 before the first round); ``previous``: int [K, N] the rows they were acted under,
        or None before the first round; ``key``: a jax key for the sampling; ``env_step``: each
        seed's env steps so far (written in the records)."""
        histories = np.asarray(histories)
        K, N = histories.shape[:2]
        seconds = {}
        t = time.perf_counter()
        pieces, history_texts, previous_texts = [], [], []
        for j in range(K * N):
            actions = histories[j // N, j % N]
            pieces.append(situation(jax.tree.map(lambda a: a[j], env_state), actions))
            history_texts.append(action_history(actions))
            previous_texts.append("" if previous is None else self.sentences[int(previous[j // N, j % N])])
        seconds["situation"] = time.perf_counter() - t

        t = time.perf_counter()
        scores = comprehension_scores(self.encoder, history_texts, previous_texts, keep=self.history_keep)
        seconds["score"] = time.perf_counter() - t

        t = time.perf_counter()
        k_adapter, k_decision = jax.random.split(key)
        prompts = [adapter_prompt(*p, inst, float(s)) for p, inst, s in zip(pieces, previous_texts, scores)]
        if self.adapter is None:
            analyses = [""] * len(prompts)
        else:
            analyses = self.adapter.analyses(prompts, None if self.greedy else k_adapter, greedy=self.greedy)
        seconds["adapter"] = time.perf_counter() - t

        t = time.perf_counter()
        picks = self.decision.choose([decision_prompt(*p, inst, a) for p, inst, a in zip(pieces, previous_texts, analyses)],
                                     None if self.greedy else k_decision, greedy=self.greedy)
        seconds["decision"] = time.perf_counter() - t

        rows = np.array([self.row_of[tuple(sorted(p))] for p in picks], np.int32).reshape(K, N)
        records = [{"prompt": prompt, "response": analysis, "comprehension_score": float(score),
                    "env_step": int(env_step), "seed": j // N, "env": j % N,
                    "subgoals": [self.decision.subgoals[i] for i in pick]}
                   for j, (prompt, analysis, score, pick) in enumerate(zip(prompts, analyses, scores, picks))]
        return RoundResult(rows=rows, scores=np.asarray(scores, np.float64).reshape(K, N), records=records,
                           seconds=seconds)


def situation_text(prompt: str) -> str:
    """The situation an adapter prompt describes (its user message: what the player sees, its
    status, last action, past sub-goals and score), for the stage summaries."""
    start = prompt.index("Player sees: ")
    return prompt[start:prompt.index("<|im_end|>", start)]


__all__ = ["QueryRound", "RoundResult", "situation_text"]
