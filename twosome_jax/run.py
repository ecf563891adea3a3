"""What the train and evaluate commands share: building a run and its checkpoints.

A run directory holds ``config.yaml`` (everything ``--resume`` needs), ``checkpoints/`` (an
orbax CheckpointManager directory, one numbered subdirectory per saved iteration, each written
to a temporary name and renamed when complete, so a kill never leaves a checkpoint that looks
whole), ``metrics.jsonl``, ``tb/``, and at the end ``adapter/`` (PEFT), ``critic.safetensors``
and ``learning_curve.png``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from twosome_jax.config import TrainConfig, load_config

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"  # checkpoints that failed to restore, set aside on --resume


class RunError(RuntimeError):
    """A run directory or checkpoint problem; the message is one line."""


@dataclasses.dataclass
class Setup:
    """Everything built from a config: environment, agent, frozen weights, trainer."""

    cfg: TrainConfig
    env: Any
    env_params: Any
    agent: Any
    frozen: Any  # what never trains: {"base": LLM weights, reachable observations, critic-feature cache} or {} for ppo-mlp
    model_config: Any = None
    lora_config: Any = None
    tokenizer: Any = None


def compute_dtype(cfg: TrainConfig):
    if cfg.dtype == "auto":
        return None  # the model's default policy: float32 on CPU, bfloat16 on accelerators
    return jnp.dtype(cfg.dtype)


def build(cfg: TrainConfig, *, task: str | None = None, critic: bool = True) -> Setup:
    """Build the environment and agent for ``cfg`` (``task`` overrides cfg.task for evaluation).

    Where the environment enumerates its reachable observations, ``frozen["cache_obs"]`` holds
    them (the rollout's and the evaluation's tables of policy logits are built on them). The
    critic-feature cache (``cfg.critic_feature_cache``) is computed only when ``critic``: an
    evaluation reads no value, and the cache is a forward pass over every reachable prompt (806
    for lettuce-tomato salad, 23 s of CPU for SmolLM2 in shared rows: benchmarks/README.md).
    The table's exact shared-row size (``LLMAgent.table_level``) is computed here, on the host."""
    from flax import nnx

    from twosome_jax.agents import LLMAgent, MLPAgent

    import envs_jax

    env, env_params = envs_jax.make(task or cfg.task, **cfg.env_kwargs)
    if cfg.agent == "ppo-mlp":
        agent = MLPAgent(obs_dim=env.obs_dim, num_actions=env.num_actions, hidden=tuple(cfg.mlp_hidden),
                         valid_actions=env.valid_actions)
        return Setup(cfg, env, env_params, agent, frozen={})

    from twosome_jax.model import LoRAConfig, load_model, split_model

    lora_config = LoRAConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=tuple(cfg.lora_targets))
    model_config, model, tokenizer = load_model(cfg.model, dtype=compute_dtype(cfg), lora=lora_config,
                                                seed=cfg.seed, remat=cfg.remat)
    graphdef, base, lora = split_model(model)
    table = env.text_table(tokenizer)
    agent = LLMAgent(graphdef=graphdef, lora_template=nnx.to_pure_dict(lora), text_table=table,
                     feature_dim=model_config.hidden_size, critic_hidden=tuple(cfg.critic_hidden),
                     implementation=cfg.scoring, normalization=cfg.normalization,
                     learns_policy=cfg.agent == "twosome", action_tokens_max=table.action_tokens_max)
    frozen = {"base": nnx.to_pure_dict(base)}
    reachable = env.reachable_observations()
    if reachable is not None:
        frozen["cache_obs"] = jnp.asarray(reachable, jnp.int32)
        agent = dataclasses.replace(agent, table_level=agent.reachable_size(reachable))
        if critic and cfg.critic_feature_cache:
            frozen["cache_features"] = agent.feature_cache(frozen["base"], reachable)
    return Setup(cfg, env, env_params, agent, frozen=frozen, model_config=model_config,
                 lora_config=lora_config, tokenizer=tokenizer)


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise RunError(f"run directory {str(run_dir)!r} does not exist")
    if not path.exists():
        raise RunError(f"{str(run_dir)!r} is not a run directory: it has no {CONFIG_FILE}")
    return load_config(path)


def checkpoint_manager(run_dir: str | os.PathLike, *, keep: int = 3, create: bool = True):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(run_dir).absolute() / CHECKPOINT_DIR, options=options)


def save_checkpoint(manager, step: int, state) -> None:
    import orbax.checkpoint as ocp

    from twosome_jax.distributed import to_host

    # host arrays: the checkpoint does not depend on the device layout it was written from, and
    # with several processes every one calls save while orbax lets process 0 write them
    manager.save(step, args=ocp.args.StandardSave(to_host(state)), force=True)
    manager.wait_until_finished()


