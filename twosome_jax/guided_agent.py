"""An actor-critic over an observation, conditioned on an instruction embedding.

RLAdapter (AdaRefiner's patched stable-baselines3 ``common/torch_layers.py`` and
``common/policies.py``) conditions its PPO policy on the sentence embedding of its current
instruction: a trainable linear layer with no activation maps the 384-d embedding to the width of
the visual feature and the two are *added*; actor and critic read the sum. Here:

* the observation goes through an MLP (a vector observation, e.g. Crafter's symbolic one) or a
  small CNN then a dense layer (pixels, rank 3), and the instruction's ``Dense`` (no bias, no
  activation) is added to that first hidden layer, before its activation; with
  ``instruction_dim`` 0 the branch is absent (plain PPO);
* the actor and the critic are separate networks of the same shape, each with its own
  instruction layer (PureJaxRL's Craftax PPO keeps them apart; the release shares one feature
  extractor), so PPO's update is ``ppo.ppo_update_joint`` over ``{"actor", "critic"}``;
* initialisation as stable-baselines3: orthogonal, gain sqrt(2) for hidden layers, 0.01 for the
  policy head, 1 for the value head; zero biases.

Both networks take one flat float input per row, the observation flattened then the
instruction embedding (``input_dim = prod(obs_shape) + instruction_dim``), so a rollout stores
one array that the update reads back.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


class _Network(nn.Module):
    obs_shape: tuple[int, ...]
    instruction_dim: int
    hidden: tuple[int, ...]
    out: int
    out_scale: float
    activation: str

    @nn.compact
    def __call__(self, x):
        act = _ACTIVATIONS[self.activation]
        hidden_init = nn.initializers.orthogonal(math.sqrt(2))
        obs_size = int(np.prod(self.obs_shape))
        obs = x[..., :obs_size]
        if len(self.obs_shape) == 3:  # pixels: the Nature-DQN CNN, then the first dense layer
            h = obs.reshape(obs.shape[:-1] + tuple(self.obs_shape))
            for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
                h = act(nn.Conv(features, (kernel, kernel), (stride, stride), padding="VALID",
                                kernel_init=hidden_init)(h))
            obs = h.reshape(h.shape[:-3] + (-1,))
        h = nn.Dense(self.hidden[0], kernel_init=hidden_init, name="first")(obs)
        if self.instruction_dim:
            h = h + nn.Dense(self.hidden[0], use_bias=False, kernel_init=hidden_init,
                             name="instruction")(x[..., obs_size:obs_size + self.instruction_dim])
        h = act(h)
        for width in self.hidden[1:]:
            h = act(nn.Dense(width, kernel_init=hidden_init)(h))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.out_scale), name="head")(h)


@dataclasses.dataclass(frozen=True)
class GuidedAgent:
    """Actor and critic over ``obs_shape`` observations plus an ``instruction_dim`` embedding.

    ``init(key) -> {"actor": ..., "critic": ...}``; ``logits(actor, x)`` [B, num_actions] and
    ``value(critic, x)`` [B] on inputs ``x`` [B, input_dim] (:meth:`inputs` builds them)."""

    obs_shape: tuple[int, ...]
    num_actions: int
    instruction_dim: int = 0
    hidden: tuple[int, ...] = (512, 512)
    activation: str = "relu"

    def __post_init__(self):
        if len(self.obs_shape) not in (1, 3):
            raise ValueError(f"obs_shape={self.obs_shape!r} is not supported; accepted: a vector (D,) or "
                             "pixels (H, W, C)")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is invalid; accepted: {', '.join(_ACTIVATIONS)}")

    def _net(self, out: int, scale: float) -> _Network:
        return _Network(tuple(self.obs_shape), self.instruction_dim, tuple(self.hidden), out, scale, self.activation)

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.obs_shape)) + self.instruction_dim

    def inputs(self, obs, instruction=None):
        """``x`` [..., input_dim]: the flattened observations [..., *obs_shape] and, with an
        instruction branch, their instruction embeddings [..., instruction_dim]."""
        flat = obs.reshape(obs.shape[:obs.ndim - len(self.obs_shape)] + (-1,)).astype(jnp.float32)
        if not self.instruction_dim:
            return flat
        return jnp.concatenate([flat, instruction.astype(jnp.float32)], axis=-1)

    def init(self, key) -> dict:
        k_actor, k_critic = jax.random.split(key)
        x = jnp.zeros((1, self.input_dim), jnp.float32)
        return {"actor": self._net(self.num_actions, 0.01).init(k_actor, x)["params"],
                "critic": self._net(1, 1.0).init(k_critic, x)["params"]}

    def logits(self, actor, x):
        return self._net(self.num_actions, 0.01).apply({"params": actor}, x)

    def value(self, critic, x):
        return self._net(1, 1.0).apply({"params": critic}, x)[..., 0]
