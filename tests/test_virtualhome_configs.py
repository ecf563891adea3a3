"""configs/{food_preparation,entertainment}.yaml hold the reference's settings (TWOSOME @ 9694566:
scripts/heat_pancake_ppo_llm.sh, scripts/watch_tv_ppo_llm.sh and the argparse defaults of
twosome/virtualhome/ppo_llm_v1.py / _v2.py), each value with its source."""

from __future__ import annotations

import pathlib

import pytest

from twosome_jax.config import load_config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("task,total,seed", [("food_preparation", 50_000, 10), ("entertainment", 200_000, 100)])
def test_reference_config(task, total, seed):
    path = CONFIGS / f"{task}.yaml"
    c = load_config(path)
    assert (c.task, c.total_timesteps, c.seed, c.num_envs, c.num_steps) == (task, total, seed, 4, 32)
    assert (c.gamma, c.gae_lambda, c.policy_learning_rate, c.value_learning_rate) == (0.95, 0.95, 1e-6, 5e-5)
    assert (c.policy_num_minibatches, c.value_num_minibatches, c.update_epochs) == (32, 4, 1)
    assert (c.gradient_accumulation_steps, c.target_kl, c.critic_warmup_updates) == (8, 0.02, 0)
    assert (c.clip_coef, c.clip_vloss, c.ent_coef, c.vf_coef, c.max_grad_norm, c.norm_adv) == (0.2, True, 0.01, 0.5, 0.5, True)
    assert (c.normalization, c.lora_rank, c.lora_alpha, c.lora_targets) == ("word", 8, 16.0, ("q_proj", "v_proj"))
    for line in path.read_text().splitlines():  # every value line says where it comes from
        if line and not line.startswith("#"):
            assert "#" in line, f"{path.name}: uncommented value line {line!r}"
