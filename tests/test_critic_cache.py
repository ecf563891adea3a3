"""The critic-feature cache: complete over everything the reference reached, equal to computing."""

import gzip
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs_jax.overcooked.reachable import enumerate_reachable

# whole rollouts and evaluations scored step by step beside the tables
pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("task", ["tomato_salad", "lettuce_tomato_salad"])
def test_reachable_set_covers_every_golden_observation(task):
    reachable = {tuple(o) for o in np.asarray(enumerate_reachable(task)["obs"]).tolist()}
    with gzip.open(DATA / f"overcooked_{task}.jsonl.gz", "rt") as f:
        episodes = [json.loads(line) for line in f]
    seen = {tuple(s["obs"]) for e in episodes for s in e["steps"]} | {tuple(e["final"]["obs"]) for e in episodes}
    assert seen <= reachable, f"{len(seen - reachable)} golden observations are not enumerated"


@pytest.mark.parametrize("task", ["tomato_salad", "entertainment"])
def test_lookup_equals_computed_features(task):
    """The cache (every reachable prompt in shared rows) holds the feature the critic computes
    from each prompt alone."""
    from twosome_jax.config import TrainConfig
    from twosome_jax.run import build

    cached = build(TrainConfig(model="tiny-random", task=task))
    assert "cache_features" in cached.frozen
    obs = cached.frozen["cache_obs"]
    live = dict(cached.frozen)
    del live["cache_obs"], live["cache_features"]
    actor = cached.agent.lora_template
    got = cached.agent.critic_input(cached.frozen, actor, obs)
    want = cached.agent.critic_input(live, actor, obs)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    # an observation outside the cache reads NaN, so a gap cannot pass unnoticed
    odd = obs[:1].at[0, 0].set(99)
    assert np.all(np.isnan(np.asarray(cached.agent.critic_input(cached.frozen, actor, odd))))


def test_rollout_policy_table_equals_step_by_step_scoring():
    """Scoring all reachable observations once per rollout gives the logits of scoring each step."""
    from twosome_jax.config import TrainConfig
    from twosome_jax.run import build
    from twosome_jax.trainer import Trainer

    cfg = TrainConfig(model="tiny-random", task="tomato_salad", num_steps=8, policy_num_minibatches=8)
    setup = build(cfg)
    trainer = Trainer.from_config(cfg, setup.agent, setup.env, setup.env_params)
    assert trainer.policy_table_size(setup.frozen) == 22  # fewer than the 4 x 8 observations visited
    state = trainer.init(jax.random.PRNGKey(0))
    _, traj, _ = jax.jit(trainer.rollout)(setup.frozen, state)
    obs = traj.obs.reshape(-1, traj.obs.shape[-1])
    direct = setup.agent.policy_logits(setup.frozen, state.actor, obs)
    logp = jnp.take_along_axis(jax.nn.log_softmax(direct), traj.action.reshape(-1, 1), axis=-1)[:, 0]
    np.testing.assert_allclose(np.asarray(traj.logp).reshape(-1), np.asarray(logp), atol=1e-5)


def test_rollout_memo_scores_each_new_observation_once_with_the_logits_of_scoring_each_step():
    """Where the reachable set is larger than a rollout's visits (lettuce-tomato salad: 806),
    the rollout scores only observations it has not met; its log-probabilities equal scoring
    every visited observation directly, and it samples the same actions as scoring each step."""
    import dataclasses

    from twosome_jax.config import TrainConfig
    from twosome_jax.run import build
    from twosome_jax.trainer import Trainer

    @dataclasses.dataclass(frozen=True, eq=False)
    class StepByStep(Trainer):
        def policy_memo_sizes(self, frozen):
            return ()

    cfg = TrainConfig(model="tiny-random", task="lettuce_tomato_salad", num_steps=8, policy_num_minibatches=8)
    setup = build(cfg)
    trainer = Trainer.from_config(cfg, setup.agent, setup.env, setup.env_params)
    assert trainer.policy_table_size(setup.frozen) == 0 and trainer.policy_memo_sizes(setup.frozen) == (1, 2, 3, 4)
    state = trainer.init(jax.random.PRNGKey(0))
    state = state.replace(actor=jax.tree.map(  # a policy that is not uniform
        lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(1), x.shape, x.dtype), state.actor))
    _, traj, _ = jax.jit(trainer.rollout)(setup.frozen, state)
    obs = traj.obs.reshape(-1, traj.obs.shape[-1])
    assert len({tuple(o) for o in np.asarray(obs).tolist()}) < obs.shape[0]  # the memo had repeats to serve
    direct = setup.agent.policy_logits(setup.frozen, state.actor, obs)
    logp = jnp.take_along_axis(jax.nn.log_softmax(direct), traj.action.reshape(-1, 1), axis=-1)[:, 0]
    np.testing.assert_allclose(np.asarray(traj.logp).reshape(-1), np.asarray(logp), atol=1e-5)
    plain = StepByStep(**{f.name: getattr(trainer, f.name) for f in dataclasses.fields(trainer)})
    _, ref, _ = jax.jit(plain.rollout)(setup.frozen, state)
    np.testing.assert_array_equal(np.asarray(traj.action), np.asarray(ref.action))
    np.testing.assert_array_equal(np.asarray(traj.obs), np.asarray(ref.obs))


def test_evaluation_table_gives_the_episodes_of_step_by_step_scoring():
    """Evaluating from the table of reachable logits plays the same episodes as scoring each step,
    and the table is only built where it is the cheaper way (few reachable observations)."""
    from twosome_jax.config import TrainConfig
    from twosome_jax.run import build
    from twosome_jax.evaluation import evaluation_table, run_episodes

    setup = build(TrainConfig(model="tiny-random", task="tomato_salad"))
    actor = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(1), x.shape, x.dtype),
                         setup.agent.lora_template)  # a policy that is not uniform
    # jitted, as evaluate_policy calls it (run op by op it compiles every op of the model)
    table_for = jax.jit(lambda a, episodes: evaluation_table(setup.agent, setup.frozen, a, episodes),
                        static_argnums=1)
    assert table_for(actor, 1) is not None  # 22 <= 32
    table = table_for(actor, 8)
    for greedy, n in ((True, 1), (False, 8)):
        run = jax.jit(lambda t, greedy=greedy, n=n: run_episodes(setup.agent, setup.env, setup.env_params, setup.frozen,
                                                             actor, jax.random.PRNGKey(3), episodes=n,
                                                             greedy=greedy, table=t))
        with_table, step_by_step = run(table), run(None)
        for key in ("success", "returns", "lengths", "finished"):
            np.testing.assert_array_equal(np.asarray(with_table[key]), np.asarray(step_by_step[key]), err_msg=key)
        assert np.asarray(with_table["finished"]).all() and np.asarray(with_table["lengths"]).min() > 0
    lettuce = build(TrainConfig(model="tiny-random", task="lettuce_tomato_salad"), critic=False)
    actor = lettuce.agent.lora_template
    shape = lambda episodes: jax.eval_shape(lambda a: evaluation_table(lettuce.agent, lettuce.frozen, a, episodes), actor)
    assert shape(1) is None  # 806 > 32: step by step
    assert shape(100).shape[0] == 806
