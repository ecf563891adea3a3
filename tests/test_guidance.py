"""RLAdapter's guidance pieces (twosome_jax/guidance.py): the comprehension score against
hand-computed sigmoids, the prompts against literal strings, the analyst's cached-prefix decode
against the full prompts decoded without it, and the decision model's picks (its system turn
cached or not) against log-probabilities computed here one full sequence per (prompt, sub-goal),
on the tiny model."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from conftest import randomize_model

from envs_jax.crafter.constants import SUBGOALS
from twosome_jax import guidance as G
from twosome_jax.chat import render_chat
from twosome_jax.model import ALL_TARGETS, LoRAConfig, ModelLoadError, apply_logits, load_model, split_model
from twosome_jax.model.generate import generate, pad_prompts


# ------------------------------------------------------------------------ comprehension score
def test_comprehension_score_is_the_shifted_sigmoid():
    assert G.comprehension_score(0.1) == 0.5
    # 1 / (1 + e^-z) at z = 10 (cos - 0.1) = 2, -1, 9, -11, 4
    for cos, want in [(0.3, 0.8807970779778823), (0.0, 0.2689414213699951), (1.0, 0.9998766054240137),
                      (-1.0, 1.670142184809518e-05), (0.5, 0.9820137900379085)]:
        assert G.comprehension_score(cos) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(G.comprehension_score(np.array([0.1, 0.3])), [0.5, 0.8807970779778823], rtol=1e-12)


class FixedEncoder:
    """Unit vectors by table; records what it was asked to encode."""

    def __init__(self, table, tokenizer=None):
        self.table, self.tokenizer, self.seen = table, tokenizer, []

    def encode(self, texts):
        self.seen.append(list(texts))
        return np.stack([self.table.get(t, np.array([0.0, 0.0, 1.0])) for t in texts]).astype(np.float32)


def test_comprehension_scores_from_fixed_embeddings():
    r = math.sqrt(0.75)
    encoder = FixedEncoder({"do, do": np.array([1.0, 0.0, 0.0]), "chop tree.": np.array([0.5, r, 0.0]),
                            "sleep": np.array([0.0, 1.0, 0.0]), "": np.array([0.0, 1.0, 0.0])})
    got = G.comprehension_scores(encoder, ["do, do", "do, do", "sleep"], ["chop tree.", "", "chop tree."])
    # cosines 0.5, 0, sqrt(0.75): sigmoid(4), sigmoid(-1), sigmoid(10 sqrt(0.75) - 1)
    np.testing.assert_allclose(got, [0.9820137900379085, 0.2689414213699951, 1 / (1 + math.exp(1 - 10 * r))],
                               rtol=1e-6)
    assert G.comprehension_scores(encoder, [], []).shape == (0,)


def _word_tokenizer(max_length):
    """Whitespace and punctuation split, [CLS] ... [SEP], truncation at max_length."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["[UNK]", "[CLS]", "[SEP]", ",", *["noop", "do", "sleep"]])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tok.enable_truncation(max_length=max_length)
    return tok


def test_history_truncation_keeps_the_oldest_by_default_or_the_newest():
    """n names are 2n + 1 tokens here (names, commas, [CLS], [SEP]): 10 tokens hold 4 names."""
    history = "move_left, move_right, move_up, move_down, do, sleep, noop"
    encoder = FixedEncoder({}, _word_tokenizer(10))
    G.comprehension_scores(encoder, [history, "do, noop"], ["sleep.", "sleep."])
    assert encoder.seen[-1][:2] == [history, "do, noop"]  # as given: the encoder's truncation keeps the start
    G.comprehension_scores(encoder, [history, "do, noop"], ["sleep.", "sleep."], keep="newest")
    assert encoder.seen[-1][:2] == ["move_down, do, sleep, noop", "do, noop"]
    G.comprehension_scores(encoder, ["move_up, move_down, do, sleep, noop"], ["x"], keep="newest")
    assert encoder.seen[-1][0] == "move_down, do, sleep, noop"


