"""Training configuration: one frozen dataclass, YAML files, ``--set KEY=VALUE`` overrides.

``TrainConfig`` is frozen and holds only hashable values (tuples, not lists), so the whole config
can be a static argument of a jitted function. Every way of building one (defaults, YAML,
command-line flags, ``--set``) goes through ``__post_init__`` validation, so a bad value is
reported once, in one line, before any model is loaded.

Precedence: dataclass defaults < YAML files (``--config``, repeatable: later files layer over
earlier ones, e.g. a task's reference config then ``configs/smollm2.yaml``) < dedicated flags
(``--seed`` ...) < ``--set KEY=VALUE`` (applied left to right).

This module deliberately imports neither jax nor the model package: a CLI can parse and
validate its arguments (and print ``--help``) without paying for a JAX import.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from pathlib import Path
import types
import typing
from typing import Any

import yaml

from envs_jax.registry import ENV_IDS, TASK_NAMES, family_of
from twosome_jax.choices import AGENTS, DTYPES, LORA_TARGETS, NORMALIZATIONS, PPO_UPDATES, SCORINGS

# The environment registry imports neither JAX nor any environment, so validating a config does not.
TASKS = TASK_NAMES

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null", "~")


class ConfigError(ValueError):
    """A bad configuration; ``str(err)`` is one line naming the value and what is accepted."""


def _f(default, help: str):
    """A dataclass field with a help string (shown by ``--help``)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults: the reference's tomato-salad settings."""

    # what to train
    task: str = _f("tomato_salad", "task (envs_jax.registry): " + "|".join(TASKS))
    model: str = _f("smollm2-135m-instruct", "model spec: built-in name, HF directory or .gguf path")
    agent: str = _f("twosome", "twosome (LLM + LoRA policy) | ppo-mlp (baseline) | saycan (frozen LLM)")
    env_options: tuple[str, ...] = _f((), "NAME=VALUE options of the environment: its constructor's keywords "
                                          "or its params' fields (e.g. obs_radius=10,reward_subtask=0.1)")
    seed: int = _f(1, "random seed")
    num_seeds: int = _f(1, "independent runs trained at once (vmap over the train state)")
    # rollout
    total_timesteps: int = _f(500_000, "env steps (decisions) summed over envs; iterations = this // batch")
    num_envs: int = _f(4, "parallel environments")
    num_steps: int = _f(32, "env steps (decisions) per environment per iteration")
    # PPO
    ppo_update: str = _f("phased", "phased (TWOSOME: value minibatches, then accumulated policy groups, actor and "
                                   "critic clipped apart) | joint (CleanRL's ppo.py, the reference's PPO baseline: one "
                                   "Adam, one loss per minibatch of policy_num_minibatches, update_epochs epochs)")
    policy_learning_rate: float = _f(5e-7, "AdamW learning rate of the LoRA adapters")
    value_learning_rate: float = _f(1e-5, "Adam learning rate of the critic head")
    anneal_lr: bool = _f(True, "anneal both learning rates linearly to 0")
    gamma: float = _f(0.99, "discount per time step (a decision of k steps, e.g. an Overcooked macro, discounts by gamma**k)")
    gae_lambda: float = _f(0.95, "GAE lambda (not raised to the macro step count)")
    policy_num_minibatches: int = _f(32, "policy minibatches per epoch")
    value_num_minibatches: int = _f(4, "value minibatches per epoch")
    update_epochs: int = _f(1, "PPO epochs per iteration")
    norm_adv: bool = _f(True, "normalise advantages within each policy minibatch")
    clip_coef: float = _f(0.2, "PPO ratio clip (also the value clip)")
    clip_vloss: bool = _f(True, "clipped value loss")
    ent_coef: float = _f(0.01, "entropy bonus coefficient")
    vf_coef: float = _f(0.5, "value loss coefficient")
    max_grad_norm: float = _f(0.5, "global-norm gradient clip (actor and critic separately)")
    target_kl: float | None = _f(0.02, "stop the policy phase when the accumulated approx KL exceeds this; none disables")
    gradient_accumulation_steps: int = _f(8, "policy minibatches accumulated per optimizer step")
    critic_warmup_updates: int = _f(0, "iterations that train only the critic before the policy")
    # scoring / model
    normalization: str = _f("word", "action score normalisation: " + "|".join(NORMALIZATIONS))
    scoring: str = _f("packed", "scoring implementation: " + "|".join(SCORINGS))
    lora_rank: int = _f(8, "LoRA rank r")
    lora_alpha: float = _f(16.0, "LoRA alpha (scale alpha / r)")
    lora_targets: tuple[str, ...] = _f(("q_proj", "v_proj"), "LoRA target projections: " + ",".join(LORA_TARGETS))
    critic_hidden: tuple[int, ...] = _f((1024, 512), "critic MLP hidden widths (ReLU, no bias)")
    dtype: str = _f("auto", "compute dtype: " + "|".join(DTYPES) + " (auto: float32 on CPU, bfloat16 on accelerators)")
    remat: bool = _f(False, "rematerialise decoder layers in the backward pass (less memory)")
    model_parallel: int = _f(1, "devices that split the frozen base's weights (the rest split the envs)")
    critic_feature_cache: bool = _f(True, "precompute the critic feature of every reachable observation once "
                                          "(exact: the base is frozen); false computes it in the rollout")
    # bookkeeping
    checkpoint_every: int = _f(10, "iterations between checkpoints")
    keep_checkpoints: int = _f(3, "checkpoints kept on disk")
    eval_every: int = _f(0, "iterations between evaluations; 0 = off")
    eval_episodes: int = _f(100, "episodes per evaluation")
    stop_after_greedy_successes: int = _f(0, "stop once greedy success has been 1.0 (every seed) at this many "
                                             "consecutive evaluations; 0 = train the whole budget")
    # ppo-mlp baseline
    mlp_hidden: tuple[int, ...] = _f((64, 64), "ppo-mlp actor and critic hidden widths (tanh)")
    mlp_learning_rate: float = _f(2.5e-4, "ppo-mlp Adam learning rate")
    run_dir: str | None = _f(None, "output directory (none: the command chooses one)")

    def __post_init__(self):
        # Coerce first (lists -> tuples, "5e-7" -> float, ...) so the frozen config stays
        # hashable and typed however it was built, then check the values.
        for name in FIELDS:
            object.__setattr__(self, name, _coerce(name, getattr(self, name)))
        if self.task in ENV_IDS:  # an env id names its task
            object.__setattr__(self, "task", ENV_IDS[self.task])
        _validate(self)

    # ------------------------------------------------------------------ derived sizes
    @property
    def batch_size(self) -> int:
        """Transitions per iteration (per seed)."""
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        """PPO iterations, as the reference computes them (``total_timesteps // batch_size``)."""
        return self.total_timesteps // self.batch_size

    @property
    def policy_minibatch_size(self) -> int:
        return self.batch_size // self.policy_num_minibatches

    @property
    def value_minibatch_size(self) -> int:
        return self.batch_size // self.value_num_minibatches

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """``env_options`` as keywords for ``envs_jax.make`` (each value read as a YAML scalar)."""
        return {k.strip(): yaml.safe_load(v) for k, v in (o.split("=", 1) for o in self.env_options)}

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with ``changes`` (values must already have the field types)."""
        return dataclasses.replace(self, **changes)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


# ---------------------------------------------------------------------------- validation
def _validate(c: TrainConfig) -> None:
    def bad(name, accepted):
        raise ConfigError(f"{name}={getattr(c, name)!r} is invalid; accepted: {accepted}")

    for name, choices in (("task", TASKS), ("agent", AGENTS), ("normalization", NORMALIZATIONS),
                          ("scoring", SCORINGS), ("dtype", DTYPES), ("ppo_update", PPO_UPDATES)):
        if getattr(c, name) not in choices:
            bad(name, ", ".join(choices))
    family = family_of(c.task)
    if not family.text:  # these agents read text tables (envs_jax.interface.TextEnvironment)
        raise ConfigError(f"task {c.task!r} has no text tables, so agent {c.agent!r} cannot run on it; "
                          f"agents that accept it: {', '.join(family.agents)}")
    names = [o.split("=", 1)[0].strip() for o in c.env_options]
    if any("=" not in o or not n.isidentifier() for o, n in zip(c.env_options, names)) or len(set(names)) != len(names):
        bad("env_options", "a list of distinct NAME=VALUE items (e.g. obs_radius=10)")
    if c.ppo_update == "joint" and c.agent != "ppo-mlp":
        bad("ppo_update", "phased for the LLM agents (joint steps one optimizer over actor and critic: ppo-mlp only)")
    if not isinstance(c.model, str) or not c.model.strip():
        bad("model", "a non-empty model spec (name, directory or .gguf path)")
    for name in ("num_seeds", "total_timesteps", "num_envs", "num_steps", "policy_num_minibatches",
                 "value_num_minibatches", "update_epochs", "gradient_accumulation_steps",
                 "lora_rank", "checkpoint_every", "keep_checkpoints", "eval_episodes", "model_parallel"):
        if getattr(c, name) <= 0:
            bad(name, "an integer > 0")
    for name in ("seed", "critic_warmup_updates", "eval_every", "stop_after_greedy_successes"):
        if getattr(c, name) < 0:
            bad(name, "an integer >= 0")
    for name in ("policy_learning_rate", "value_learning_rate", "mlp_learning_rate", "clip_coef",
                 "max_grad_norm", "lora_alpha"):
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
        bad("target_kl", "a number > 0, or none to disable the early stop")
    if not c.lora_targets or any(t not in LORA_TARGETS for t in c.lora_targets) \
            or len(set(c.lora_targets)) != len(c.lora_targets):
        bad("lora_targets", "a non-empty list of distinct names from " + ",".join(LORA_TARGETS))
    for name in ("critic_hidden", "mlp_hidden"):
        if not getattr(c, name) or any(w <= 0 for w in getattr(c, name)):
            bad(name, "a non-empty list of widths > 0")
    b = c.batch_size
    for name in ("policy_num_minibatches", "value_num_minibatches"):
        if b % getattr(c, name):
            raise ConfigError(
                f"{name}={getattr(c, name)} does not divide the batch num_envs*num_steps="
                f"{c.num_envs}*{c.num_steps}={b}; accepted: a divisor of {b}")
    if c.norm_adv and c.policy_minibatch_size == 1:
        raise ConfigError(
            f"policy_num_minibatches={c.policy_num_minibatches} leaves one transition per minibatch of the batch "
            f"num_envs*num_steps={b}, and norm_adv divides by its sample standard deviation (undefined for one); "
            f"accepted: a divisor of {b} below {b}, or norm_adv=false")
    if c.policy_num_minibatches % c.gradient_accumulation_steps:
        raise ConfigError(
            f"gradient_accumulation_steps={c.gradient_accumulation_steps} does not divide "
            f"policy_num_minibatches={c.policy_num_minibatches}; accepted: a divisor of it")
    if c.stop_after_greedy_successes and not c.eval_every:
        raise ConfigError(f"stop_after_greedy_successes={c.stop_after_greedy_successes} needs evaluations; "
                          "accepted: eval_every > 0, or stop_after_greedy_successes=0")
    if c.total_timesteps < b:
        raise ConfigError(
            f"total_timesteps={c.total_timesteps} is less than one iteration's batch "
            f"num_envs*num_steps={b}; accepted: an integer >= {b}")


# ---------------------------------------------------------------------------- coercion
def _coerce(name: str, value: Any, tp: Any = None) -> Any:
    """Convert ``value`` (a command-line string or a YAML scalar/list) to field ``name``'s type.

    Strings are parsed by the field's type rather than by YAML so that e.g. ``model=1.0`` stays
    a string and ``policy_learning_rate=5e-7`` (which PyYAML reads as a *string*) is a float.
    """
    tp = _HINTS[name] if tp is None else tp

    def fail(accepted):
        raise ConfigError(f"{name}={value!r} is invalid; accepted: {accepted}")

    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(name, value, inner)
    if value is None:
        fail(f"a {_type_name(tp)} (this key cannot be none)")
    if typing.get_origin(tp) is tuple:
        elem = args[0]
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("["):
                try:
                    value = yaml.safe_load(s)
                except yaml.YAMLError:
                    fail(f"a comma-separated or [bracketed] list of {_type_name(elem)}")
            else:
                value = [p.strip() for p in s.split(",") if p.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(name, v, elem) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        fail("true/false/1/0")
    if tp is int:
        if isinstance(value, bool):
            fail("an integer")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            pass
        try:  # 5e5, 500000.0
            f = float(str(value).strip())
        except ValueError:
            fail("an integer")
        if not f.is_integer():
            fail("an integer")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            fail("a number")
        try:
            return float(str(value).strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            fail("a number")
    if tp is str:
        if isinstance(value, (list, dict, tuple)):
            fail("a string")
        return str(value)
    raise TypeError(f"unsupported config field type {tp!r} for {name}")  # programming error


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _key(raw: str, source: str) -> str:
    """Normalise a key (``total-timesteps`` -> ``total_timesteps``) and reject unknown ones."""
    key = str(raw).strip().replace("-", "_")
    if key in FIELDS:
        return key
    close = difflib.get_close_matches(key, FIELDS, n=4, cutoff=0.6)
    close += [k for k in FIELDS if key and key in k and k not in close][: 4 - len(close)]
    hint = ("did you mean: " + ", ".join(close)) if close else ("valid keys: " + ", ".join(FIELDS))
    raise ConfigError(f"unknown config key {raw!r} in {source}; {hint}")


def _build(base: TrainConfig, items: list[tuple[str, Any]], source: str) -> TrainConfig:
    changes = {_key(raw_key, source): value for raw_key, value in items}
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as e:
        raise ConfigError(f"{e} (from {source})") from None


# ---------------------------------------------------------------------------- public API
def load_config(path: str | os.PathLike, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML mapping of config keys (missing keys keep ``base``'s / the default values)."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} not found") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        loc = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"config file {path!r} is not valid YAML{loc}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must be a mapping of key: value, got a {type(data).__name__}")
    return _build(base or TrainConfig(), list(data.items()), f"config file {path!r}")


def apply_overrides(cfg: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """Apply ``["key=value", ...]`` left to right; values are parsed by each field's type.

    bool: true/false/1/0 (also yes/no/on/off); tuples: ``a,b`` or ``[a, b]``;
    optional fields: ``none``/``null``; ints also accept ``5e5``.
    """
    items = _override_items(overrides)
    return _build(cfg, items, "--set") if items else cfg


def _override_items(overrides) -> list[tuple[str, str]]:
    items = []
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not KEY=VALUE (e.g. --set gamma=0.95)")
        items.append(tuple(ov.split("=", 1)))
    return items


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write every field as YAML, atomically (``load_config`` reads back an equal config)."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    from twosome_jax.atomic import write_atomic

    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


# dedicated flags: (flag, config key, metavar)
_FLAGS = (
    ("--task", "task", "NAME"),
    ("--model", "model", "SPEC"),
    ("--seed", "seed", "N"),
    ("--total-timesteps", "total_timesteps", "N"),
    ("--run-dir", "run_dir", "DIR"),
    ("--agent", "agent", "{" + ",".join(AGENTS) + "}"),
    ("--num-seeds", "num_seeds", "K"),
)


def config_help() -> str:
    """Every config key with its type, default and meaning (one line each), for ``--help``."""
    width = max(map(len, FIELDS))
    lines = ["config keys (set in --config FILE or with --set KEY=VALUE; default shown):"]
    for name, f in FIELDS.items():
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else \
            ("none" if default is None else str(default).lower() if isinstance(default, bool) else default)
        lines.append(f"  {name:<{width}}  = {shown!s:<22} {f.metadata['help']}")
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--config``, the dedicated flags and ``--set`` to ``parser``; list all keys in --help.

    Dedicated flags are kept as raw strings (default None = not given) and converted by the same
    code as ``--set``, so every value gets the same parsing and the same one-line errors.
    """
    g = parser.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", action="append", default=None,
                   help="YAML file of config keys (e.g. configs/tomato_salad.yaml); repeat it to layer "
                        "files, later ones winning (e.g. then configs/smollm2.yaml)")
    for flag, key, metavar in _FLAGS:
        g.add_argument(flag, dest=key, metavar=metavar, default=None,
                       help=f"{FIELDS[key].metadata['help']} (sets {key})")
    g.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override any config key (repeatable; applied after the flags above)")
    parser.epilog = (parser.epilog + "\n\n" if parser.epilog else "") + config_help()
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """Build the config from parsed arguments: defaults < --config < dedicated flags < --set.

    With ``parser`` given, a ConfigError becomes ``parser.error`` (one line, exit status 2).
    """
    try:
        cfg = TrainConfig()
        for path in getattr(args, "config", None) or []:
            cfg = load_config(path, base=cfg)
        # flags and --set are applied in one step (--set last, so it wins) and validated once,
        # so "--total-timesteps 96 --set num_steps=8" is judged on the final values.
        items = [(key, getattr(args, key)) for _, key, _ in _FLAGS if getattr(args, key, None) is not None]
        items += _override_items(getattr(args, "overrides", None) or [])
        return _build(cfg, items, "the command line") if items else cfg
    except ConfigError as e:
        if parser is None:
            raise
        parser.error(str(e))
