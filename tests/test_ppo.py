"""PPO pieces against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np

from twosome_jax.ppo import (
    PPOHyper,
    Transition,
    categorical_entropy,
    distinct_rows,
    gae,
    make_optimizer,
    policy_loss,
    ppo_update,
    ppo_update_joint,
    set_learning_rate,
    value_loss,
)


def test_gae_smdp_hand_computed():
    # gamma 0.9, lambda 0.8; macro steps 1, 2, 3; the obs at t=2 starts a new episode.
    #   t=2: disc 0.9^3=0.729, bootstrap from next_value 0.7: delta = 2 + 0.729*0.7 - 0.2 = 2.3103
    #   t=1: next obs is a reset (done) -> delta = 0.5 - 1.0 = -0.5, A = -0.5
    #   t=0: disc 0.9: delta = 1 + 0.9*1.0 - 0.5 = 1.4; A = 1.4 + 0.9*0.8*(-0.5) = 1.04
    adv, ret = gae(rewards=jnp.array([1.0, 0.5, 2.0]), values=jnp.array([0.5, 1.0, 0.2]),
                   dones=jnp.array([False, False, True]), macro_steps=jnp.array([1, 2, 3]),
                   next_value=jnp.float32(0.7), next_done=jnp.bool_(False), gamma=0.9, lam=0.8)
    np.testing.assert_allclose(adv, [1.04, -0.5, 2.3103], rtol=1e-6)
    np.testing.assert_allclose(ret, [1.54, 0.5, 2.5103], rtol=1e-6)


def test_gae_terminal_bootstrap_and_batch_axis():
    adv, _ = gae(rewards=jnp.ones((2, 3)), values=jnp.zeros((2, 3)), dones=jnp.zeros((2, 3), bool),
                 macro_steps=jnp.ones((2, 3), jnp.int32), next_value=jnp.full((3,), 10.0),
                 next_done=jnp.array([True, False, False]), gamma=0.5, lam=1.0)
    # env 0: next obs is terminal -> no bootstrap: A1 = 1, A0 = 1 + 0.5*1 = 1.5
    # env 1: A1 = 1 + 0.5*10 = 6, A0 = 1 + 0.5*6 = 4
    np.testing.assert_allclose(adv[:, 0], [1.5, 1.0])
    np.testing.assert_allclose(adv[:, 1], [4.0, 6.0])


def test_value_loss_clipping_hand_computed():
    v, old, ret = jnp.array([1.0, 0.0]), jnp.array([0.5, 0.0]), jnp.array([2.0, 1.0])
    # sample 0: unclipped (1-2)^2 = 1; clipped value 0.5+0.2=0.7 -> (0.7-2)^2 = 1.69 -> max 1.69
    # sample 1: both (0-1)^2 = 1
    np.testing.assert_allclose(value_loss(v, old, ret, clip_coef=0.2, clip_vloss=True), 0.5 * (1.69 + 1) / 2)
    np.testing.assert_allclose(value_loss(v, old, ret, clip_coef=0.2, clip_vloss=False), 0.5 * (1 + 1) / 2)


def test_policy_loss_and_entropy_hand_computed():
    logits = jnp.log(jnp.array([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]]))  # third action invalid (-inf)
    np.testing.assert_allclose(categorical_entropy(logits), [np.log(2), -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))],
                               rtol=1e-6)
    old = jnp.log(jnp.array([0.5, 0.5]))  # ratios 1.0 and 1.5 for actions 0 and 1
    loss, info = policy_loss(logits, jnp.array([0, 1]), old, jnp.array([1.0, 1.0]),
                             clip_coef=0.2, ent_coef=0.0, norm_adv=False)
    # pg = mean(max(-1*1, -1*1), max(-1.5, -1.2)) = mean(-1, -1.2) = -1.1
    np.testing.assert_allclose(loss, -1.1, rtol=1e-6)
    np.testing.assert_allclose(info["clipfrac"], 0.5)


def test_entropy_gradient_is_finite_with_actions_not_offered():
    """A masked (-inf) action has probability 0: the entropy's gradient is that of the offered
    actions alone (hand-computed: dH/dz_i = -p_i (log p_i + H)) and exactly 0 for the masked one."""
    z = jnp.array([0.3, -0.2, 0.0])
    masked = jnp.array([0.3, -0.2, -jnp.inf])
    g = jax.grad(lambda x: categorical_entropy(x))(masked)
    p = jax.nn.softmax(z[:2])
    h = -jnp.sum(p * jnp.log(p))
    np.testing.assert_allclose(g[:2], -p * (jnp.log(p) + h), rtol=1e-5)
    assert float(g[2]) == 0.0


def test_learning_rate_is_settable_inside_jit():
    tx = make_optimizer("adam", 1e-3, 0.5)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)

    @jax.jit
    def step(state):
        state = set_learning_rate(state, 0.0)
        updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        return updates
    assert np.all(np.asarray(step(state)["w"]) == 0)


def _toy_update(target_kl, lr):
    """A linear softmax policy on random data; returns the update's metrics."""
    B, A, F = 32, 4, 3
    key = jax.random.key(0)
    obs = jax.random.normal(key, (B, F))
    batch = Transition(obs=obs, action=jax.random.randint(key, (B,), 0, A), logp=jnp.full((B,), -np.log(A)),
                       value=jnp.zeros(B), reward=jnp.zeros(B), done=jnp.zeros(B, bool),
                       macro_steps=jnp.ones(B, jnp.int32), critic_input=obs)
    actor, critic = {"w": jnp.zeros((F, A))}, {"w": jnp.zeros((F,))}
    actor_tx, critic_tx = make_optimizer("adamw", lr, 0.5), make_optimizer("adam", 1e-3, 0.5)
    hyper = PPOHyper(target_kl=target_kl, policy_num_minibatches=8, value_num_minibatches=2,
                     gradient_accumulation_steps=2)
    out = ppo_update(hyper=hyper, policy_logits_fn=lambda p, o, count, level: o @ p["w"], value_fn=lambda p, x: x @ p["w"],
                     actor_params=actor, critic_params=critic, actor_opt=actor_tx.init(actor),
                     critic_opt=critic_tx.init(critic), actor_tx=actor_tx, critic_tx=critic_tx, batch=batch,
                     advantages=jax.random.normal(jax.random.key(1), (B,)), returns=jnp.ones(B),
                     rng=jax.random.key(2))
    return out


