"""RLAdapter's loop (twosome_jax.rladapter_*): the config and its one-line errors, one query round
with stand-in models against hand-built expectations, and a two-stage run with the tiny LLaMA as
adapter and decision model (1 seed, 2 envs, 100-step iterations of two 50-step query segments,
2 iterations per stage) that must write both stages' datasets, adapters and summaries, and must
end the same when killed and resumed inside a stage, while closing a stage, and between stages.

The sentence encoder is a stand-in (fixed random word vectors, summed and normalised): the real
all-MiniLM-L6-v2 embeds the 4,495-row instruction table in about a minute on two cores."""

from __future__ import annotations

import itertools
import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from tb_events import tb_histograms, tb_scalars, tb_texts

from envs_jax.crafter import score
from envs_jax.crafter.constants import ACTION_NAMES, SUBGOALS
from twosome_jax.guided_config import ConfigError, load_guided_config
from twosome_jax.rladapter_config import RLAdapterConfig

# RLAdapter stages trained end to end
pytestmark = pytest.mark.slow

COMBOS = list(itertools.combinations(range(len(SUBGOALS)), 3))


def sentence(subgoals) -> str:
    """The instruction of 3 sub-goal names: in the list's order, joined by ', ', a full stop."""
    return ", ".join(sorted(subgoals, key=SUBGOALS.index)) + "."


class WordEncoder:
    """Stands in for the sentence encoder: the normalised sum of a fixed random vector per word
    (plus a constant, so that the empty text has a direction too). Records what it encodes."""

    def __init__(self, dim=8):
        self.dim, self.vectors, self.seen = dim, {}, []

    def _word(self, w):
        if w not in self.vectors:
            self.vectors[w] = np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim)
        return self.vectors[w]

    def encode(self, texts):
        self.seen.append(list(texts))
        out = []
        for t in texts:
            v = np.full(self.dim, 0.1) + sum((self._word(w) for w in re.findall(r"[a-z_]+", t)), np.zeros(self.dim))
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, np.float32)