@pytest.mark.slow
def test_with_minilm_only_the_oldest_actions_count_by_default():
    """all-MiniLM-L6-v2 reads 256 tokens: of 100 actions (about 380 tokens here) the last 30 do not
    change the default score, and do change it when the newest are kept."""
    from twosome_jax.hub import FetchError
    from twosome_jax.sentence_encoder import SentenceEncoder

    try:
        encoder = SentenceEncoder.load()
    except FetchError as e:  # no registry access: fail loudly rather than skip silently
        pytest.fail(f"cannot fetch all-MiniLM-L6-v2: {e}")
    names = ["move_left", "do", "do", "place_table", "make_wood_pickaxe"]
    old = names * 14
    assert encoder.tokenizer.encode(", ".join(old)).overflowing  # the first 70 already fill the window
    a, b = ", ".join(old + ["noop"] * 30), ", ".join(old + ["sleep"] * 30)
    inst = ["place crafting table, make wood pickaxe, chop tree."] * 2
    default = G.comprehension_scores(encoder, [a, b], inst)
    assert default[0] == default[1] and 0 < default[0] < 1
    newest = G.comprehension_scores(encoder, [a, b], inst, keep="newest")
    assert abs(newest[0] - newest[1]) > 1e-3
    cos = encoder.encode([a, inst[0]])
    assert default[0] == pytest.approx(1 / (1 + math.exp(-10 * (float(cos[0] @ cos[1]) - 0.1))), rel=1e-5)


@pytest.mark.parametrize("call,message", [
    (lambda e: G.comprehension_scores(e, ["do"], ["a", "b"]), "1 histories but 2 instructions"),
    (lambda e: G.comprehension_scores(e, ["do"], ["a"], keep="latest"), "unknown keep 'latest'; accepted: oldest, newest"),
    (lambda e: G.comprehension_scores(e, "do", ["a"]), "histories must be a list of strings"),
    (lambda e: G.comprehension_scores(FixedEncoder({}), ["do"], ["a"], keep="newest"), "needs an encoder with a tokenizer"),
])
def test_comprehension_scores_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call(FixedEncoder({}))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------ prompts
ANALYST = ("<|im_start|>system\nYou are a professional game analyst. A player is playing a 2D Minecraft game. "
           "You will get the player's observation, status information, and its comprehension score of language "
           "guidance. You will be asked to provide concise summaries and suggestions about this player.<|im_end|>\n"
           "<|im_start|>user\nPlayer sees: <grass, tree, cow>. Player status: <9 health, 9 food, 8 drink, 9 energy, "
           "2 wood>. Past action: <do>. Past sub-goals: <attack cow, chop tree, place crafting table.>. Player's "
           "comprehension score: <0.731>.<|im_end|>\n<|im_start|>assistant\n")
DECISION = ("<|im_start|>system\nYou are a professional game analyst. A player is playing a 2D Minecraft game. "
            "You will also get analysis about this player from another analyst. Available sub-goals are: <eat plant, "
            "attack zombie, attack skeleton, attack cow, chop tree, mine stone, mine coal, mine iron, mine diamond, "
            "drink water, chop grass, sleep, place stone, place crafting table, place furnace, place plant, make wood "
            "pickaxe, make stone pickaxe, make iron pickaxe, make wood sword, make stone sword, make iron sword, plant "
            "row, chop grass with wood pickaxe, vegetarianism, make workshop, survival, deforestation, work and sleep, "
            "gardening, wilderness survival>. You are asked to suggest 3 sub-goals from available sub-goals in one "
            "sentence without any other words.<|im_end|>\n<|im_start|>user\nPlayer sees: <grass, tree, cow>. Player "
            "status: <9 health, 9 food, 8 drink, 9 energy, 2 wood>. Past action: <do>. Past sub-goals: <attack cow, "
            "chop tree, place crafting table.>. Analysis: <The player has wood. It should place a table.>."
            "<|im_end|>\n<|im_start|>assistant\n")
PIECES = ("grass, tree, cow", "9 health, 9 food, 8 drink, 9 energy, 2 wood", "do",
          "attack cow, chop tree, place crafting table.")


def test_prompts_are_the_release_texts_in_one_chat_template():
    assert G.adapter_prompt(*PIECES, 0.7306) == ANALYST
    assert G.decision_prompt(*PIECES, "The player has wood. It should place a table.") == DECISION
    first = G.adapter_prompt("", "", "", "", 0.5)
    assert first.count("<|im_start|>") == 3 and "Past action: <>. Past sub-goals: <>. Player's comprehension score: <0.500>." in first


