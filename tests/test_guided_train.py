"""The instruction-conditioned agent and its PPO trainer (twosome_jax.guided_*): the network
against a numpy forward pass, the instruction schedule, the config, and one short PPO run on
Crafter (2 seeds x 4 envs, a tiny network, one compilation for the module) that must beat a
uniformly random policy and must continue exactly when killed and resumed."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs_jax.crafter import score
from envs_jax.crafter.constants import ACHIEVEMENTS, SUBGOALS
from twosome_jax.guided_agent import GuidedAgent
from twosome_jax.guided_config import ConfigError, GuidedConfig, is_guided_config, load_guided_config


# -- the network ------------------------------------------------------------------------------
def _np_forward(p, x, obs_size, instruction_dim):
    relu = lambda a: np.maximum(a, 0.0)
    obs, emb = x[:, :obs_size], x[:, obs_size:obs_size + instruction_dim]
    h = obs @ np.asarray(p["first"]["kernel"]) + np.asarray(p["first"]["bias"])
    if instruction_dim:
        h = h + emb @ np.asarray(p["instruction"]["kernel"])
    h = relu(h)
    h = relu(h @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"]))
    return h @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"])


def test_instruction_is_added_to_the_first_hidden_layer():
    agent = GuidedAgent(obs_shape=(5,), num_actions=3, instruction_dim=4, hidden=(6, 7))
    params = jax.jit(agent.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    obs, emb = rng.standard_normal((9, 5)).astype(np.float32), rng.standard_normal((9, 4)).astype(np.float32)
    x = np.asarray(agent.inputs(jnp.asarray(obs), jnp.asarray(emb)))
    np.testing.assert_array_equal(x, np.concatenate([obs, emb], 1))
    # random weights everywhere (the head's init is tiny), then a numpy forward pass
    params = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32), params)
    logits, value = jax.jit(agent.logits), jax.jit(agent.value)
    np.testing.assert_allclose(logits(params["actor"], x), _np_forward(params["actor"], x, 5, 4), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value(params["critic"], x), _np_forward(params["critic"], x, 5, 4)[:, 0],
                               rtol=1e-5, atol=1e-5)
    assert params["actor"]["instruction"]["kernel"].shape == (4, 6) and "bias" not in params["actor"]["instruction"]
    # another instruction changes the output; without the branch there is no instruction layer
    x2 = np.concatenate([obs, emb[::-1]], 1)
    assert not np.allclose(logits(params["actor"], x2), logits(params["actor"], x))
    plain = GuidedAgent(obs_shape=(5,), num_actions=3, hidden=(6, 7))
    p0 = jax.jit(plain.init)(jax.random.PRNGKey(0))
    assert "instruction" not in p0["actor"] and plain.input_dim == 5
    np.testing.assert_array_equal(plain.inputs(jnp.asarray(obs)), obs)


def test_initialisation_is_stable_baselines3s():
    params = jax.jit(GuidedAgent(obs_shape=(5,), num_actions=3, instruction_dim=4, hidden=(6, 7)).init)(jax.random.PRNGKey(1))
    for net, head_gain in (("actor", 0.01), ("critic", 1.0)):
        w = np.asarray(params[net]["head"]["kernel"])  # orthogonal columns with the head's gain
        np.testing.assert_allclose(w.T @ w, head_gain ** 2 * np.eye(w.shape[1]), atol=1e-6)
        first = np.asarray(params[net]["first"]["kernel"])  # [5, 6]: orthonormal rows times sqrt(2)
        np.testing.assert_allclose(first @ first.T, 2 * np.eye(5), atol=1e-5)
        assert not np.asarray(params[net]["first"]["bias"]).any()


def test_pixels_go_through_a_cnn():
    agent = GuidedAgent(obs_shape=(63, 63, 3), num_actions=17, instruction_dim=8, hidden=(32,))
    params = jax.jit(agent.init)(jax.random.PRNGKey(0))
    assert {"Conv_0", "Conv_1", "Conv_2", "first", "instruction", "head"} <= set(params["actor"])
    assert params["actor"]["first"]["kernel"].shape == (4 * 4 * 64, 32)  # 63 -> 14 -> 6 -> 4
    x = agent.inputs(jnp.ones((2, 63, 63, 3)), jnp.ones((2, 8)))
    assert x.shape == (2, 63 * 63 * 3 + 8) and jax.jit(agent.logits)(params["actor"], x).shape == (2, 17)
    with pytest.raises(ValueError, match=r"obs_shape=\(4, 4\) is not supported"):
        GuidedAgent(obs_shape=(4, 4), num_actions=2)


def test_instructions_are_redrawn_every_interval():
    from twosome_jax.guided_trainer import draw_instructions

    current = jnp.zeros((2, 5), jnp.int32)
    history = []
    for t in range(0, 250):
        current = draw_instructions(t, 100, current, jax.random.split(jax.random.PRNGKey(t), 2), 4495)
        history.append(np.asarray(current))
    history = np.stack(history)
    changed = np.flatnonzero(np.any(history[1:] != history[:-1], axis=(1, 2))) + 1
    assert changed.tolist() == [100, 200]
    assert history.min() >= 0 and history.max() < 4495 and len(np.unique(history[0])) > 1


def test_subgoal_sentences_and_their_table(tmp_path, monkeypatch):
    from twosome_jax import instructions

    texts = instructions.subgoal_sentences(SUBGOALS, 3)
    assert len(texts) == math.comb(31, 3) == 4495
    assert texts[0] == "eat plant, attack zombie, attack skeleton." and texts[-1].endswith("work and sleep, gardening, wilderness survival.")
    with pytest.raises(ValueError, match="subgoals_per_instruction=32 is invalid; accepted: 1..31"):
        instructions.subgoal_sentences(SUBGOALS, 32)

    class Encoder:  # stands in for the sentence encoder: a fixed vector per text
        calls = 0

        @classmethod
        def load(cls):
            return cls()

        def encode(self, texts):
            Encoder.calls += 1
            return np.array([[len(t), t.count(","), 1.0] for t in texts], np.float32)

    import twosome_jax.sentence_encoder as sentence_encoder

    monkeypatch.setenv("TWOSOME_CACHE", str(tmp_path))
    monkeypatch.setattr(sentence_encoder, "SentenceEncoder", Encoder)
    first = instructions.embedding_table(texts[:10])
    again = instructions.embedding_table(texts[:10])
    np.testing.assert_array_equal(first, again)
    assert Encoder.calls == 1 and first[0].tolist() == [len(texts[0]), 2, 1]
    assert len(list((tmp_path / "instruction-tables").glob("*.npy"))) == 1


# -- the config -------------------------------------------------------------------------------
def test_configs_hold_the_releases_ppo(tmp_path):
    a, b = load_guided_config("configs/crafter_ppo.yaml"), load_guided_config("configs/crafter_random_subgoals.yaml")
    assert (a.instruction, b.instruction, b.instruction_interval, b.subgoals_per_instruction) == (
        "none", "random_subgoals", 100, 3)
    assert {k for k, v in a.to_dict().items() if b.to_dict()[k] != v} == {"instruction"}
    assert (a.batch_size, a.batch_size // a.num_minibatches, a.update_epochs) == (4096, 128, 4)
    assert (a.gamma, a.gae_lambda, a.clip_coef, a.clip_vloss, a.ent_coef, a.max_grad_norm, a.learning_rate) == (
        0.95, 0.65, 0.2, False, 0.0, 0.5, 1e-4)
    assert is_guided_config("configs/crafter_ppo.yaml") and not is_guided_config("configs/tomato_salad.yaml")
    from twosome_jax.guided_config import save_guided_config

    save_guided_config(b, tmp_path / "c.yaml")
    assert load_guided_config(tmp_path / "c.yaml") == b


def test_train_command_lines_are_recognised(tmp_path):
    from twosome_jax.guided_train import handles

    assert handles(["--config", "configs/crafter_ppo.yaml", "--seed", "2"])
    assert handles(["--config=configs/crafter_random_subgoals.yaml"])
    assert not handles(["--config", "configs/tomato_salad.yaml"]) and not handles(["--task", "crafter"])
    (tmp_path / "config.yaml").write_text("trainer: guided_ppo\n")
    assert handles(["--resume", str(tmp_path)])


def test_the_train_command_hands_guided_configs_over(capsys):
    """``python -m twosome_jax.train --config configs/crafter_ppo.yaml`` runs this trainer: its
    own config checks answer (TWOSOME's config has no key ``instruction``)."""
    from twosome_jax import train

    assert train.main(["--config", "configs/crafter_ppo.yaml", "--set", "instruction=gpt4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: instruction='gpt4' is invalid; accepted: none, random_subgoals (from the command line)", err


@pytest.mark.parametrize("changes, message", [
    ({"task": "tomato_salad"}, "task 'tomato_salad' does not accept agent 'guided-ppo'; agents that accept it: "
                               "those of python -m twosome_jax.train; tasks that accept 'guided-ppo': crafter, crafter_pixels"),
    ({"instruction": "gpt4"}, "instruction='gpt4' is invalid; accepted: none, random_subgoals"),
    ({"num_minibatches": 3}, "num_minibatches=3 does not divide the batch num_envs*num_steps=16*256=4096; accepted: a divisor of 4096"),
    ({"trainer": "twosome"}, "trainer='twosome' is invalid; accepted: guided_ppo"),
    ({"total_timesteps": 100}, "total_timesteps=100 is less than one iteration's batch"),
    ({"gamma": 1.5}, "gamma=1.5 is invalid; accepted: a number in (0, 1]"),
    ({"policy_encoder": "random"}, "policy_encoder='random' is invalid; accepted: pretrained, random_linears"),
])
def test_bad_configs_are_rejected_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        GuidedConfig(**changes)


# -- a short run ------------------------------------------------------------------------------
K, N, T, ITERATIONS = 2, 4, 64, 40  # per seed: 4 envs x 64 steps = 256 env steps per iteration
CFG = GuidedConfig(num_seeds=K, num_envs=N, num_steps=T, num_minibatches=4, update_epochs=4,
                   total_timesteps=N * T * ITERATIONS, hidden=(64,), learning_rate=1e-3,
                   instruction="random_subgoals", instruction_interval=16, checkpoint_every=2, seed=3)
TABLE = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)  # 20 "instructions", 8-d


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from twosome_jax.guided_train import train

    run_dir = tmp_path_factory.mktemp("guided") / "run"
    summary = train(CFG, run_dir, resume=False, progress=False, table=TABLE)
    return run_dir, summary


def _metrics(path: Path) -> list[dict]:
    volatile = ("wall_time", "steps_per_second")  # timing: differs between runs
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(volatile)} for line in open(path)]