def test_target_kl_early_stop():
    *_, free = _toy_update(target_kl=None, lr=1.0)
    assert int(free["policy_steps"]) == 4 and not bool(free["early_stopped"])
    # a huge step makes the second group's KL exceed a tiny target: exactly one step is taken
    *_, stopped = _toy_update(target_kl=1e-6, lr=1.0)
    assert int(stopped["policy_steps"]) == 1 and bool(stopped["early_stopped"])


def test_distinct_rows():
    x = jnp.asarray(np.random.default_rng(0).integers(0, 3, size=(40, 2)), jnp.int32)
    rows, inverse, n = distinct_rows(x)
    expected = []
    for r in np.asarray(x).tolist():
        if r not in expected:
            expected.append(r)
    assert int(n) == len(expected) == len(np.unique(np.asarray(x), axis=0))
    assert np.asarray(x[rows[: int(n)]]).tolist() == expected  # first-appearance order
    np.testing.assert_array_equal(np.asarray(x[rows[inverse]]), np.asarray(x))


def test_update_scores_distinct_observations_exactly():
    """The policy phase with logits computed once per distinct observation (the rows past the
    distinct ones' count left out, or not) equals a plain per-minibatch loop: gradients summed
    over a group's minibatches, one step."""
    B, A, F, accum, n_mb = 32, 4, 3, 2, 8
    rng = np.random.default_rng(3)
    obs = jnp.asarray(rng.normal(size=(6, F))[rng.integers(0, 6, size=B)], jnp.float32)  # 6 distinct rows
    batch = Transition(obs=obs, action=jnp.asarray(rng.integers(0, A, size=B)), logp=jnp.full((B,), -np.log(A)),
                       value=jnp.zeros(B), reward=jnp.zeros(B), done=jnp.zeros(B, bool),
                       macro_steps=jnp.ones(B, jnp.int32), critic_input=obs)
    adv = jnp.asarray(rng.normal(size=B), jnp.float32)
    actor, critic = {"w": jnp.asarray(rng.normal(size=(F, A)) * 0.1, jnp.float32)}, {"w": jnp.zeros((F,))}
    actor_tx, critic_tx = make_optimizer("adamw", 0.1, 0.5), make_optimizer("adam", 1e-3, 0.5)
    hyper = PPOHyper(target_kl=None, policy_num_minibatches=n_mb, value_num_minibatches=2,
                     gradient_accumulation_steps=accum)
    key = jax.random.key(2)

    def only_counted(p, o, count, level):  # the rows past ``count`` are padding: scored as zeros
        return jnp.where(jnp.arange(o.shape[0])[:, None] < count, o @ p["w"], 0.0)

    def at_level(p, o, count, level):  # level k scores the first 2 + 2k rows only
        return jnp.where(jnp.arange(o.shape[0])[:, None] < 2 + 2 * level, o @ p["w"], 0.0)

    def level_fn(o, count):  # the smallest level that holds ``count`` rows (6 distinct: level 2)
        return 4, (count - 1) // 2

    def run(logits_fn, level_fn=None):
        return ppo_update(hyper=hyper, policy_logits_fn=logits_fn, value_fn=lambda p, x: x @ p["w"],
                          actor_params=actor, critic_params=critic, actor_opt=actor_tx.init(actor),
                          critic_opt=critic_tx.init(critic), actor_tx=actor_tx, critic_tx=critic_tx, batch=batch,
                          advantages=adv, returns=jnp.ones(B), rng=key, policy_level_fn=level_fn)[0]["w"]

    # reference: the documented order (one epoch's permutation, groups of ``accum`` minibatches)
    perm = np.asarray(jax.random.permutation(jax.random.split(key, 1)[0], B)).reshape(n_mb // accum, accum, -1)
    params, opt = actor, actor_tx.init(actor)
    for group in perm:
        grads = jax.tree.map(jnp.zeros_like, params)
        for idx in group:
            g = jax.grad(lambda p: policy_loss(obs[idx] @ p["w"], batch.action[idx], batch.logp[idx], adv[idx],
                                               clip_coef=0.2, ent_coef=0.01, norm_adv=True)[0] / accum)(params)
            grads = jax.tree.map(jnp.add, grads, g)
        updates, opt = actor_tx.update(grads, opt, params)
        params = jax.tree.map(jnp.add, params, updates)
    for logits_fn, fn in ((lambda p, o, count, level: o @ p["w"], None), (only_counted, None), (at_level, level_fn)):
        np.testing.assert_allclose(np.asarray(run(logits_fn, fn)), np.asarray(params["w"]), rtol=1e-5, atol=1e-6)
    # a level too small for the group's distinct rows is not the update
    assert not np.allclose(np.asarray(run(at_level, lambda o, count: (4, count * 0))), np.asarray(params["w"]))


def _torch_cleanrl_update(actor, critic, batch, adv, returns, perms, *, lr, hyper, max_grad_norm):
    """CleanRL's ppo.py update loop (the reference's PPO baseline), written out in torch."""
    import torch

    t = lambda x: torch.tensor(np.asarray(x, np.float64))
    params = [t(p).requires_grad_() for p in (actor["w"], actor["b"], critic["w"], critic["b"])]
    opt = torch.optim.Adam(params, lr=lr, eps=1e-5)
    obs, act, old_logp, old_v = t(batch.obs), torch.tensor(np.asarray(batch.action)), t(batch.logp), t(batch.value)
    adv, returns = t(adv), t(returns)
    size = obs.shape[0] // hyper.policy_num_minibatches
    for perm in perms:
        for start in range(0, obs.shape[0], size):
            i = torch.tensor(np.asarray(perm[start:start + size]))
            logits = torch.tanh(obs[i]) @ params[0] + params[1]
            dist = torch.distributions.Categorical(logits=logits)
            ratio = (dist.log_prob(act[i]) - old_logp[i]).exp()
            mb_adv = (adv[i] - adv[i].mean()) / (adv[i].std() + 1e-8)
            pg = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - hyper.clip_coef, 1 + hyper.clip_coef)).mean()
            v = (torch.tanh(obs[i]) @ params[2] + params[3])
            clipped = old_v[i] + (v - old_v[i]).clamp(-hyper.clip_coef, hyper.clip_coef)
            v_loss = 0.5 * torch.max((v - returns[i]) ** 2, (clipped - returns[i]) ** 2).mean()
            loss = pg - hyper.ent_coef * dist.entropy().mean() + hyper.vf_coef * v_loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
    return [p.detach().numpy() for p in params]


