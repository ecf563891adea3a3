"""The named choices of the package, in one JAX-free place.

The training config validates its string settings against these, and the modules that act on
them (scoring, the model's LoRA) check against the same tuples, so a command can reject a bad
value before importing JAX and no list is kept equal to another by a test.
"""

AGENTS = ("twosome", "ppo-mlp", "saycan")
NORMALIZATIONS = ("sum", "token", "word")  # action score: summed log-prob, per token, per word
SCORINGS = ("packed", "naive")  # scoring implementations (twosome_jax.scoring)
DTYPES = ("auto", "float32", "bfloat16")
# PPO updates (twosome_jax.ppo): TWOSOME's value-then-policy phases, or CleanRL's joint minibatch steps
PPO_UPDATES = ("phased", "joint")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