def restore_checkpoint(manager, abstract_state, step: int | None = None, *, warn=None, set_aside: bool = False):
    """Restore ``step`` into the structure of ``abstract_state``; by default the newest complete
    checkpoint that restores, falling back past damaged ones (a copy cut short, a full disk)
    and reporting each through ``warn(message)``. ``set_aside`` (a run that will save those
    steps again) moves the damaged ones out of the manager's directory; readers leave them."""
    import orbax.checkpoint as ocp

    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_state)
    steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
    if not steps:
        raise RunError(f"no complete checkpoint in {manager.directory}")
    problems = []
    for s in steps:
        try:
            state = manager.restore(s, args=ocp.args.StandardRestore(target))
            _check_restored(state, target)
        except Exception as e:  # orbax raises many types for a damaged checkpoint
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            problems.append(f"checkpoint {s} cannot be restored: {first[:200]}")
            if warn is not None and step is None:
                warn(f"{problems[-1]}; trying an older one")
            continue
        if problems:
            if set_aside:
                _set_aside(manager, [d for d in steps if d > s])
            if warn is not None:
                kept = f" (the damaged ones are kept in {Path(manager.directory).parent / DAMAGED_DIR})" if set_aside else ""
                warn(f"resuming from checkpoint {s}, the newest that restores{kept}")
        return s, state
    raise RunError(f"no checkpoint in {manager.directory} can be restored ({'; '.join(problems)})")


def _set_aside(manager, steps) -> None:
    """Move damaged checkpoints out of the manager's directory (never delete what was written),
    so that the resumed run can save those steps again."""
    import shutil

    from twosome_jax.distributed import barrier, is_main

    if is_main():  # the other processes of a multi-process run see the same directory
        aside = Path(manager.directory).parent / DAMAGED_DIR
        aside.mkdir(exist_ok=True)
        for step in steps:
            src = Path(manager.directory) / str(step)
            dst, n = aside / str(step), 1
            while dst.exists():
                dst, n = aside / f"{step}.{n}", n + 1
            shutil.move(str(src), str(dst))
    barrier("twosome_jax.run set aside damaged checkpoints")
    manager.reload()


def _check_restored(state, target) -> None:
    """A restored tree must have the shapes asked for (a damaged array can come back short)."""
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(target)):
        if tuple(np.shape(got)) != tuple(want.shape):
            raise RunError(f"an array came back with shape {np.shape(got)}, expected {want.shape}")


def make_mesh(num_envs: int, model_parallel: int = 1):
    """A ``(data, model)`` mesh over the devices of every process, or None on one device.

    ``data`` splits the environments (and with them the rollout and the update batch);
    ``model`` splits the frozen base's weight matrices, for bases that do not fit one device.
    ``jax.devices()`` lists each process's devices together, so a ``model`` group stays within
    one host when ``model_parallel`` divides the devices per host.
    """
    devices = jax.devices()
    if len(devices) == 1 and model_parallel == 1:
        return None
    if len(devices) % model_parallel:
        raise RunError(f"model_parallel={model_parallel} must divide the {len(devices)} devices")
    data = len(devices) // model_parallel
    if num_envs % data:
        raise RunError(f"num_envs={num_envs} must be a multiple of the data-parallel size {data} "
                       f"({len(devices)} devices / model_parallel {model_parallel})")
    return jax.sharding.Mesh(np.array(devices).reshape(data, model_parallel), ("data", "model"))


def shard_state(state, mesh, num_envs: int, env_axis: int = 1):
    """Place the per-environment leaves of the train state sharded over ``data``, the rest
    replicated. ``env_axis`` is 1 because the seed axis comes first."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from twosome_jax.distributed import put

    def place(path, x):
        names = {str(getattr(k, "name", getattr(k, "key", ""))) for k in path}
        per_env = bool(names & {"env_state", "obs", "done"}) and x.ndim > env_axis and x.shape[env_axis] == num_envs
        spec = P(*([None] * env_axis + ["data"])) if per_env else P()
        return put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(place, state)


def shard_frozen(frozen, mesh):
    """Replicate what never trains, except that with a ``model`` axis larger than one, every
    stacked weight matrix [layers, in, out] of the base is split over ``model`` along its output
    axis (the embedding along its vocabulary axis); XLA inserts the collectives."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from twosome_jax.distributed import put

    split = mesh.shape["model"]

    def place(path, x):
        names = [str(getattr(k, "key", k)) for k in path]
        spec = P()
        if split > 1 and names and names[0] == "base":
            if x.ndim == 3 and x.shape[2] % split == 0:
                spec = P(None, None, "model")
            elif x.ndim == 2 and x.shape[0] % split == 0:
                spec = P("model", None)
        return put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(place, frozen)