def test_joint_update_equals_cleanrl_in_torch():
    """``ppo_update_joint`` (the reference PPO baseline's update) against CleanRL's loop in torch:
    the same minibatch order gives the same parameters after two epochs of four minibatches."""
    B, A, F = 32, 5, 6
    ks = jax.random.split(jax.random.key(7), 8)
    obs = jax.random.normal(ks[0], (B, F))
    actor = {"w": 0.3 * jax.random.normal(ks[1], (F, A)), "b": 0.1 * jax.random.normal(ks[2], (A,))}
    critic = {"w": 0.3 * jax.random.normal(ks[3], (F,)), "b": jnp.float32(0.2)}
    logits_fn = lambda p, o: jnp.tanh(o) @ p["w"] + p["b"]
    actions = jax.random.randint(ks[4], (B,), 0, A)
    logp = jax.nn.log_softmax(logits_fn(actor, obs) + 0.2 * jax.random.normal(ks[5], (B, A)))
    batch = Transition(obs=obs, action=actions, logp=jnp.take_along_axis(logp, actions[:, None], 1)[:, 0],
                       value=0.5 * jax.random.normal(ks[6], (B,)), reward=jnp.zeros(B), done=jnp.zeros(B, bool),
                       macro_steps=jnp.ones(B, jnp.int32), critic_input=obs)
    adv, returns = jax.random.normal(ks[7], (B,)), jnp.linspace(-1.0, 1.0, B)
    hyper = PPOHyper(target_kl=None, update_epochs=2, policy_num_minibatches=4, ent_coef=0.01, vf_coef=0.5)
    lr, clip = 3e-2, 0.5
    tx = make_optimizer("adam", lr, clip)
    params = {"actor": actor, "critic": critic}
    rng = jax.random.key(11)
    new, _, metrics = jax.jit(lambda p, o: ppo_update_joint(
        hyper=hyper, policy_logits_fn=logits_fn, value_fn=logits_fn, params=p, opt_state=o, tx=tx, batch=batch,
        advantages=adv, returns=returns, rng=rng))(params, tx.init(params))
    perms = [np.asarray(jax.random.permutation(k, B)) for k in jax.random.split(rng, hyper.update_epochs)]
    ref = _torch_cleanrl_update(actor, critic, batch, adv, returns, perms, lr=lr, hyper=hyper, max_grad_norm=clip)
    ours = [new["actor"]["w"], new["actor"]["b"], new["critic"]["w"], new["critic"]["b"]]
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a), b, atol=2e-5)
    assert not np.allclose(np.asarray(new["actor"]["w"]), np.asarray(actor["w"]), atol=1e-3)  # it moved
    assert int(metrics["policy_steps"]) == 8