def test_run_directory_and_episode_records(run):
    run_dir, summary = run
    for name in ("config.yaml", "metrics.jsonl", "episodes.jsonl", "learning_curve.png", "checkpoints", "tb"):
        assert (run_dir / name).exists(), name
    records = score.read_episodes(run_dir / "episodes.jsonl")
    assert records and all(set(r) == {"seed", "env_step", "achievements", "return", "length"} for r in records)
    assert all(list(r["achievements"]) == list(ACHIEVEMENTS) for r in records)
    assert {r["seed"] for r in records} == {0, 1}
    steps = [r["env_step"] for r in records]
    assert steps == sorted(steps) and max(steps) <= CFG.total_timesteps
    metrics = _metrics(run_dir / "metrics.jsonl")
    assert len(metrics) == ITERATIONS and metrics[-1]["env_steps"] == CFG.total_timesteps
    # every line's crafter_score is the score of the episodes written so far (per seed)
    for m in (metrics[9], metrics[-1]):
        tables = score.episode_table(records, budget=m["env_steps"])
        expected = [score.crafter_score(score.success_rates(tables[k])) for k in range(K)]
        np.testing.assert_allclose(m["crafter_score_per_seed"], expected, rtol=1e-9)
        assert m["episodes_total_per_seed"] == [len(tables[k]) for k in range(K)]
    assert summary["scores"]["crafter_score"][1] == metrics[-1]["crafter_score_per_seed"]


