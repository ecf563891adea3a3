"""The untrained model's policy on a task: greedy and sampled success from reset, no run needed.

    .venv/bin/python scripts/zero_shot.py --task food_preparation --set normalization=token

Builds the agent of ``--config`` files and ``--set`` overrides exactly as training would (the
adapters start at B = 0, so the policy is the base model's scores) and prints one JSON object:
``twosome_jax.evaluation.evaluate_policy`` over ``--episodes`` sampled episodes. This is the
SayCan policy of the paper's comparison, and the prior TWOSOME starts from.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    from twosome_jax.config import ConfigError, add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--eval-seed", type=int, default=0, help="PRNG seed of the sampled episodes")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    if cfg.agent == "ppo-mlp":
        parser.error("the zero-shot policy needs an LLM agent (twosome or saycan)")

    import jax

    from twosome_jax import run as runlib
    from twosome_jax.evaluation import evaluate_policy

    try:
        setup = runlib.build(cfg, critic=False)  # an evaluation reads no value
    except (ConfigError, runlib.RunError) as e:
        parser.error(str(e))
    actor = jax.tree.map(jax.numpy.zeros_like, setup.agent.lora_template)
    fn = jax.jit(lambda k: evaluate_policy(setup.agent, setup.env, setup.env_params, setup.frozen, actor, k,
                                           episodes=args.episodes))
    out = {k: float(v) for k, v in jax.device_get(fn(jax.random.PRNGKey(args.eval_seed))).items()}
    print(json.dumps({"task": cfg.task, "model": cfg.model, "normalization": cfg.normalization,
                      "episodes": args.episodes, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