@pytest.mark.parametrize("call,message", [
    (lambda: G.adapter_prompt(*PIECES, 1.5), "score 1.5 is not a comprehension score"),
    (lambda: G.adapter_prompt(*PIECES, "0.5"), "score '0.5' is not a comprehension score"),
    (lambda: G.decision_prompt("grass", 9, "do", "", ""), "status must be a string, got int"),
])
def test_prompts_reject_bad_pieces(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_situation_from_a_craftax_state():
    """Crafter's names from a state's fields (semantic ids via BLOCK_TO_SEMANTIC): a 9x9 world of
    grass (Craftax block 2) with a tree (5) in view and water (3) out of view, a cow beside the
    player, a dead zombie in view."""
    world = np.full((9, 9), 2, np.int32)
    world[4, 1], world[0, 4] = 5, 3  # row 4 (the player's), column 1: seen; row 0: 4 rows up, not seen
    mobs = lambda pos, alive: SimpleNamespace(position=np.array(pos, np.int32).reshape(-1, 2), mask=np.array(alive))
    inventory = {name: 0 for name in ("sapling", "wood", "stone", "coal", "iron", "diamond", "wood_pickaxe",
                                      "stone_pickaxe", "iron_pickaxe", "wood_sword", "stone_sword", "iron_sword")}
    inventory.update(wood=2, wood_pickaxe=1)
    game = SimpleNamespace(map=world, player_position=np.array([4, 4]), zombies=mobs([[4, 6]], [False]),
                           cows=mobs([[5, 4]], [True]), skeletons=mobs([], []), arrows=mobs([], []),
                           player_health=9, player_food=0, player_drink=8, player_energy=9,
                           inventory=SimpleNamespace(**inventory))
    sees, status, last = G.situation(SimpleNamespace(game=game), [5, 0, 8])
    assert (sees, status, last) == ("grass, tree, cow", "9 health, 8 drink, 9 energy, 2 wood, 1 wood_pickaxe", "place_table")
    assert G.situation(game, [])[2] == ""


# -------------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="module")
def tiny_base():
    """The tiny model with clearly nonzero random weights (decisive scores), no adapters."""
    config, model, tok = load_model("tiny-random", dtype="float32")
    randomize_model(model, seed=7)
    return model, tok


@pytest.fixture(scope="module")
def decision(tiny_base):
    model, tok = tiny_base
    return G.ScoringDecisionModel(model, tok)


@pytest.fixture(scope="module")
def situations():
    return [G.decision_prompt(*PIECES, "The player has wood. It should place a table."),
            G.decision_prompt("water, sand", "3 health, 1 food", "noop", "", "Drink.")]


def reference_scores(model, tok, prompts):
    """[N, 31]: mean log-prob of the tokens tok(prompt + sub-goal) adds to tok(prompt), one full
    causal forward per pair (no packing, no shared tables), in chunks of 8 sequences."""
    graphdef, base, lora = split_model(model)
    pairs = [(tok(p)["input_ids"], tok(p + s)["input_ids"]) for p in prompts for s in SUBGOALS]
    width = max(len(f) for _, f in pairs)
    logits_fn = jax.jit(lambda ids, mask: apply_logits(graphdef, base, lora, ids, None, mask, use_lora=False))
    out = []
    for start in range(0, len(pairs), 8):
        chunk = pairs[start:start + 8]
        ids, mask = np.zeros((8, width), np.int32), np.zeros((8, width), bool)
        for r, (_, full) in enumerate(chunk):
            ids[r, :len(full)], mask[r, :len(full)] = full, True
        logp = np.asarray(jax.nn.log_softmax(logits_fn(ids, mask), axis=-1))
        for r, (head, full) in enumerate(chunk):
            assert full[:len(head)] == head
            out.append(np.mean([logp[r, t - 1, full[t]] for t in range(len(head), len(full))]))
    return np.array(out).reshape(len(prompts), len(SUBGOALS))


def test_decision_scores_and_greedy_picks_match_full_sequences(tiny_base, decision, situations):
    model, tok = tiny_base
    want = reference_scores(model, tok, situations)
    got = decision.scores(situations)
    assert got.shape == (2, 31) and want.std(axis=1).min() > 0.1  # decisive scores
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
    picks = decision.choose(situations, greedy=True)
    top = np.argsort(-want, axis=1, kind="stable")
    for row, pick in zip(np.sort(-want, axis=1), picks):
        assert -row[2] - -row[3] > 1e-3  # the top 3 are well separated from the 4th
    assert picks == [tuple(int(i) for i in t[:3]) for t in top]
    assert picks[0] != picks[1] and decision.choose(situations, greedy=True) == picks
    # one prompt alone (another batch and width) gives the same picks
    assert decision.choose(situations[1:], greedy=True) == picks[1:]


def test_decision_scores_with_and_without_the_cached_system_turn_agree(tiny_base, decision, situations):
    """The cached system turn (the default) and the whole prompts read every time: the same scores
    for a batch of prompts of different lengths, and the same greedy picks."""
    model, tok = tiny_base
    assert tok.decode(decision.prefix_ids).endswith("in one sentence without any other words.<|im_end|>\n<|im_start|>user\n")
    full = G.ScoringDecisionModel(model, tok, cache_prefix=False)
    assert full.prefix is None and decision.prefix is not None and not decision.prefix.use_lora
    prompts = situations + [G.decision_prompt("grass, tree, cow, zombie, table", "9 health, 2 food, 5 drink, 1 wood",
                                              "place_table", "collect wood, place table, eat cow.", "It has wood.")]
    assert len({len(tok(p)["input_ids"]) for p in prompts}) == 3
    want = full.scores(prompts)
    np.testing.assert_allclose(decision.scores(prompts), want, atol=1e-4, rtol=0)
    assert decision.choose(prompts, greedy=True) == full.choose(prompts, greedy=True)


def test_decision_rejects_a_prompt_with_another_system_turn(decision, situations):
    other = render_chat([{"role": "system", "content": "You are a poet."}, {"role": "user", "content": "Go."}])
    with pytest.raises(ValueError, match=r"prompts\[1\] does not start with the decision model's system turn") as e:
        decision.scores([situations[0], other])
    assert "\n" not in str(e.value)


def test_sampled_picks_are_valid_and_reproducible(decision, situations):
    prompts = situations  # the greedy test's shapes: no new compile
    draws = [decision.choose(prompts, jax.random.key(seed)) for seed in range(4)]
    for picks in draws:
        assert len(picks) == len(prompts)
        for pick in picks:
            assert len(pick) == 3 and len(set(pick)) == 3 and all(isinstance(i, int) and 0 <= i < 31 for i in pick)
    assert decision.choose(prompts, jax.random.key(0)) == draws[0]
    assert len({p for picks in draws for p in picks}) > 2  # sampling varies over rows and keys
    assert decision.instruction_text(draws[0][0]) in {", ".join(SUBGOALS[i] for i in c) + "."
                                                      for c in itertools.combinations(range(31), 3)}


def _plackett_luce(p, order):
    """Probability of drawing ``order`` first-to-last without replacement from probabilities p."""
    prob, left = 1.0, 1.0
    for i in order:
        prob, left = prob * p[i] / left, left - p[i]
    return prob


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gumbel_top_k_draws_without_replacement_from_the_softmax(temperature):
    """Ordered triples of 4 candidates over 24,000 draws (fixed key) against the Plackett-Luce
    probabilities of softmax(scores / T): chi-square below its 0.999 quantile at 23 degrees of
    freedom, 49.73 (scipy.stats.chi2.ppf(0.999, 23))."""
    scores = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    p = np.exp(scores / temperature) / np.exp(scores / temperature).sum()
    n = 24000
    picks = G.pick_subgoals(np.tile(scores, (n, 1)), jax.random.key(3), temperature=temperature)
    assert picks.shape == (n, 3) and (np.sort(picks, axis=1)[:, 1:] != np.sort(picks, axis=1)[:, :-1]).all()
    counts = {}
    for row in map(tuple, picks):
        counts[row] = counts.get(row, 0) + 1
    orders = list(itertools.permutations(range(4), 3))
    expected = np.array([n * _plackett_luce(p, o) for o in orders])
    observed = np.array([counts.get(o, 0) for o in orders])
    assert expected.sum() == pytest.approx(n) and observed.sum() == n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    print(f"T={temperature}: chi-square {chi2:.1f} over 23 degrees of freedom")
    assert chi2 < 49.73
    assert G.pick_subgoals(np.tile(scores, (2, 1)), greedy=True).tolist() == [[0, 1, 2]] * 2


def test_instruction_text_and_bad_choices(decision, tiny_base):
    assert decision.instruction_text((13, 4, 16)) == "chop tree, place crafting table, make wood pickaxe."
    for bad in [(1, 2), (1, 2, 3, 4), (1, 1, 2), (1, 2, 31), (-1, 2, 3), (0.0, 1, 2)]:
        with pytest.raises(ValueError, match=r"are not an instruction; accepted: 3 distinct indices in 0\.\.30") as e:
            decision.instruction_text(bad)
        assert "\n" not in str(e.value)
    model, tok = tiny_base
    cases = [
        (lambda: decision.choose([]), "the decision model needs at least one prompt"),
        (lambda: decision.choose(["What now?"], greedy=True), "does not end with the assistant turn's opening"),
        (lambda: decision.choose([G.decision_prompt("", "", "", "", "")]), "sampled picks need a key"),
        (lambda: G.ScoringDecisionModel("no-such-model"), "model spec 'no-such-model' is not a known model name"),
        (lambda: G.ScoringDecisionModel(model), "a loaded Llama needs its tokenizer"),
        (lambda: G.ScoringDecisionModel(model, tok, temperature=0), "temperature must be > 0"),
        (lambda: G.pick_subgoals(np.zeros((2, 2)), greedy=True), r"cannot pick 3 of scores shaped \(2, 2\)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(ModelLoadError):
        G.AdapterLM("no-such-model")


def test_decision_model_from_a_spec():
    """The constructor loads a spec (tiny-random: default init, near-uniform scores); its picks
    are still 3 distinct valid sub-goals."""
    picks = G.ScoringDecisionModel("tiny-random").choose([G.decision_prompt("grass", "9 health", "do", "", "")],
                                                          greedy=True)
    assert len(picks) == 1 and len(set(picks[0])) == 3 and all(0 <= i < 31 for i in picks[0])


# ------------------------------------------------------------------------------------ analyst
@pytest.fixture(scope="module")
def analyst():
    config, model, tok = load_model("tiny-random", dtype="float32", lora=LoRAConfig(rank=4, alpha=8.0, targets=ALL_TARGETS))
    randomize_model(model, seed=11)
    return model, tok, G.AdapterLM(model, tok, max_new_tokens=12)


ANALYST_PROMPTS = [G.adapter_prompt(*PIECES, 0.7306), G.adapter_prompt("water", "1 health", "", "", 0.5),
                   G.adapter_prompt("sand, lava, iron, diamond", "9 health, 9 food", "noop", "sleep.", 0.01)]


def _full_prompt_texts(model, tok, adapter, prompts, lora=None):
    """Greedy continuations of the whole prompts, no prefix cache, decoded as the analyst does."""
    graphdef, base, own = split_model(model)
    ids, lens = pad_prompts([tok(p)["input_ids"] for p in prompts], tok.pad_token_id)
    out = generate(graphdef, base, own if lora is None else lora, ids, lens, max_new_tokens=12,
                   eos_id=adapter.eos_ids, pad_id=tok.pad_token_id)
    return [tok.decode(t[:n], skip_special_tokens=True).strip() for t, n in zip(np.asarray(out.tokens), np.asarray(out.lengths))]


def test_analyst_with_cached_system_turn_writes_what_full_prompts_give(analyst):
    model, tok, adapter = analyst
    assert tok.decode(adapter.prefix_ids).endswith("about this player.<|im_end|>\n<|im_start|>user\n")
    want = _full_prompt_texts(model, tok, adapter, ANALYST_PROMPTS)
    got = adapter.analyses(ANALYST_PROMPTS, greedy=True)
    assert got == want and len(set(got)) == 3 and all(got)
    sampled = adapter.analyses(ANALYST_PROMPTS, jax.random.key(0))
    assert sampled == adapter.analyses(ANALYST_PROMPTS, jax.random.key(0)) and sampled != got
    # new adapters (as after SFT): the cached system turn is recomputed with them
    graphdef, base, lora = split_model(model)
    halved = jax.tree.map(lambda x: 0.5 * x, lora)
    adapter.update_adapters(halved)
    try:
        new = adapter.analyses(ANALYST_PROMPTS, greedy=True)
        assert new == _full_prompt_texts(model, tok, adapter, ANALYST_PROMPTS, halved) and new != got
    finally:
        adapter.update_adapters(lora)


def test_analyst_rejects_bad_input(analyst):
    _, _, adapter = analyst
    for call, message in [
        (lambda: adapter.analyses([], greedy=True), "analyses needs at least one prompt"),
        (lambda: adapter.analyses(["Hello"], greedy=True), r"prompts\[0\] does not start with the analyst's system turn"),
        (lambda: adapter.analyses(ANALYST_PROMPTS), "sampled analyses need a key"),
        (lambda: G.AdapterLM(analyst[0], analyst[1], max_new_tokens=0), "max_new_tokens must be a positive int"),
    ]:
        with pytest.raises(ValueError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