def test_ppo_beats_a_random_policy(run):
    """The final policy of seed 0 against the uniform policy (its head zeroed), on the same
    compiled iteration, the same envs and the same number of steps: the mean episode return."""
    from twosome_jax import run as runlib
    from twosome_jax.guided_trainer import GuidedTrainer, init, iteration

    run_dir, _ = run
    import envs_jax

    env, params = envs_jax.make(CFG.task)
    trainer = GuidedTrainer.from_config(CFG, env, params, TABLE.shape[1])
    table = jnp.asarray(TABLE)
    _, final = runlib.restore_checkpoint(runlib.checkpoint_manager(run_dir, create=False),
                                         jax.eval_shape(lambda k: init(trainer, k), jax.random.PRNGKey(0)))
    trained = jax.tree.map(lambda a: jnp.stack([a[0]] * K), final.params["actor"])  # seed 0's, twice
    uniform = jax.tree.map(jnp.zeros_like, trained)

    def returns(actor, iterations=10):
        state, out = init(trainer, jax.random.PRNGKey(99)), []
        for _ in range(iterations):  # each rollout acts with ``actor``; the update is discarded
            state = state.replace(params=dict(state.params, actor=jax.tree.map(jnp.copy, actor)))
            state, _, episodes = iteration(trainer, table, state)
            episodes = jax.device_get(episodes)
            out += episodes["ret"][episodes["done"]].tolist()
        return np.array(out)

    ours, rand = returns(trained), returns(uniform)
    assert len(ours) >= 15 and len(rand) >= 15, (len(ours), len(rand))
    se = math.sqrt(ours.var() / len(ours) + rand.var() / len(rand))
    assert ours.mean() > rand.mean() + 2 * se, (ours.mean(), len(ours), rand.mean(), len(rand), se)


def test_killed_and_resumed_equals_uninterrupted(run, tmp_path):
    """Killed after iteration 3 (its records written, its checkpoint not: the latest is 2), then
    resumed: iterations 3-5 come out as in the uninterrupted run, metrics and episodes alike."""
    from twosome_jax.guided_train import train

    class Killed(Exception):
        pass

    def kill_at(k):
        def hook(i):
            if i == k:
                raise Killed
        return hook

    full_dir, _ = run
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        train(CFG, run_dir, resume=False, progress=False, table=TABLE, on_iteration=kill_at(3))
    assert len(_metrics(run_dir / "metrics.jsonl")) == 3
    with pytest.raises(Killed):
        train(CFG, run_dir, resume=True, progress=False, table=TABLE, on_iteration=kill_at(5))
    ours, full = _metrics(run_dir / "metrics.jsonl"), _metrics(full_dir / "metrics.jsonl")
    assert [m["iteration"] for m in ours] == [1, 2, 3, 4, 5]
    assert ours == full[:5]
    done_steps = 5 * N * T
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    full_lines = [l for l in (full_dir / "episodes.jsonl").read_text().splitlines() if json.loads(l)["env_step"] <= done_steps]
    assert lines == full_lines and len(lines) > 0
