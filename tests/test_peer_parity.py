"""The PyTorch peer of ``benchmarks/peer_torch.py`` computes what ours computes.

The benchmark times our iteration against a transformers + peft implementation of the
reference's; these checks make sure the two sides compute the same thing, on the tiny random
model with random base, adapters and critic: the per-action log-probabilities, the policy and
the critic's value for real observations of the Overcooked tasks (and of VirtualHome, whose
offered actions vary), and one whole small iteration (rollout values, GAE, value phase, policy
phase with its accumulation and KL check) from the same state and permutation.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import envs_jax  # noqa: E402
from conftest import randomize_model  # noqa: E402
from twosome_jax import scoring  # noqa: E402
from twosome_jax.agents import apply_mlp  # noqa: E402
from twosome_jax.model import LoRAConfig, load_model, split_model  # noqa: E402

PEER_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_torch.py"
TOL = 1e-4


@pytest.fixture(scope="module")
def peer_module():
    spec = importlib.util.spec_from_file_location("peer_torch", PEER_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def models(peer_module, tmp_path_factory):
    """Our randomised tiny model with adapters, a random critic, and the peer holding the same."""
    _, model, tok = load_model("tiny-random", dtype="float32", lora=LoRAConfig(rank=8, alpha=16.0))
    randomize_model(model, seed=3)
    graphdef, base, lora = split_model(model)
    rng = np.random.default_rng(4)
    critic = {f"w{i}": jnp.asarray(rng.normal(0, 1.5 / np.sqrt(n), (n, m)), jnp.float32)
              for i, (n, m) in enumerate([(64, 1024), (1024, 512), (512, 1)])}
    torch_model, torch_tok = peer_module.export_to_torch(model, tok, tmp_path_factory.mktemp("tiny_hf"))
    peer = peer_module.PeerAgent(torch_model, torch_tok)
    peer.load_ours(nnx.to_pure_dict(lora), critic)
    return graphdef, base, lora, critic, tok, peer


@pytest.mark.parametrize("task", ["tomato_salad", "lettuce_tomato_salad", "food_preparation"])
def test_scores_policy_and_value_match_ours(models, task):
    graphdef, base, lora, critic, tok, peer = models
    env, _ = envs_jax.make(task)
    reach = np.asarray(env.reachable_observations())
    obs = reach[np.random.default_rng(0).choice(len(reach), 6, replace=False)]
    tokens = env.text_table(tok).tokenize(jnp.asarray(obs))

    @jax.jit
    def ours(base, lora, critic, tokens):
        lp = scoring.action_logprobs(graphdef, base, lora, tokens)
        pi = jax.nn.softmax(scoring.normalize_scores(lp, tokens, "word"))
        return lp, pi, apply_mlp(critic, scoring.critic_features(graphdef, base, lora, tokens))[:, 0]

    ours_lp, ours_pi, ours_v = map(np.asarray, ours(base, lora, critic, tokens))

    descriptions = [env.describe(o) for o in obs]
    with torch.no_grad():
        sums, _ = peer.action_logprobs(descriptions)
        pi = torch.softmax(peer.policy_logits(descriptions, env.num_actions), -1).numpy()
        values = peer.values([d.prompt for d in descriptions]).numpy()
    for n, (d, s) in enumerate(zip(descriptions, sums)):
        np.testing.assert_allclose(s.numpy(), ours_lp[n, list(d.action_ids)], atol=TOL, rtol=0)
    np.testing.assert_allclose(pi, ours_pi, atol=TOL, rtol=0)
    np.testing.assert_allclose(values, ours_v, atol=TOL, rtol=0)
    # the check has teeth: actions differ clearly in score, the policy is far from uniform
    assert np.ptp(ours_lp[np.asarray(tokens.action_mask)]) > 1.0
    assert ours_pi.max() > 2.0 / env.num_actions
    assert np.ptp(ours_v) > 0.05


def test_one_iteration_matches_ours(peer_module):
    """A whole iteration, ours against the peer on our rollout and our permutation: rollout
    log-probabilities and values, losses, KL, policy steps and the updated weights."""
    from train_setup import make_setup, variant

    cfg, setup, reach, S = make_setup(
        "tiny-random", num_envs=2, num_steps=8, policy_num_minibatches=4, value_num_minibatches=2,
        gradient_accumulation_steps=2, policy_learning_rate=3e-4, value_learning_rate=1e-3)
    # one scoring size for the update's groups: a short compile (that scoring distinct
    # observations is exact is tests/test_ppo.py's business)
    trainer, frozen = variant(cfg, setup, reach, S, "no-trie")
    state0 = jax.jit(trainer.init)(jax.random.key(0))
    # adapters with B != 0, so the policy differs from the base from the start
    actor = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(7), x.shape), state0.actor)
    state0 = state0.replace(actor=actor)
    batch, traj = peer_module.our_batch(trainer, frozen, state0)
    state1, ours = jax.jit(trainer.iteration)(frozen, state0)

    model, tokenizer = peer_module.torch_model("tiny-random", cfg.seed)
    peer = peer_module.PeerAgent(model, tokenizer)
    peer.load_ours(jax.device_get(state0.actor), jax.device_get(state0.critic))
    theirs, rollout = peer_module.peer_iteration(peer, batch, setup.env.describe, setup.env.num_actions, cfg)

    np.testing.assert_allclose(rollout["logp"], traj.logp, atol=TOL, rtol=0)
    np.testing.assert_allclose(rollout["value"], traj.value, atol=TOL, rtol=0)
    for key in ("value_loss", "pg_loss", "entropy", "approx_kl", "clipfrac", "policy_steps"):
        np.testing.assert_allclose(theirs[key], float(ours[key]), rtol=1e-3, atol=1e-6, err_msg=key)
    assert theirs["policy_steps"] == 2 and float(ours["approx_kl"]) > 0  # both groups stepped

    want = peer_module.PeerAgent(peer_module.torch_model("tiny-random", cfg.seed)[0], tokenizer)
    want.load_ours(jax.device_get(state1.actor), jax.device_get(state1.critic))
    params = lambda agent: agent.lora_parameters() + list(agent.critic.parameters())
    for got, expected in zip(params(peer), params(want), strict=True):
        np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), atol=2e-6, rtol=0)
    # the update moved the weights well beyond that tolerance
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), (state1.actor, state1.critic),
                         (state0.actor, state0.critic))
    assert min(jax.tree.leaves(moved)) > 1e-4


def test_bad_input_is_one_line(peer_module, models):
    *_, peer = models
    with pytest.raises(ValueError, match="normalization 'mean'"):
        peer_module.PeerAgent(peer.actor.get_base_model(), peer.tokenizer, normalization="mean")
    with pytest.raises(SystemExit) as exit_info:
        peer_module.main(["--tasks", "pasta", "--repeats", "1"])
    assert exit_info.value.code == 2
