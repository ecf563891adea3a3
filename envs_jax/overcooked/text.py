"""Overcooked observation -> text (reference notes §1), in Python and compiled for a tokenizer.

Python: :func:`describe` maps a policy observation to ``(prompt, actions)`` exactly as the
reference's obs->text does (typos, ``str.capitalize`` and all).

Compiled: :class:`TextTable` holds token tables built once on the host for one tokenizer;
:meth:`TextTable.tokenize` is a pure jittable map from a batch of observations to
:class:`TextTokens` (prompt ids, action ids, lengths, word counts, masks).

Design (sentence-fragment tables) and why it is exact
-----------------------------------------------------
The prompt is always ``" ".join`` of up to six sentences, one per *slot*: opening, "seen"
items, board 1, (board 2), standing/hand, closing. Each slot's sentence is a function of a few
small integer *features* of the observation (bit masks of the items at the spawn cells, on each
board and in hand, a chop flag, where the agent stands), computed by :func:`features` in
Python and by :func:`features_jnp` in JAX with the same rules. A slot table maps the feature
index to a fragment id; each fragment has a token table.

* Fragment tokens are taken *in context*: the opening's tokens are ``tok(opening)`` (BOS
  included if the tokenizer adds one); a later sentence ``s`` gets
  ``tok(opening + " " + s)[len(tok(opening)):]`` (the build checks that ``tok(opening)`` is a
  prefix there). This is exact for tokenizers whose pre-tokenizer splits before a space
  following ``.``/``,`` (byte-level BPE such as SmolLM2/GPT-2, and the tiny test tokenizer):
  no token crosses a sentence boundary, so the tokens of the joined prompt are the
  concatenation of the fragments' tokens.
* Actions: every prompt ends with the fixed closing sentence ("... you should first"), so the
  tokens of ``" " + action`` after the prompt depend on the action string only; they are taken
  as ``tok(prompt + " " + action)[len(tok(prompt)):]`` for a reference prompt.
* :meth:`TextTable.build` does not trust the argument above: it tokenizes ``describe(obs)``
  for every observation given (by default every observation reachable from reset, found by
  BFS, which contains every golden observation) and compares it with the table's output,
  raising :class:`TextTableError` on the first difference, and it also raises if a prompt's
  tokens are not a prefix of the prompt+action tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..interface import Description
from ..text import (TextTableError, TextTokens, action_tokens, max_action_tokens, round_up,
                    token_ids, verify_text_table)
from .layout import Task, get_task

# --------------------------------------------------------------------------------------------
# fixed strings
# --------------------------------------------------------------------------------------------
_NAMES = {"tomato": "a tomato", "lettuce": "a lettuce", "onion": "an onion", "bowl": "a bowl"}
_BOWL = "bowl"
# "Spawn" positions of obs->text (fixed by the reference; same for both layouts)
_SPAWN = {"tomato": (0, 5), "lettuce": (1, 6), "onion": (2, 6), "bowl": (6, 5)}


def _cap(s: str) -> str:
    return s.capitalize()


def _join_list(words: Sequence[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def _bits(mask: int, n: int) -> list[int]:
    return [i for i in range(n) if mask >> i & 1]


@dataclasses.dataclass(frozen=True)
class _Spec:
    """The text-relevant static facts of a task."""

    task: Task

    @property
    def foods(self) -> tuple[str, ...]:
        return self.task.layout.foods

    @property
    def items(self) -> tuple[str, ...]:
        return self.foods + (_BOWL,)

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def task3(self) -> bool:
        return self.task.layout.num_knives == 2

    @property
    def boards(self) -> tuple[tuple[int, int], ...]:
        return self.task.layout.knives

    @property
    def board_names(self) -> tuple[str, ...]:
        if self.task3:
            return ("the first cutting board", "the second cutting board")
        return ("the cutting board",)

    @property
    def opening(self) -> str:
        if self.task3:
            return "There are two fixed cutting boards in the room."
        return "There is a fixed cutting board in the room."

    @property
    def closing(self) -> str:
        return (
            "To serve the dish of a bowl only containing chopped "
            f"{_join_list(list(self.task.recipe_foods))}, you should first"
        )

    @property
    def agent_index(self) -> int:
        return self.task.layout.agent_obs_index

    @property
    def default_actions(self) -> list[str]:
        if self.task3:
            return ["pick up the tomato", "pick up the lettuce", "pick up the onion",
                    "take the empty bowl", "walk to the first cutting board",
                    "walk to the second cutting board", "serve nothing", "chop nothing"]
        return ["pick up the tomato", "take the bowl", "walk to the cutting board",
                "serve nothing", "chop nothing"]

    # ---- sentences as functions of the features -------------------------------------------
    def seen_sentence(self, mask: int) -> str:
        names = [_NAMES[self.items[i]] for i in _bits(mask, self.n)]
        if not names:
            return ""
        if len(names) == 1:
            return _cap(f"You notice {names[0]} on the table.")
        return _cap(f"You notice {_join_list(names)} on the different tables.")

    def board_sentence(self, c: int, mask: int, chopped: int) -> str:
        idx = _bits(mask, self.n)
        board = self.board_names[c]
        if not idx:
            return ""
        if len(idx) == 1:
            item = self.items[idx[0]]
            if item == _BOWL:
                return _cap(f"a bowl is on {board}.")
            if chopped:
                return _cap(f"a chopped {item} is on {board}.")
            return _cap(f"an unchopped {item} is on {board}.")
        if not self.task3:
            return "A bowl containing a chopped tomato is on the cutting board."
        foods = [self.items[i] for i in idx[:-1]]
        return _cap(f"a bowl containing chopped {_join_list(foods)} is on {board}.")

    def hand_sentence(self, stand: int, mask: int, chopped: int) -> str:
        """``stand``: 0 elsewhere, 1 at (1,1) (board 0), 2 at (2,1) (board 1)."""
        idx = _bits(mask, self.n)
        if stand:
            board = self.board_names[0] if not self.task3 else self.board_names[stand - 1]
            prefix = f"Currently you are standing in front of {board}"
        if not idx:
            if stand:
                if not self.task3 and stand == 2:
                    # Q7: the reference indexes a one-entry list with 1 -> IndexError.
                    raise IndexError("list index out of range (reference quirk Q7)")
                return f"{prefix} without anything in hand."
            return "Currently you don't have anything in hand."
        if len(idx) == 1:
            item = self.items[idx[0]]
            if item == _BOWL:
                text = "a bowl"
            elif chopped:
                text = f"a chopped {item}"
            else:
                text = f"an unchopped {item}"
            if stand:
                return _cap(f"{prefix}, carrying {text} in hand.")
            return _cap(f"Currently you are carrying {text} in hand.")
        foods = _join_list([self.items[i] for i in idx[:-1]])
        if stand:
            return _cap(f"{prefix}, carrying a bowl containing chopped {foods} in hand.")
        return _cap(f"Currently you are carrying a bowl containing chopped {foods}.")

    # ---- actions as functions of per-index variants ----------------------------------------
    def action_variants(self) -> list[list[str]]:
        """For each action index, the list of its possible strings (variant 0 = default)."""
        f, k = len(self.foods), len(self.boards)
        boards = self.board_names
        out: list[list[str]] = []
        for food in self.foods:
            out.append([f"pick up the {food}", f"put the {food} in the bowl"])
        out.append(["take the empty bowl", "take the bowl"] if self.task3 else ["take the bowl"])
        for c in range(k):
            out.append([f"walk to {boards[c]}", f"put the bowl on {boards[c]}"]
                       + [f"put the {food} on {boards[c]}" for food in self.foods])
        out.append(["serve nothing", "serve the dish"])
        out.append(["chop nothing"] + [f"chop the {food}" for food in self.foods])
        assert len(out) == f + 1 + k + 2
        return out


def _spec(task: Task | str) -> _Spec:
    return _Spec(get_task(task) if isinstance(task, str) else task)


# --------------------------------------------------------------------------------------------
# features (Python)
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Features:
    seen: int  # bit mask of items at their spawn cell
    board: tuple[int, ...]  # per board: bit mask of items on it
    board_chop: tuple[int, ...]  # per board: 1 if it holds exactly one item, a chopped food
    stand: int  # 0 elsewhere, 1 at (1,1), 2 at (2,1)
    hand: int  # bit mask of items at the agent's position
    hand_chop: int  # 1 if exactly one item in hand, a chopped food


def features(obs: Sequence[int], task: Task | str) -> Features:
    sp = _spec(task)
    obs = [int(v) for v in obs]
    n, nf = sp.n, len(sp.foods)
    pos = [(obs[3 * i], obs[3 * i + 1]) for i in range(n)]
    chopped = [obs[3 * i + 2] == 3 for i in range(nf)] + [False]
    agent = (obs[sp.agent_index], obs[sp.agent_index + 1])

    def mask_of(pred) -> int:
        return sum(1 << i for i in range(n) if pred(i))

    def single_chopped(mask: int) -> int:
        idx = _bits(mask, n)
        return int(len(idx) == 1 and idx[0] < nf and chopped[idx[0]])

    seen = mask_of(lambda i: pos[i] == _SPAWN[sp.items[i]])
    board = tuple(mask_of(lambda i, b=b: pos[i] == tuple(b)) for b in sp.boards)
    hand = mask_of(lambda i: pos[i] == agent)
    stand = {(1, 1): 1, (2, 1): 2}.get(agent, 0)
    return Features(seen, board, tuple(single_chopped(m) for m in board), stand, hand,
                    single_chopped(hand))


def action_variant_ids(ft: Features, task: Task | str) -> list[int]:
    """The variant index (into ``_Spec.action_variants()[k]``) of every action."""
    sp = _spec(task)
    n, nf, nk = sp.n, len(sp.foods), len(sp.boards)
    bowl = n - 1
    v = [0] * (nf + 1 + nk + 2)
    hand_idx = _bits(ft.hand, n)
    if sp.task3 and (len(hand_idx) > 1 or any(len(_bits(m, n)) > 1 for m in ft.board)):
        v[nf] = 1  # "take the bowl"
    for c in range(nk):
        idx = _bits(ft.board[c], n)
        if len(idx) == 1 and idx[0] < nf and ft.stand == c + 1:
            v[-1] = 1 + idx[0]  # "chop the {food}"
    if hand_idx:
        v[nf + 1 + nk] = 1  # "serve the dish"
        if len(hand_idx) > 1 or hand_idx[0] == bowl:
            for i in range(nf):
                v[i] = 1  # "put the {food} in the bowl"
            for c in range(nk):
                v[nf + 1 + c] = 1  # "put the bowl on {board}"
        elif not ft.hand_chop:
            for c in range(nk):
                v[nf + 1 + c] = 2 + hand_idx[0]  # "put the {food} on {board}"
    return v


def describe(obs: Sequence[int], task: Task | str = "tomato_salad") -> tuple[str, list[str]]:
    """The reference obs->text: ``(prompt, actions)`` for a policy observation (reference notes §1).

    ``actions[i]`` always describes macro action ``i``. Raises ``IndexError`` where the
    reference does (task 0, agent at (2,1) with an empty hand: Q7, unreachable).
    """
    sp = _spec(task)
    ft = features(obs, sp.task)
    sentences = [sp.opening, sp.seen_sentence(ft.seen)]
    sentences += [sp.board_sentence(c, ft.board[c], ft.board_chop[c]) for c in range(len(sp.boards))]
    sentences += [sp.hand_sentence(ft.stand, ft.hand, ft.hand_chop), sp.closing]
    prompt = " ".join(s for s in sentences if s)
    variants = sp.action_variants()
    actions = [variants[k][v] for k, v in enumerate(action_variant_ids(ft, sp.task))]
    return prompt, actions


def describe_actions(obs: Sequence[int], task: Task | str = "tomato_salad") -> Description:
    """:func:`describe` as the environment interface's :class:`~envs_jax.interface.Description`:
    every macro action is offered, action ``i`` is macro ``i``."""
    prompt, actions = describe(obs, task)
    return Description(prompt, actions, list(range(len(actions))))


# --------------------------------------------------------------------------------------------
# features (JAX): the same rules as `features` / `action_variant_ids`
# --------------------------------------------------------------------------------------------
def features_jnp(obs: jax.Array, task: Task | str) -> dict[str, jax.Array]:
    """Slot indices of one observation: ``seen``, ``board`` [K], ``hand`` (fragment-table
    indices) and ``variants`` [A] (action variant per index)."""
    sp = _spec(task)
    n, nf, nk = sp.n, len(sp.foods), len(sp.boards)
    obs = jnp.asarray(obs, jnp.int32)
    pos = jnp.stack([obs[jnp.array([3 * i, 3 * i + 1])] for i in range(n)])  # [n, 2]
    chopped = jnp.concatenate([jnp.stack([obs[3 * i + 2] == 3 for i in range(nf)]),
                               jnp.zeros((1,), jnp.bool_)])
    agent = obs[sp.agent_index:sp.agent_index + 2]
    weights = (1 << jnp.arange(n)).astype(jnp.int32)

    def mask(b):  # b: bool[n]
        return jnp.sum(jnp.where(b, weights, 0))

    def single_chopped(b):
        return ((jnp.sum(b) == 1) & jnp.any(b & chopped)).astype(jnp.int32)

    spawn = jnp.asarray([_SPAWN[i] for i in sp.items], jnp.int32)
    at_spawn = jnp.all(pos == spawn, axis=-1)
    on_board = [jnp.all(pos == jnp.asarray(b, jnp.int32), axis=-1) for b in sp.boards]
    in_hand = jnp.all(pos == agent, axis=-1)
    stand = jnp.where(jnp.all(agent == jnp.array([1, 1])), 1,
                      jnp.where(jnp.all(agent == jnp.array([2, 1])), 2, 0)).astype(jnp.int32)

    board_idx = jnp.stack([mask(b) * 2 + single_chopped(b) for b in on_board])
    hand_idx = (stand * (1 << n) + mask(in_hand)) * 2 + single_chopped(in_hand)

    # action variants (action_variant_ids)
    na = nf + 1 + nk + 2
    v = jnp.zeros((na,), jnp.int32)
    n_hand = jnp.sum(in_hand)
    if sp.task3:
        multi = (n_hand > 1) | jnp.any(jnp.stack([jnp.sum(b) > 1 for b in on_board]))
        v = v.at[nf].set(multi.astype(jnp.int32))
    chop_v = jnp.int32(0)
    for c, b in enumerate(on_board):
        single_food = (jnp.sum(b) == 1) & ~b[n - 1]
        first = jnp.argmax(b).astype(jnp.int32)
        chop_v = jnp.where(single_food & (stand == c + 1), 1 + first, chop_v)
    v = v.at[na - 1].set(chop_v)
    has = n_hand > 0
    v = v.at[nf + 1 + nk].set(has.astype(jnp.int32))
    bowlish = has & ((n_hand > 1) | in_hand[n - 1])
    raw_food = has & ~bowlish & (single_chopped(in_hand) == 0)
    held_first = jnp.argmax(in_hand).astype(jnp.int32)
    v = v.at[:nf].set(jnp.where(bowlish, 1, v[:nf]))
    board_v = jnp.where(bowlish, 1, jnp.where(raw_food, 2 + held_first, 0))
    v = v.at[nf + 1:nf + 1 + nk].set(board_v)
    return {"seen": mask(at_spawn), "board": board_idx, "hand": hand_idx, "variants": v}


# --------------------------------------------------------------------------------------------
# compiled text
# --------------------------------------------------------------------------------------------
@struct.dataclass
class TextTable:
    """Token tables for one task and one tokenizer; see the module docstring."""

    frag_ids: jax.Array  # int32[NF, LF] fragment tokens (fragment 0 = empty)
    frag_len: jax.Array  # int32[NF]
    seen_frag: jax.Array  # int32[2^n] fragment id per "seen" mask
    board_frag: jax.Array  # int32[K, 2^n * 2]
    hand_frag: jax.Array  # int32[3 * 2^n * 2]
    action_ids: jax.Array  # int32[V, L] tokens per action string (vocabulary index)
    action_len: jax.Array  # int32[V]
    action_words: jax.Array  # int32[V]
    action_vocab: jax.Array  # int32[A, max variants] vocabulary index per (index, variant)
    opening_frag: int = struct.field(pytree_node=False)
    closing_frag: int = struct.field(pytree_node=False)
    task: Task = struct.field(pytree_node=False)
    prompt_len_max: int = struct.field(pytree_node=False)
    action_len_max: int = struct.field(pytree_node=False)
    num_actions: int = struct.field(pytree_node=False)
    fragments: tuple[str, ...] = struct.field(pytree_node=False)
    action_strings: tuple[str, ...] = struct.field(pytree_node=False)
    # the most real action tokens of any observation the table was built for (static)
    action_tokens_max: int = struct.field(pytree_node=False)

    # ---- build -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        task: Task | str,
        tokenizer: Any,
        observations: np.ndarray | None = None,
        extra_observations: np.ndarray | None = None,
        verify: bool = True,
    ) -> "TextTable":
        """Build the tables for ``tokenizer`` (a ``PreTrainedTokenizerBase``-like callable).

        ``observations`` (default: every observation reachable from reset, by BFS) fix the
        padded sizes ``prompt_len_max`` / ``action_len_max`` (rounded up to a multiple of 8)
        and, with ``verify``, are all checked against the tokenizer; ``extra_observations``
        are checked too and count for the sizes. Raises :class:`TextTableError` if the
        tokenizer breaks the decomposition.
        """
        sp = _spec(task)
        task = sp.task
        if observations is None:
            from .reachable import enumerate_reachable

            observations = enumerate_reachable(task)["obs"]
        observations = np.asarray(observations, np.int32).reshape(-1, task.layout.obs_dim)
        if extra_observations is not None:
            extra = np.asarray(extra_observations, np.int32).reshape(-1, task.layout.obs_dim)
            observations = np.unique(np.concatenate([observations, extra]), axis=0)
        n, nk = sp.n, len(sp.boards)

        # fragments and slot tables
        frags: list[str] = [""]
        index: dict[str, int] = {"": 0}

        def fid(s: str) -> int:
            if s not in index:
                index[s] = len(frags)
                frags.append(s)
            return index[s]

        opening, closing = fid(sp.opening), fid(sp.closing)
        seen_frag = [fid(sp.seen_sentence(m)) for m in range(1 << n)]
        board_frag = [[fid(sp.board_sentence(c, m, ch)) for m in range(1 << n) for ch in (0, 1)]
                      for c in range(nk)]
        hand_frag = []
        for st in range(3):
            for m in range(1 << n):
                for ch in (0, 1):
                    try:
                        hand_frag.append(fid(sp.hand_sentence(st, m, ch)))
                    except IndexError:  # Q7 (unreachable): text of the no-board case
                        hand_frag.append(fid(sp.hand_sentence(0, m, ch)))

        # fragment tokens, taken in context after the opening sentence
        open_ids = token_ids(tokenizer, sp.opening)
        frag_tok: list[list[int]] = []
        for s in frags:
            if s == "":
                frag_tok.append([])
            elif s == sp.opening:
                frag_tok.append(open_ids)
            else:
                full = token_ids(tokenizer, sp.opening + " " + s)
                if full[: len(open_ids)] != open_ids:
                    raise TextTableError(
                        f"tokenizer merges across a sentence boundary: tokens of {sp.opening!r} "
                        f"are not a prefix of the tokens of {sp.opening + ' ' + s!r}"
                    )
                frag_tok.append(full[len(open_ids):])

        # actions, taken in context after a prompt (all prompts end with the closing sentence)
        variants = sp.action_variants()
        vocab: list[str] = []
        for vs in variants:
            for a in vs:
                if a not in vocab:
                    vocab.append(a)
        ref_prompt, _ = describe(observations[0], task)
        ref_ids = token_ids(tokenizer, ref_prompt)
        act_tok = [action_tokens(tokenizer, ref_prompt, a, ref_ids) for a in vocab]
        vmax = max(len(vs) for vs in variants)
        action_vocab = [[vocab.index(vs[min(j, len(vs) - 1)]) for j in range(vmax)]
                        for vs in variants]

        # sizes from the observations
        lf = max(1, max(len(t) for t in frag_tok))
        fl = np.array([len(t) for t in frag_tok], np.int32)
        seen_a = np.asarray(seen_frag, np.int32)
        board_a = np.asarray(board_frag, np.int32).reshape(nk, -1)
        hand_a = np.asarray(hand_frag, np.int32)
        prompt_max = 0
        for obs in observations:
            ft = features_jnp_np(obs, sp)
            tot = fl[opening] + fl[closing] + fl[seen_a[ft["seen"]]] + fl[hand_a[ft["hand"]]]
            tot += sum(fl[board_a[c, ft["board"][c]]] for c in range(nk))
            prompt_max = max(prompt_max, int(tot))
        frag_ids = np.zeros((len(frags), lf), np.int32)
        for i, t in enumerate(frag_tok):
            frag_ids[i, : len(t)] = t
        la = max(len(t) for t in act_tok)
        a_ids = np.zeros((len(vocab), round_up(la)), np.int32)
        for i, t in enumerate(act_tok):
            a_ids[i, : len(t)] = t
        table = cls(
            frag_ids=jnp.asarray(frag_ids),
            frag_len=jnp.asarray(fl),
            seen_frag=jnp.asarray(seen_a),
            board_frag=jnp.asarray(board_a),
            hand_frag=jnp.asarray(hand_a),
            action_ids=jnp.asarray(a_ids),
            action_len=jnp.asarray([len(t) for t in act_tok], jnp.int32),
            action_words=jnp.asarray([len(a.split()) for a in vocab], jnp.int32),
            action_vocab=jnp.asarray(action_vocab, jnp.int32),
            opening_frag=opening,
            closing_frag=closing,
            task=task,
            prompt_len_max=round_up(prompt_max),
            action_len_max=round_up(la),
            num_actions=len(variants),
            fragments=tuple(frags),
            action_strings=tuple(vocab),
            action_tokens_max=0,
        )
        table = table.replace(action_tokens_max=max(max_action_tokens(tokenize_jit(table, jnp.asarray(observations))), 1))
        if verify:
            table.verify(tokenizer, observations)
        return table

    # ---- in-graph tokenization -------------------------------------------------------------
    def _tokenize_one(self, obs: jax.Array):
        ft = features_jnp(obs, self.task)
        nk = self.board_frag.shape[0]
        slots = [jnp.int32(self.opening_frag), self.seen_frag[ft["seen"]]]
        slots += [self.board_frag[c, ft["board"][c]] for c in range(nk)]
        slots += [self.hand_frag[ft["hand"]], jnp.int32(self.closing_frag)]
        slots = jnp.stack(slots)  # [S]
        lens = self.frag_len[slots]
        ends = jnp.cumsum(lens)
        starts = ends - lens
        p = jnp.arange(self.prompt_len_max)
        # slot of each output position: the number of slots that end at or before it
        slot = jnp.sum(ends[None, :] <= p[:, None], axis=1)
        slot_c = jnp.minimum(slot, slots.shape[0] - 1)
        off = jnp.clip(p - starts[slot_c], 0, self.frag_ids.shape[1] - 1)
        tok = self.frag_ids[slots[slot_c], off]
        total = ends[-1]
        prompt_ids = jnp.where(p < total, tok, 0)
        vocab = self.action_vocab[jnp.arange(self.num_actions), ft["variants"]]  # [A]
        return (prompt_ids, jnp.minimum(total, self.prompt_len_max),
                self.action_ids[vocab], self.action_len[vocab], self.action_words[vocab])

    def tokenize(self, obs: jax.Array) -> TextTokens:
        """Pure, jittable: int obs [N, D] (or [D]) -> :class:`TextTokens` ([N, ...])."""
        obs = jnp.asarray(obs).astype(jnp.int32)
        single = obs.ndim == 1
        if single:
            obs = obs[None]
        pid, plen, aid, alen, aw = jax.vmap(self._tokenize_one)(obs)
        out = TextTokens(
            prompt_ids=pid.astype(jnp.int32),
            prompt_len=plen.astype(jnp.int32),
            action_ids=aid.astype(jnp.int32),
            action_len=alen.astype(jnp.int32),
            action_words=aw.astype(jnp.int32),
            action_mask=jnp.ones(alen.shape, jnp.bool_),
        )
        if single:
            out = jax.tree.map(lambda x: x[0], out)
        return out

    # ---- verification ----------------------------------------------------------------------
    def verify(self, tokenizer: Any, observations: np.ndarray) -> int:
        """Check the tables against ``tokenizer`` on every observation; returns the count."""
        observations = np.asarray(observations, np.int32).reshape(-1, self.task.layout.obs_dim)
        return verify_text_table(self, lambda obs: describe_actions(obs, self.task), tokenizer, observations)


@jax.jit
def tokenize_jit(table: TextTable, obs: jax.Array) -> TextTokens:
    """``jax.jit(lambda table, obs: table.tokenize(obs))``, shared by all tables."""
    return table.tokenize(obs)


def features_jnp_np(obs: np.ndarray, sp: _Spec) -> dict[str, Any]:
    """Host version of the slot indices of :func:`features_jnp` (used for sizing)."""
    ft = features(obs, sp.task)
    return {
        "seen": ft.seen,
        "board": [ft.board[c] * 2 + ft.board_chop[c] for c in range(len(sp.boards))],
        "hand": (ft.stand * (1 << sp.n) + ft.hand) * 2 + ft.hand_chop,
    }
