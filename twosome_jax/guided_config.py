"""The guided PPO trainer's configuration: a frozen dataclass, YAML files, ``--set`` overrides.

The guided trainer (``twosome_jax.guided_train``) trains a PPO agent whose policy also reads an
instruction embedding (RLAdapter's conditioning), on an environment that steps a vector of itself
(``envs_jax.interface.VectorEnvironment``). Its settings differ from TWOSOME's, so it has its
own config class; values are parsed and errors worded exactly as in :mod:`twosome_jax.config`
(whose coercion this module reuses), and the same precedence holds: dataclass defaults < YAML
files (``--config``, repeatable) < dedicated flags < ``--set KEY=VALUE``.

A YAML file is a guided config when it says ``trainer: guided_ppo``
(:func:`is_guided_config`); that key is how ``python -m twosome_jax.train`` can hand such a file
to this trainer. Like :mod:`twosome_jax.config`, this imports neither JAX nor any environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import os
import typing
from typing import Any, ClassVar

import yaml

from envs_jax.registry import ENV_IDS, TASK_NAMES, family_of
from twosome_jax.config import ConfigError, _coerce, _override_items, save_config

TRAINER = "guided_ppo"
INSTRUCTIONS = ("none", "random_subgoals")
ACTIVATIONS = ("relu", "tanh")
POLICY_ENCODERS = ("pretrained", "random_linears")


def _f(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class GuidedConfig:
    """Everything a guided PPO run depends on. Defaults: RLAdapter's PPO (AdaRefiner
    ``config/default.py``) on symbolic Crafter, vectorised, with no instruction.

    A subclass may add keys for a trainer built on this one (``rladapter_config``); the class
    attributes say which ``trainer`` and ``instruction`` values it accepts and which dedicated
    command-line flags it has."""

    TRAINER: ClassVar[str] = TRAINER
    INSTRUCTIONS: ClassVar[tuple[str, ...]] = INSTRUCTIONS
    FLAGS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("--task", "task", "NAME"), ("--seed", "seed", "N"), ("--total-timesteps", "total_timesteps", "N"),
        ("--run-dir", "run_dir", "DIR"), ("--num-seeds", "num_seeds", "K"))

    trainer: str = _f(TRAINER, f"which trainer reads this config: {TRAINER}")
    task: str = _f("crafter", "task (envs_jax.registry) of a family that accepts agent guided-ppo")
    agent: str = _f("guided-ppo", "guided-ppo: actor and critic networks with the instruction added to their first layer")
    env_options: tuple[str, ...] = _f((), "NAME=VALUE options of the environment (e.g. max_timesteps=10000)")
    instruction: str = _f("none", "none: plain PPO, no instruction input | random_subgoals: a random set of "
                                  "sub-goals, re-drawn every instruction_interval steps per env")
    instruction_interval: int = _f(100, "env steps between two instructions of an env (RLAdapter's query interval)")
    subgoals_per_instruction: int = _f(3, "sub-goals in one instruction (the release asks for 3)")
    policy_encoder: str = _f("pretrained", "the encoder of the policy's instruction embeddings: pretrained "
                                           "(all-MiniLM-L6-v2) | random_linears (its linear layers re-drawn "
                                           "orthogonal, gain sqrt 2, zero bias, from the seed: what the release's "
                                           "policy init makes of its copy, RLAdapter quirk Q9)")
    seed: int = _f(1, "random seed")
    num_seeds: int = _f(1, "independent runs trained at once (vmap over the agents; their envs step as one vector)")
    total_timesteps: int = _f(1_000_000, "env steps per seed; iterations = this // (num_envs * num_steps)")
    num_envs: int = _f(16, "parallel environments per seed")
    num_steps: int = _f(256, "env steps per environment per iteration")
    num_minibatches: int = _f(32, "minibatches per epoch")
    update_epochs: int = _f(4, "PPO epochs per iteration")
    learning_rate: float = _f(1e-4, "Adam learning rate (eps 1e-5)")
    anneal_lr: bool = _f(False, "anneal the learning rate linearly to 0")
    gamma: float = _f(0.95, "discount")
    gae_lambda: float = _f(0.65, "GAE lambda")
    clip_coef: float = _f(0.2, "PPO ratio clip")
    clip_vloss: bool = _f(False, "clip the value loss too")
    norm_adv: bool = _f(True, "normalise advantages within each minibatch")
    ent_coef: float = _f(0.0, "entropy bonus coefficient")
    vf_coef: float = _f(1.0, "coefficient of the value loss 0.5 * mean((V - R)^2)")
    max_grad_norm: float = _f(0.5, "global-norm gradient clip (actor and critic together)")
    target_kl: float | None = _f(None, "stop an update's epochs once the last minibatch's approx KL exceeds this")
    bootstrap_truncation: bool = _f(True, "at the time limit add gamma * V(final observation) to the reward")
    hidden: tuple[int, ...] = _f((512, 512), "hidden widths of the actor and of the critic (after a small CNN on pixels)")
    activation: str = _f("relu", "hidden activation: " + "|".join(ACTIVATIONS))
    resets_per_step: int | None = _f(None, "fresh worlds generated on a step where episodes ended (none: the family's default)")
    checkpoint_every: int = _f(10, "iterations between checkpoints")
    keep_checkpoints: int = _f(3, "checkpoints kept on disk")
    run_dir: str | None = _f(None, "output directory (none: the command chooses one)")

    def __post_init__(self):
        fields, hints = _schema(type(self))
        for name in fields:
            object.__setattr__(self, name, _coerce(name, getattr(self, name), hints[name]))
        if self.task in ENV_IDS:
            object.__setattr__(self, "task", ENV_IDS[self.task])
        _validate(self)

    @property
    def batch_size(self) -> int:
        """Transitions per iteration (per seed)."""
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return {k.strip(): yaml.safe_load(v) for k, v in (o.split("=", 1) for o in self.env_options)}

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes) -> "GuidedConfig":
        return dataclasses.replace(self, **changes)


@functools.cache
def _schema(cls) -> tuple[dict[str, dataclasses.Field], dict[str, Any]]:
    """(fields by name, type hints) of a config class."""
    return {f.name: f for f in dataclasses.fields(cls)}, typing.get_type_hints(cls)



def _validate(c: GuidedConfig) -> None:
    def bad(name, accepted):
        raise ConfigError(f"{name}={getattr(c, name)!r} is invalid; accepted: {accepted}")

    if c.trainer != c.TRAINER:
        bad("trainer", c.TRAINER)
    if c.task not in TASK_NAMES:
        bad("task", ", ".join(TASK_NAMES))
    family = family_of(c.task)
    if c.agent not in family.agents:
        accepting = [t for t in TASK_NAMES if c.agent in family_of(t).agents]
        raise ConfigError(f"task {c.task!r} does not accept agent {c.agent!r}; agents that accept it: "
                          f"{', '.join(family.agents) or 'those of python -m twosome_jax.train'}"
                          + (f"; tasks that accept {c.agent!r}: {', '.join(accepting)}" if accepting else ""))
    for name, choices in (("instruction", c.INSTRUCTIONS), ("activation", ACTIVATIONS),
                          ("policy_encoder", POLICY_ENCODERS)):
        if getattr(c, name) not in choices:
            bad(name, ", ".join(choices))
    names = [o.split("=", 1)[0].strip() for o in c.env_options]
    if any("=" not in o or not n.isidentifier() for o, n in zip(c.env_options, names)) or len(set(names)) != len(names):
        bad("env_options", "a list of distinct NAME=VALUE items (e.g. max_timesteps=10000)")
    for name in ("instruction_interval", "subgoals_per_instruction", "num_seeds", "total_timesteps", "num_envs",
                 "num_steps", "num_minibatches", "update_epochs", "checkpoint_every", "keep_checkpoints"):
        if getattr(c, name) <= 0:
            bad(name, "an integer > 0")
    if c.seed < 0:
        bad("seed", "an integer >= 0")
    if c.resets_per_step is not None and c.resets_per_step <= 0:
        bad("resets_per_step", "an integer > 0, or none")
    for name in ("learning_rate", "clip_coef", "max_grad_norm"):
        if not getattr(c, name) > 0:
            bad(name, "a number > 0")
    for name in ("ent_coef", "vf_coef"):
        if not getattr(c, name) >= 0:
            bad(name, "a number >= 0")
    if not 0 < c.gamma <= 1:
        bad("gamma", "a number in (0, 1]")
    if not 0 <= c.gae_lambda <= 1:
        bad("gae_lambda", "a number in [0, 1]")
    if c.target_kl is not None and not c.target_kl > 0:
        bad("target_kl", "a number > 0, or none")
    if not c.hidden or any(w <= 0 for w in c.hidden):
        bad("hidden", "a non-empty list of widths > 0")
    if c.batch_size % c.num_minibatches:
        raise ConfigError(f"num_minibatches={c.num_minibatches} does not divide the batch num_envs*num_steps="
                          f"{c.num_envs}*{c.num_steps}={c.batch_size}; accepted: a divisor of {c.batch_size}")
    if c.batch_size // c.num_minibatches < 2 and c.norm_adv:
        raise ConfigError(f"num_minibatches={c.num_minibatches} leaves minibatches of one transition, whose "
                          "advantages cannot be normalised; accepted: fewer minibatches, or norm_adv=false")
    if c.total_timesteps < c.batch_size:
        raise ConfigError(f"total_timesteps={c.total_timesteps} is less than one iteration's batch "
                          f"num_envs*num_steps={c.batch_size}; accepted: an integer >= {c.batch_size}")


def _key(raw, source: str, fields) -> str:
    key = str(raw).strip().replace("-", "_")
    if key in fields:
        return key
    close = difflib.get_close_matches(key, fields, n=4, cutoff=0.6)
    hint = ("did you mean: " + ", ".join(close)) if close else ("valid keys: " + ", ".join(fields))
    raise ConfigError(f"unknown config key {raw!r} in {source}; {hint}")


def _build(base: GuidedConfig, items, source: str) -> GuidedConfig:
    fields = _schema(type(base))[0]
    changes = {_key(k, source, fields): v for k, v in items}
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as e:
        raise ConfigError(f"{e} (from {source})") from None


def _read_yaml(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} not found") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path!r} is not valid YAML: {getattr(e, 'problem', None) or type(e).__name__}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must be a mapping of key: value, got a {type(data).__name__}")
    return data


def is_guided_config(path: str | os.PathLike, trainer: str = TRAINER) -> bool:
    """Whether a YAML file says ``trainer: guided_ppo`` (or the given ``trainer``; False for an
    unreadable file: the command that reads it next reports the problem)."""
    try:
        return _read_yaml(path).get("trainer") == trainer
    except ConfigError:
        return False


def load_guided_config(path: str | os.PathLike, base: GuidedConfig | None = None) -> GuidedConfig:
    """Read a YAML mapping of config keys over ``base`` (the defaults when None)."""
    return _build(base or GuidedConfig(), list(_read_yaml(path).items()), f"config file {os.fspath(path)!r}")


def save_guided_config(cfg: GuidedConfig, path: str | os.PathLike) -> None:
    """Every field as YAML, atomically (``load_guided_config`` reads back an equal config)."""
    save_config(cfg, path)


def add_guided_arguments(parser: argparse.ArgumentParser, cls: type = GuidedConfig) -> argparse.ArgumentParser:
    """``--config``, the dedicated flags (``cls.FLAGS``) and ``--set``; every key of ``cls``
    listed in ``--help``."""
    fields = _schema(cls)[0]
    g = parser.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", action="append", default=None,
                   help="YAML file of config keys (e.g. configs/crafter_ppo.yaml); repeat it to layer files")
    for flag, key, metavar in cls.FLAGS:
        g.add_argument(flag, dest=key, metavar=metavar, default=None, help=f"{fields[key].metadata['help']} (sets {key})")
    g.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override any config key (repeatable; applied after the flags above)")
    width = max(map(len, fields))
    lines = ["config keys (set in --config FILE or with --set KEY=VALUE; default shown):"]
    for name, f in fields.items():
        d = f.default
        shown = ",".join(map(str, d)) if isinstance(d, tuple) else ("none" if d is None else str(d).lower() if isinstance(d, bool) else d)
        lines.append(f"  {name:<{width}}  = {shown!s:<14} {f.metadata['help']}")
    parser.epilog = "\n".join(lines)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def guided_config_from_args(args: argparse.Namespace, cls: type = GuidedConfig) -> GuidedConfig:
    """defaults < --config files < dedicated flags < --set (raises ConfigError)."""
    cfg = cls()
    for path in args.config or []:
        cfg = load_guided_config(path, base=cfg)
    items = [(key, getattr(args, key)) for _, key, _ in cls.FLAGS if getattr(args, key, None) is not None]
    items += _override_items(args.overrides or [])
    return _build(cfg, items, "the command line") if items else cfg


__all__ = ["GuidedConfig", "ConfigError", "is_guided_config", "load_guided_config", "save_guided_config",
           "add_guided_arguments", "guided_config_from_args"]