# -- the config -------------------------------------------------------------------------------
def test_config_file_holds_the_releases_ppo_and_loop():
    ours, ppo = load_guided_config("configs/crafter_rladapter.yaml", base=RLAdapterConfig()), load_guided_config("configs/crafter_ppo.yaml")
    shared = {k for k in ppo.to_dict() if ours.to_dict()[k] != ppo.to_dict()[k]}
    assert shared == {"trainer", "instruction", "num_envs", "num_steps", "checkpoint_every"}, shared
    assert (ours.num_envs, ours.num_steps, ours.batch_size // ours.num_minibatches, ours.update_epochs) == (20, 200, 125, 4)
    assert (ours.instruction_interval, ours.segments_per_iteration, ours.iterations_per_stage) == (100, 2, 250)
    assert (ours.stages, ours.total_timesteps, ours.policy_across_stages, ours.sft_data, ours.adapter, ours.adapter_sft) == (
        5, 1_000_000, "carry", "stage", "lm", True)
    s = ours.sft_settings()  # AdaRefiner sft.py
    assert (s.lora_rank, s.lora_alpha, s.lora_dropout, s.learning_rate, s.batch_size, s.epochs, s.max_grad_norm) == (
        64, 16.0, 0.1, 2e-4, 4, 1, 0.3)


def test_command_line_flags_and_dispatch(capsys):
    import argparse

    from twosome_jax import train
    from twosome_jax.guided_config import add_guided_arguments, guided_config_from_args
    from twosome_jax.rladapter_train import handles

    parser = add_guided_arguments(argparse.ArgumentParser(), RLAdapterConfig)
    args = parser.parse_args(["--config", "configs/crafter_rladapter.yaml", "--decision-model", "/models/llama.gguf",
                              "--set", "stages=2", "--total-timesteps", "8000"])
    cfg = guided_config_from_args(args, RLAdapterConfig)
    assert (cfg.decision_model, cfg.stages, cfg.total_timesteps) == ("/models/llama.gguf", 2, 8000)
    assert handles(["--config", "configs/crafter_rladapter.yaml"]) and not handles(["--config", "configs/crafter_ppo.yaml"])
    assert train.main(["--config", "configs/crafter_rladapter.yaml", "--set", "num_steps=120"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: num_steps=120 is not a multiple of instruction_interval=100; accepted: a multiple of 100 "
                   "(an iteration is a whole number of query segments) (from the command line)"), err


@pytest.mark.parametrize("changes, message", [
    ({"instruction": "random_subgoals"}, "instruction='random_subgoals' is invalid; accepted: rladapter"),
    ({"num_steps": 250, "num_minibatches": 25}, "num_steps=250 is not a multiple of instruction_interval=100"),
    ({"total_timesteps": 6000}, "total_timesteps=6000 is not a multiple of the batch num_envs*num_steps=20*200=4000"),
    ({"adapter": "none"}, "adapter_sft=true needs adapter=lm; accepted with adapter=none: adapter_sft=false"),
    ({"policy_across_stages": "reinit", "anneal_lr": True}, "anneal_lr=true is invalid with policy_across_stages=reinit"),
    ({"sft_data": "all"}, "sft_data='all' is invalid; accepted: stage, accumulated"),
    ({"policy_across_stages": "fresh"}, "policy_across_stages='fresh' is invalid; accepted: carry, reinit"),
    ({"subgoals_per_instruction": 2}, "subgoals_per_instruction=2 is invalid; accepted: 3"),
    ({"sft_lora_rank": 0}, "SFT setting lora_rank=0 must be a positive integer (set by the sft_* config keys)"),
    ({"stages": 0}, "stages=0 is invalid; accepted: an integer > 0"),
    ({"sft_min_next_score": 1.5}, "sft_min_next_score=1.5 is invalid; accepted: a number in [0, 1], or none"),
    ({"num_envs": 1, "num_steps": 100, "num_minibatches": 2, "total_timesteps": 100},
     "a stage gives 1 SFT pair(s)"),
])
def test_bad_configs_are_rejected_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        RLAdapterConfig(**changes)
    assert "\n" not in str(e.value)


def test_sft_pairs_per_stage_or_accumulated(tmp_path):
    from twosome_jax.rladapter_train import sft_pairs

    for stage, n in ((1, 3), (2, 4)):
        (tmp_path / f"stage_{stage}").mkdir()
        lines = [{"prompt": f"p{stage}.{i}", "response": f"r{stage}.{i}", "env_step": i} for i in range(n)]
        (tmp_path / f"stage_{stage}" / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = RLAdapterConfig()
    assert sft_pairs(cfg, tmp_path, 2) == [(f"p2.{i}", f"r2.{i}") for i in range(4)]
    every = [(f"p{s}.{i}", f"r{s}.{i}") for s, n in ((1, 3), (2, 4)) for i in range(n)]
    assert sft_pairs(cfg.replace(sft_data="accumulated"), tmp_path, 2) == every
    subset = sft_pairs(cfg.replace(sft_data="accumulated", sft_max_pairs=5), tmp_path, 2)
    assert len(subset) == 5 and subset == [p for p in every if p in subset]  # a subset, in dataset order
    assert subset == sft_pairs(cfg.replace(sft_data="accumulated", sft_max_pairs=5), tmp_path, 2)
    assert subset != sft_pairs(cfg.replace(sft_data="accumulated", sft_max_pairs=5, seed=2), tmp_path, 2)


def test_sft_pairs_filtered_by_the_next_comprehension_score(tmp_path):
    """sft_min_next_score keeps a pair when its env's next round scored at least that: by hand,
    2 envs of one seed, rounds every 10 steps, the data written seed-major as a round writes it."""
    from twosome_jax.rladapter_train import sft_pairs

    scores = {0: [0.9, 0.2, 0.7, 0.6], 1: [0.1, 0.8, 0.5, 0.95]}  # env -> its rounds' scores, by step
    lines = [{"prompt": f"p{e}.{t}", "response": f"r{e}.{t}", "env_step": 10 * t, "seed": 0, "env": e,
              "comprehension_score": scores[e][t]} for t in range(4) for e in (0, 1)]
    (tmp_path / "stage_1").mkdir()
    (tmp_path / "stage_1" / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = RLAdapterConfig(sft_min_next_score=0.6)
    # env 0: next scores 0.2, 0.7, 0.6 -> rounds 1 and 2; env 1: 0.8, 0.5, 0.95 -> rounds 0 and 2;
    # the last round of each env has no next one; dataset order kept
    assert sft_pairs(cfg, tmp_path, 1) == [("p1.0", "r1.0"), ("p0.1", "r0.1"), ("p0.2", "r0.2"), ("p1.2", "r1.2")]
    assert sft_pairs(cfg.replace(sft_min_next_score=0.0), tmp_path, 1) == [
        (r["prompt"], r["response"]) for r in lines if r["env_step"] < 30]
    assert sft_pairs(cfg.replace(sft_min_next_score=1.0), tmp_path, 1) == []


# -- a two-stage run --------------------------------------------------------------------------
N, T, H, ITERATIONS = 2, 100, 50, 4  # 2 envs, 100-step iterations of 2 segments of 50, 2 iterations per stage
CFG = RLAdapterConfig(num_seeds=1, num_envs=N, num_steps=T, instruction_interval=H, num_minibatches=4,
                      update_epochs=1, hidden=(32,), total_timesteps=2 * N * T, stages=2,
                      adapter_model="tiny-random", decision_model="tiny-random", adapter_max_new_tokens=8,
                      sft_lora_rank=4, sft_lora_alpha=8.0, checkpoint_every=1, env_options=("max_timesteps=60",),
                      seed=5)
VOLATILE = ("wall_time", "steps_per_second", "query_")  # timing: differs between runs
ENCODER = WordEncoder()  # one for every run here (the same vectors; its word cache saves time)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from twosome_jax.rladapter_train import train

    run_dir = tmp_path_factory.mktemp("rladapter") / "run"
    return run_dir, train(CFG, run_dir, resume=False, progress=False, encoder=ENCODER)


def _metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(VOLATILE)}
            for line in open(run_dir / "metrics.jsonl")]


def _data(run_dir: Path, stage: int) -> list[dict]:
    return [json.loads(line) for line in open(run_dir / f"stage_{stage}" / "data.jsonl")]


def _lora(run_dir: Path, stage: int) -> dict:
    from safetensors.numpy import load_file

    return load_file(run_dir / f"stage_{stage}" / "adapter" / "adapter_model.safetensors")


def _checkpoint(run_dir: Path, step: int | None = None):
    """(step, tree) of a checkpoint of the run: the PPO state, the histories, the flags, the LoRA."""
    import jax
    from flax import nnx

    import envs_jax
    from twosome_jax import run as runlib
    from twosome_jax.guided_trainer import GuidedTrainer, init
    from twosome_jax.model import load_model, split_model

    env, params = envs_jax.make(CFG.task, **CFG.env_kwargs)
    trainer = GuidedTrainer.from_config(CFG.replace(total_timesteps=2 * CFG.total_timesteps), env, params, 8)
    _, model, _ = load_model("tiny-random", lora=CFG.sft_settings().lora_config())
    abstract = {"ppo": jax.eval_shape(lambda k: init(trainer, k), jax.random.PRNGKey(0)),
                "history": np.zeros((1, N, H), np.int32), "queried": np.bool_(True), "closed": np.bool_(True),
                "stage": np.int32(0), "lora": nnx.to_pure_dict(split_model(model)[2])}
    return runlib.restore_checkpoint(runlib.checkpoint_manager(run_dir, create=False), abstract, step)


def test_stages_write_datasets_adapters_summaries_and_episodes(run):
    run_dir, summary = run
    for name in ("config.yaml", "metrics.jsonl", "episodes.jsonl", "learning_curve.png", "checkpoints", "tb"):
        assert (run_dir / name).exists(), name
    for stage in (1, 2):
        records = _data(run_dir, stage)
        # a round before each 50-step segment: 4 per stage, 2 envs each; env_step counts the seed's steps
        start = (stage - 1) * 2 * N * T
        assert [(r["env_step"], r["env"]) for r in records] == [(start + N * H * i, e) for i in range(4) for e in range(N)]
        assert all(set(r) == {"prompt", "response", "comprehension_score", "env_step", "seed", "env", "subgoals"}
                   for r in records)
        assert all(len(set(r["subgoals"])) == 3 and set(r["subgoals"]) <= set(SUBGOALS) for r in records)
        assert sum(bool(r["response"]) for r in records) >= 6  # the tiny adapter writes something
        for r in records:  # the prompt shows the score the record holds, and the last action's name
            assert f"comprehension score: <{r['comprehension_score']:.3f}>." in r["prompt"]
            last = re.search(r"Past action: <([a-z_]*)>", r["prompt"]).group(1)
            assert last in ACTION_NAMES or (last == "" and r["env_step"] == 0)
        summary_k = json.loads((run_dir / f"stage_{stage}" / "summary.json").read_text())
        assert summary_k["queries"] == 8 and summary_k["env_steps"] == [start, start + 2 * N * T]
        assert summary_k["comprehension_score"] == pytest.approx(np.mean([r["comprehension_score"] for r in records]))
        assert sum(summary_k["subgoal_histogram"].values()) == 24 and list(summary_k["subgoal_histogram"]) == list(SUBGOALS)
        sft = summary_k["sft"]  # 8 pairs: 7 train (2 batches of 4), 1 evaluates
        assert (sft["train_pairs"], sft["eval_pairs"], len(sft["train_losses"])) == (7, 1, 2)
        assert all(math.isfinite(x) for x in sft["train_losses"] + [sft["eval_loss"]])
        assert len(summary_k["samples"]) == 3 and all(t["situation"].startswith("Player sees: <") for t in summary_k["samples"])
    first = _data(run_dir, 1)[:N]  # no history and no instruction before the first round: the same (empty) text
    assert all(r["comprehension_score"] == pytest.approx(1 / (1 + math.exp(-9.0))) for r in first)
    assert all("Past sub-goals: <>." in r["prompt"] for r in first)
    # every later round tells each env the instruction it acted under: the previous round's sub-goals
    records = _data(run_dir, 1) + _data(run_dir, 2)
    for prev, r in zip(records, records[N:]):
        assert prev["env"] == r["env"] and f"Past sub-goals: <{sentence(prev['subgoals'])}>." in r["prompt"]
    # each stage's SFT moved the adapter (LoRA B starts at zero), differently
    one, two = _lora(run_dir, 1), _lora(run_dir, 2)
    assert all(np.abs(v).max() > 0 for k, v in one.items() if "lora_B" in k)
    assert one.keys() == two.keys() and any(not np.array_equal(one[k], two[k]) for k in one)
    # metrics: one line per iteration, the stage, the rounds' mean score, crafter_score over all episodes so far
    metrics = _metrics(run_dir)
    assert [(m["iteration"], m["env_steps"], m["stage"]) for m in metrics] == [(1, 200, 1), (2, 400, 1), (3, 600, 2), (4, 800, 2)]
    episodes = score.read_episodes(run_dir / "episodes.jsonl")
    assert len(episodes) >= 6 and max(e["env_step"] for e in episodes) <= 800  # 60-step episodes
    for m in metrics:
        rows = [r for r in records if m["env_steps"] - N * T <= r["env_step"] < m["env_steps"]]
        assert m["comprehension_score"] == pytest.approx(np.mean([r["comprehension_score"] for r in rows]))
        table = score.episode_table(episodes, budget=m["env_steps"])[0]
        assert m["crafter_score"] == pytest.approx(score.crafter_score(score.success_rates(table)), rel=1e-9)
    assert [s["stage"] for s in summary["stages"]] == [1, 2]
    # TensorBoard holds each stage's summary at its last env step
    summaries = [json.loads((run_dir / f"stage_{k}" / "summary.json").read_text()) for k in (1, 2)]
    ends = [s["env_steps"][1] for s in summaries]
    scalars, texts, histograms = tb_scalars(run_dir), tb_texts(run_dir), tb_histograms(run_dir)
    assert scalars["stage/comprehension_score"] == [(e, pytest.approx(s["comprehension_score"], abs=1e-6))
                                                    for e, s in zip(ends, summaries)]
    assert scalars["stage/sft_eval_loss"] == [(e, pytest.approx(s["sft"]["eval_loss"], rel=1e-6))
                                              for e, s in zip(ends, summaries)]
    assert [(e, h.num) for e, h in histograms["stage/subgoals"]] == [(e, 24) for e in ends]
    assert [step for step, _ in texts["stage/subgoals/table"]] == ends
    assert f"|0|{SUBGOALS[0]}|" in texts["stage/subgoals/table"][0][1]
    for (step, text), s in zip(texts["stage/summary"], summaries):
        assert text.startswith(f"    stage {s['stage']}: 8 queries") and s["samples"][0]["situation"] in text


def test_the_policy_acts_under_the_rows_of_the_chosen_subgoals(run):
    """The final checkpoint's instruction rows are the last round's picks, as rows of the
    combinations table; its adapter is the one exported after the last stage."""
    run_dir, _ = run
    step, ck = _checkpoint(run_dir)
    assert step == 2 * ITERATIONS + 1 and bool(ck["closed"]) and int(ck["stage"]) == 2
    last = _data(run_dir, 2)[-N:]
    want = [COMBOS.index(tuple(sorted(SUBGOALS.index(g) for g in r["subgoals"]))) for r in last]
    assert np.asarray(ck["ppo"].instruction).tolist() == [want]
    exported = _lora(run_dir, 2)
    a = np.asarray(ck["lora"]["layers"]["self_attn"]["q_proj"]["lora_a"])  # [layers, in, r]; PEFT: [r, in] per layer
    np.testing.assert_array_equal(exported["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"], a[1].T)


def test_a_round_with_stand_in_models(run):
    """One round on the run's last env states: the encoder reads each env's action names and the
    sentence of its previous row; the adapter reads prompts with the env's situation; the
    decision model reads the adapter's analysis; the picks become rows of the table."""
    import jax

    from envs_jax.crafter import text
    from twosome_jax.guidance import DecisionModel
    from twosome_jax.instructions import subgoal_sentences
    from twosome_jax.rladapter_round import QueryRound

    _, ck = _checkpoint(run[0], step=2 * ITERATIONS)
    env_state = jax.device_get(ck["ppo"].env_state)

    class Adapter:
        def analyses(self, prompts, key=None, greedy=False):
            self.prompts = prompts
            return [f"analysis number {i}" for i in range(len(prompts))]

    class Decision(DecisionModel):
        def choose(self, prompts, key=None, greedy=False):
            self.prompts = prompts
            return [(30, 0, 7), (4, 5, 6)][:len(prompts)]

    encoder, adapter, decision = WordEncoder(), Adapter(), Decision()
    round_ = QueryRound(encoder, adapter, decision, subgoal_sentences(SUBGOALS, 3))
    history = np.array([[[1, 5, 5, 16], [0, 0, 3, 8]]])
    previous = np.array([[0, 4494]])
    out = round_(env_state, history, previous, jax.random.PRNGKey(0), env_step=1234)
    names = [", ".join(ACTION_NAMES[a] for a in h) for h in history[0]]
    assert names[0] == "move_left, do, do, make_iron_sword"
    sentences = ["eat plant, attack zombie, attack skeleton.", "work and sleep, gardening, wilderness survival."]
    assert encoder.seen[-1] == names + sentences
    assert out.rows.tolist() == [[COMBOS.index((0, 7, 30)), COMBOS.index((4, 5, 6))]]
    for j in range(N):
        state_j = jax.tree.map(lambda a: a[j], env_state)
        situation = f"{text.player_sees(state_j)} {text.player_status(state_j)} Past action: <{names[j].split(', ')[-1]}>."
        assert situation in adapter.prompts[j] and f"Past sub-goals: <{sentences[j]}>." in adapter.prompts[j]
        assert f"Analysis: <analysis number {j}>." in decision.prompts[j] and situation in decision.prompts[j]
    assert [r["subgoals"] for r in out.records] == [["wilderness survival", "eat plant", "mine iron"],
                                                    ["chop tree", "mine stone", "mine coal"]]
    assert [(r["env_step"], r["seed"], r["env"], r["response"]) for r in out.records] == [
        (1234, 0, 0, "analysis number 0"), (1234, 0, 1, "analysis number 1")]
    assert [r["prompt"] for r in out.records] == adapter.prompts
    np.testing.assert_allclose(out.scores[0], [r["comprehension_score"] for r in out.records])
    # without an adapter the analysis is empty; before the first round nothing was acted under
    round_ = QueryRound(encoder, None, decision, subgoal_sentences(SUBGOALS, 3))
    out = round_(env_state, history[..., :0], None, jax.random.PRNGKey(0), env_step=0)
    assert encoder.seen[-1] == ["", "", "", ""] and all("Analysis: <>." in p for p in decision.prompts)
    assert all(r["response"] == "" for r in out.records)


def test_killed_and_resumed_equals_uninterrupted(run, tmp_path):
    """Killed after iteration 2's records (inside stage 1: the latest checkpoint is iteration 1),
    then after closing stage 1 (its SFT done, its checkpoint not: the latest is the stage's end,
    so the SFT is redone), then after iteration 3's records (the latest checkpoint: stage 1
    closed), then run to the end: every file comes out as in the uninterrupted run."""
    from twosome_jax import run as runlib
    from twosome_jax.rladapter_train import train

    class Killed(Exception):
        pass

    def kill_at(kind, n):
        def hook(k, i):
            if (k, i) == (kind, n):
                raise Killed
        return hook

    full_dir, _ = run
    run_dir = tmp_path / "run"
    for i, (kill, latest) in enumerate([(("iteration", 2), 2), (("stage", 1), 4), (("iteration", 3), 5)]):
        with pytest.raises(Killed):
            train(CFG, run_dir, resume=i > 0, progress=False, encoder=ENCODER, on_event=kill_at(*kill))
        assert max(runlib.checkpoint_manager(run_dir, create=False).all_steps()) == latest
    # the policy is carried across stages: closing stage 1 left it as it was
    (_, before), (_, after) = _checkpoint(run_dir, 4), _checkpoint(run_dir, 5)
    assert _same(before["ppo"].params, after["ppo"].params) and _same(before["ppo"].opt_state, after["ppo"].opt_state)
    train(CFG, run_dir, resume=True, progress=False, encoder=ENCODER)
    assert _metrics(run_dir) == _metrics(full_dir)
    for name in ("episodes.jsonl", "stage_1/data.jsonl", "stage_2/data.jsonl"):
        assert (run_dir / name).read_text() == (full_dir / name).read_text(), name
    for stage in (1, 2):
        ours, full = _lora(run_dir, stage), _lora(full_dir, stage)
        assert ours.keys() == full.keys() and all(np.array_equal(ours[k], full[k]) for k in ours)
        summaries = [json.loads((d / f"stage_{stage}" / "summary.json").read_text()) for d in (run_dir, full_dir)]
        for s in summaries:
            s.pop("seconds")
        assert summaries[0] == summaries[1]


def _same(a, b) -> bool:
    import jax

    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_policy_reinitialised_between_stages(tmp_path):
    """policy_across_stages: reinit: closing stage 1 replaces the policy and its optimizer by
    fresh ones (Adam's moments and count at zero), and keeps the environments and instructions.
    With sft_min_next_score 1 (no score reaches it) the stage has no SFT: the adapter goes on
    unchanged and is exported as it is."""
    import jax

    from twosome_jax.rladapter_train import train

    class Killed(Exception):
        pass

    def hook(kind, i):
        if (kind, i) == ("iteration", 3):
            raise Killed

    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        train(CFG.replace(policy_across_stages="reinit", sft_min_next_score=1.0), run_dir, resume=False,
              progress=False, encoder=ENCODER, on_event=hook)
    (_, before), (_, after) = _checkpoint(run_dir, 4), _checkpoint(run_dir, 5)
    for net in ("actor", "critic"):
        assert all(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(before["ppo"].params[net]),
                                                            jax.tree.leaves(after["ppo"].params[net])))
    moments = [x for p, x in jax.tree_util.tree_leaves_with_path(after["ppo"].opt_state)
               if "learning_rate" not in jax.tree_util.keystr(p)]
    assert moments and all(not np.any(x) for x in moments)
    assert any(np.any(x) for x in jax.tree.leaves(before["ppo"].opt_state))
    for field in ("env_state", "obs", "instruction", "env_steps", "episodes", "iteration"):
        assert _same(getattr(before["ppo"], field), getattr(after["ppo"], field)), field
    summary = json.loads((run_dir / "stage_1" / "summary.json").read_text())
    assert summary["sft"] is None and summary["sft_skipped"] == "0 pair(s) with a next comprehension score >= 1.0"
    assert _same(before["lora"], after["lora"])
    exported = _lora(run_dir, 1)
    assert exported and all(not v.any() for k, v in exported.items() if "lora_B" in k)  # LoRA B starts at zero


def test_decision_model_only_arm(tmp_path):
    """adapter: none: the analyses are empty, nothing is fine-tuned or exported, and the
    comprehension score and sub-goals are still recorded."""
    from twosome_jax.rladapter_train import train

    cfg = CFG.replace(adapter="none", adapter_sft=False)  # the run's trainer: no new compilation
    summary = train(cfg, tmp_path / "run", resume=False, progress=False, encoder=ENCODER)
    for stage in (1, 2):
        records = _data(tmp_path / "run", stage)
        assert len(records) == 8 and all(r["response"] == "" for r in records)
        assert all("Analysis: <>" not in r["prompt"] and "comprehension score: <" in r["prompt"] for r in records)
        assert not (tmp_path / "run" / f"stage_{stage}" / "adapter").exists()
    assert [(s["sft"], s["queries"]) for s in summary["stages"]] == [(None, 8), (None, 8)]


def test_greedy_evaluation_of_the_final_policy(run):
    """``python -m twosome_jax.evaluate RUN_DIR`` on an RLAdapter run: the final checkpoint under
    greedy guidance, one episode per env, the same report for the same seed, the Crafter score
    recomputed here from the episodes it lists."""
    from twosome_jax import rladapter_eval

    run_dir, _ = run
    report = rladapter_eval.evaluate_rladapter(run_dir, encoder=ENCODER)
    assert report == rladapter_eval.evaluate_rladapter(run_dir, encoder=ENCODER)  # greedy guidance, fixed worlds
    assert report["env_steps"] == 2 * 2 * N * T and report["episodes_per_seed"] == N
    [seed] = report["per_seed"]
    eps = seed["episodes_list"]
    assert sorted(e["env"] for e in eps) == list(range(N)) and all(1 <= e["length"] <= 60 for e in eps)
    # a round before each 50 steps the episode lasted: 3 picks each, always among the 31
    assert sum(seed["subgoals"].values()) == 3 * sum(-(-e["length"] // H) for e in eps)
    assert set(seed["subgoals"]) <= set(SUBGOALS)
    rates = [100 * np.mean([a in e["achievements"] for e in eps]) for a in seed["success_rates"]]
    assert list(seed["success_rates"].values()) == pytest.approx(rates)
    assert seed["crafter_score"] == pytest.approx(math.exp(np.mean(np.log1p(rates))) - 1)
    assert report["crafter_score"] == (pytest.approx(seed["crafter_score"]), 0.0)
    assert seed["return"] == pytest.approx(np.mean([e["return"] for e in eps]))
    one = rladapter_eval.evaluate_rladapter(run_dir, encoder=ENCODER, episodes=1)
    assert [e["env"] for e in one["per_seed"][0]["episodes_list"]] == [0]
    assert rladapter_eval.handles([str(run_dir), "--episodes", "3"])
    assert not rladapter_eval.handles(["--episodes", "3", str(run_dir / "stage_1")])


def test_evaluation_rejects_bad_episodes_in_one_line(run, capsys):
    from twosome_jax import evaluate

    run_dir, _ = run
    assert evaluate.main([str(run_dir), "--episodes", "3"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --episodes 3 is out of range; accepted: 1 to the run's num_envs (2)\n"
