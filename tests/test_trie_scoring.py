"""Trie scoring (shared rows, shared prompt prefixes) equals one packed row per observation.

The reference is ``scoring``'s ``packed`` layout, itself checked against plain causal runs of
each joined text (tests/test_scoring.py): here every count of valid rows, repeated and
prefix-sharing prompts, rows that overflow into new rows and chunks, and the gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from twosome_jax import scoring
from twosome_jax.model import LoRAConfig, split_model
from twosome_jax.model.loading import load_model
from twosome_jax.trie_scoring import trie_layout, trie_level, trie_levels, trie_token_logprobs
from twosome_jax.scoring import max_action_tokens


@pytest.fixture(scope="module")
def model():
    _, model, tok = load_model("tiny-random", dtype="float32",
                               lora=LoRAConfig(rank=4, alpha=8.0, targets=("q_proj", "v_proj", "down_proj")))
    graphdef, base, lora = split_model(model)
    lora = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(7), x.shape, x.dtype), lora)
    return graphdef, base, lora, tok


@pytest.fixture(scope="module")
def lettuce(model):
    tok = model[3]
    env, _ = envs_jax.make("lettuce_tomato_salad")
    table = env.text_table(tok)
    reach = np.asarray(env.reachable_observations())
    return table, reach, table.action_tokens_max


def _rows(reach, picks):
    return jnp.asarray(reach[np.asarray(picks)])


def test_layout_shares_prefixes_and_fits_the_capacity(lettuce):
    table, reach, S = lettuce
    obs = _rows(reach, np.arange(0, 320, 10))  # 32 observations
    tokens = table.tokenize(obs)
    P = tokens.prompt_ids.shape[1]
    for count in (0, 5, 32):
        lay = jax.jit(trie_layout, static_argnums=(2, 3))(tokens, count, S, 2 * (P + S))
        capacity = lay["ids"].shape[0]
        real_prompt = int(np.asarray(tokens.prompt_len)[:count].sum())
        stored = int((np.asarray(lay["seg"]) == -1).sum())
        assert stored <= real_prompt  # each prompt token stored once at most
        if count > 1:
            assert stored < real_prompt  # these prompts share prefixes
        assert int(lay["rows"]) * 2 * (P + S) <= capacity
        actions = int((np.asarray(lay["seg"]) >= 0).sum())
        assert actions == int(np.asarray(lay["real"]).sum())


@pytest.mark.parametrize("count,width,level", [
    (1, None, "fit"), (17, None, "fit"), (32, "tight", "fit"), (17, None, "full")])
def test_logits_and_gradients_equal_packed(model, lettuce, count, width, level):
    graphdef, base, lora, _ = model
    table, reach, S = lettuce
    rng = np.random.default_rng(count)
    picks = rng.choice(len(reach), 32, replace=False)
    picks[1] = picks[0] if count > 2 else picks[1]  # a repeated observation (identical prompt)
    tokens = table.tokenize(_rows(reach, picks))
    P = tokens.prompt_ids.shape[1]
    w = P + S if width == "tight" else 128 * -(-2 * (P + S) // 128)
    levels = trie_levels(32, P, S, w)
    k = len(levels) - 1 if level == "full" else int(trie_level(trie_layout(tokens, count, S, w), levels))
    if level == "fit" and count < 32:
        assert k < len(levels) - 1  # a smaller size than the capacity
    valid = (jnp.arange(32) < count)[:, None]
    weights = jnp.asarray(rng.normal(size=(32, tokens.action_ids.shape[1])), jnp.float32)

    def loss(lora, trie):
        if trie:
            lp = trie_token_logprobs(graphdef, base, lora, tokens, jnp.int32(count), True, S, k, width=w,
                                     target_logprobs=functools.partial(scoring._target_logprobs, graphdef, base, lora))
        else:
            lp = scoring.action_logprobs(graphdef, base, lora, tokens, action_tokens_max=S)
        lp = jnp.where(tokens.action_mask & valid, lp, 0.0)
        return jnp.sum(lp * weights), lp

    (l_p, lp_p), g_p = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(lora, False)
    (l_t, lp_t), g_t = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(lora, True)
    np.testing.assert_allclose(np.asarray(lp_t), np.asarray(lp_p), atol=2e-4, rtol=1e-5)
    assert np.all(np.asarray(lp_t)[count:] == 0)
    leaves_p, leaves_t = jax.tree.leaves(g_p), jax.tree.leaves(g_t)
    assert all(float(jnp.abs(x).max()) > 0 for x in leaves_p)
    for a, b in zip(leaves_t, leaves_p):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-4, rtol=1e-3)


def test_policy_logits_with_count_under_jit(model, lettuce):
    graphdef, base, lora, _ = model
    table, reach, S = lettuce
    tokens = table.tokenize(_rows(reach, np.arange(8)))
    f = jax.jit(lambda lora, n: scoring.policy_logits(graphdef, base, lora, tokens, action_tokens_max=S, count=n))
    full = np.asarray(scoring.policy_logits(graphdef, base, lora, tokens, action_tokens_max=S))
    got = np.asarray(f(lora, jnp.int32(5)))
    np.testing.assert_allclose(got[:5], full[:5], atol=2e-4)
    assert max_action_tokens(jax.tree.map(np.asarray, tokens)) <= S


def test_update_gradient_at_the_chosen_level_equals_one_row_per_observation():
    """``grad_over_distinct`` as the trainer calls it (the agent's level for the group's
    distinct observations, a ``lax.switch``) gives the gradient of scoring every row alone."""
    from twosome_jax.config import TrainConfig
    from twosome_jax.ppo import grad_over_distinct, policy_loss
    from twosome_jax.run import build
    from twosome_jax.trainer import Trainer

    cfg = TrainConfig(model="tiny-random", task="lettuce_tomato_salad", num_steps=8, policy_num_minibatches=8)
    setup = build(cfg)
    trainer = Trainer.from_config(cfg, setup.agent, setup.env, setup.env_params)
    state = trainer.init(jax.random.PRNGKey(0))
    actor = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(1), x.shape, x.dtype), state.actor)
    _, traj, _ = jax.jit(trainer.rollout)(setup.frozen, state.replace(actor=actor))
    obs = traj.obs.reshape(-1, traj.obs.shape[-1])
    actions = traj.action.reshape(-1)
    adv = jnp.asarray(np.random.default_rng(0).normal(size=obs.shape[0]), jnp.float32)
    agent, frozen = setup.agent, setup.frozen

    def loss_of_logits(logits):
        return policy_loss(logits, actions, traj.logp.reshape(-1), adv, clip_coef=0.2, ent_coef=0.01, norm_adv=True)

    trie = jax.jit(lambda a: grad_over_distinct(
        loss_of_logits, lambda p, o, n, level: agent.policy_logits(frozen, p, o, count=n, level=level), a, obs,
        trainer.policy_level_fn(frozen)))
    alone = jax.jit(lambda a: grad_over_distinct(
        loss_of_logits, lambda p, o, n, level: agent.policy_logits(frozen, p, o), a, obs))
    levels, level = agent.update_level(frozen, obs, jnp.int32(len({tuple(o) for o in np.asarray(obs).tolist()})))
    assert levels > 1 and int(level) < levels - 1  # the group is scored below the capacity
    (l_t, _), g_t = trie(actor)
    (l_a, _), g_a = alone(actor)
    np.testing.assert_allclose(float(l_t), float(l_a), atol=1e-6)
    for a, b in zip(jax.tree.leaves(g_t), jax.tree.leaves(g_a)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("task", ["entertainment", "lettuce_tomato_salad"])
def test_reachable_table_in_shared_rows_equals_one_packed_row_each(task):
    """The rollout's and the evaluation's table: every reachable observation in shared rows at
    the exact size computed on the host gives the logits of scoring each in its own packed row,
    in fewer slots than those rows."""
    from twosome_jax.config import TrainConfig
    from twosome_jax.run import build
    from twosome_jax.trie_scoring import default_width

    setup = build(TrainConfig(model="tiny-random", task=task), critic=False)
    agent, frozen = setup.agent, setup.frozen
    actor = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(1), x.shape, x.dtype),
                         agent.lora_template)
    obs = frozen["cache_obs"]
    tokens = agent.text_table.tokenize(obs[:1])
    P, S = tokens.prompt_ids.shape[1], agent.action_tokens_max
    rows, _ = agent.table_level
    assert rows * default_width(P, S) < obs.shape[0] * (P + S)
    got = jax.jit(agent.table_logits)(frozen, actor)
    want = jax.jit(lambda a: agent.policy_logits(frozen, a, obs))(actor)
    finite = np.isfinite(np.asarray(want))
    np.testing.assert_array_equal(np.isfinite(np.asarray(got)), finite)
    np.testing.assert_allclose(np.asarray(got)[finite], np.asarray(want)[finite], atol=2e-4, rtol=1e-5)
