"""TrainConfig: defaults, validation messages, YAML files, overrides and the CLI contract."""

import argparse
import dataclasses
import pathlib

import pytest

from envs_jax.registry import FAMILIES

from twosome_jax.config import (
    FIELDS,
    ConfigError,
    TrainConfig,
    add_config_arguments,
    apply_overrides,
    config_from_args,
    load_config,
    save_config,
)

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _parser():
    p = argparse.ArgumentParser(prog="train")
    add_config_arguments(p)
    return p


def test_defaults_are_reference_tomato_salad():
    c = TrainConfig()
    assert (c.task, c.model, c.agent) == ("tomato_salad", "smollm2-135m-instruct", "twosome")
    assert (c.num_envs, c.num_steps, c.total_timesteps) == (4, 32, 500_000)
    assert (c.policy_learning_rate, c.value_learning_rate) == (5e-7, 1e-5)
    assert (c.policy_minibatch_size, c.value_minibatch_size) == (4, 32)
    assert c.num_iterations == 3906  # the reference's num_updates
    assert c.lora_targets == ("q_proj", "v_proj") and c.critic_hidden == (1024, 512)
    hash(c)  # usable as a static jit argument


def test_constructor_coerces_lists_to_tuples():
    c = TrainConfig(lora_targets=["q_proj"], critic_hidden=[8, 4])
    assert c.lora_targets == ("q_proj",) and c.critic_hidden == (8, 4)
    hash(c)


@pytest.mark.parametrize("kw, fragment", [
    (dict(task="pasta"), "task='pasta' is invalid; accepted: tomato_salad"),
    (dict(agent="dqn"), "agent='dqn' is invalid; accepted: twosome, ppo-mlp, saycan"),
    (dict(normalization="mean"), "accepted: sum, token, word"),
    (dict(scoring="fast"), "accepted: packed, naive"),
    (dict(dtype="float16"), "accepted: auto, float32, bfloat16"),
    (dict(num_envs=0), "num_envs=0 is invalid; accepted: an integer > 0"),
    (dict(gamma=1.5), "gamma=1.5 is invalid; accepted: a number in (0, 1]"),
    (dict(target_kl=0.0), "target_kl=0.0 is invalid"),
    (dict(lora_targets=("q_proj", "x_proj")), "lora_targets=('q_proj', 'x_proj') is invalid"),
    (dict(critic_hidden=()), "critic_hidden=() is invalid"),
    (dict(policy_num_minibatches=5), "policy_num_minibatches=5 does not divide the batch num_envs*num_steps=4*32=128"),
    (dict(num_steps=8, gradient_accumulation_steps=4),
     "policy_num_minibatches=32 leaves one transition per minibatch of the batch num_envs*num_steps=32"),
    (dict(gradient_accumulation_steps=3), "gradient_accumulation_steps=3 does not divide policy_num_minibatches=32"),
    (dict(total_timesteps=100), "total_timesteps=100 is less than one iteration's batch"),
    (dict(ppo_update="adam"), "ppo_update='adam' is invalid; accepted: phased, joint"),
    (dict(ppo_update="joint"), "ppo_update='joint' is invalid; accepted: phased for the LLM agents"),
    (dict(env_options=("obs_radius",)), "env_options=('obs_radius',) is invalid; accepted: a list of distinct"),
    (dict(env_options=("a=1", "a=2")), "env_options=('a=1', 'a=2') is invalid"),
])
def test_validation_is_one_line_naming_value(kw, fragment):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kw)
    msg = str(e.value)
    assert fragment in msg
    assert "\n" not in msg


def test_overrides_coerce_by_field_type():
    c = apply_overrides(TrainConfig(), [
        "anneal_lr=0", "norm_adv=TRUE", "clip_vloss=false", "remat=1",
        "target_kl=none", "run_dir=/tmp/x",
        "lora_targets=q_proj,k_proj,v_proj", "critic_hidden=[16, 8]", "mlp_hidden=32",
        "total_timesteps=1e5", "num-envs=8", "policy_learning_rate=3e-6", "model=1.0",
        "seed=5", "seed=6",  # applied left to right
    ])
    assert (c.anneal_lr, c.norm_adv, c.clip_vloss, c.remat) == (False, True, False, True)
    assert c.target_kl is None and c.run_dir == "/tmp/x"
    assert c.lora_targets == ("q_proj", "k_proj", "v_proj")
    assert c.critic_hidden == (16, 8) and c.mlp_hidden == (32,)
    assert c.total_timesteps == 100_000 and isinstance(c.total_timesteps, int)
    assert c.num_envs == 8 and c.policy_learning_rate == 3e-6
    assert c.model == "1.0" and c.seed == 6
    assert apply_overrides(c, ["target_kl=0.05"]).target_kl == 0.05


@pytest.mark.parametrize("ov, fragment", [
    ("anneal_lr=maybe", "anneal_lr='maybe' is invalid; accepted: true/false/1/0"),
    ("num_envs=2.5", "num_envs='2.5' is invalid; accepted: an integer"),
    ("gamma=high", "gamma='high' is invalid; accepted: a number"),
    ("seed=none", "seed='none' is invalid"),
    ("critic_hidden=[16, x]", "critic_hidden="),
    ("gamma", "is not KEY=VALUE"),
])
def test_override_errors(ov, fragment):
    with pytest.raises(ConfigError) as e:
        apply_overrides(TrainConfig(), [ov])
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_names_key_and_close_matches():
    with pytest.raises(ConfigError) as e:
        apply_overrides(TrainConfig(), ["learning_rate=1e-4"])
    msg = str(e.value)
    assert "unknown config key 'learning_rate'" in msg
    assert "policy_learning_rate" in msg and "value_learning_rate" in msg
    with pytest.raises(ConfigError) as e:
        apply_overrides(TrainConfig(), ["num_env=2"])
    assert "did you mean: num_envs" in str(e.value)


def test_yaml_unknown_key_missing_file_and_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("gama: 0.9\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'gama' in config file .*did you mean: gamma"):
        load_config(f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    f.write_text("gamma: [0.9\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        load_config(f)
    assert "\n" not in str(e.value)
    f.write_text("- gamma\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(f)
    f.write_text("num_steps: 30\n")
    with pytest.raises(ConfigError, match=r"does not divide .* \(from config file"):
        load_config(f)


def test_yaml_floats_without_dot_are_numbers(tmp_path):
    # PyYAML reads 5e-7 as a string (YAML 1.1); the config must still get a float.
    f = tmp_path / "c.yaml"
    f.write_text("policy_learning_rate: 5e-7\ntotal_timesteps: 1e5\n")
    c = load_config(f)
    assert c.policy_learning_rate == 5e-7 and c.total_timesteps == 100_000


def test_save_load_round_trip(tmp_path):
    c = apply_overrides(TrainConfig(), ["target_kl=none", "lora_targets=q_proj,o_proj",
                                        "run_dir=runs/x", "agent=ppo-mlp", "gamma=0.95"])
    save_config(c, tmp_path / "sub" / "config.yaml")
    assert load_config(tmp_path / "sub" / "config.yaml") == c
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["config.yaml"]  # no temp left
    save_config(TrainConfig(), tmp_path / "d.yaml")
    assert load_config(tmp_path / "d.yaml") == TrainConfig()


@pytest.mark.parametrize("task", tuple(FAMILIES["overcooked"].tasks))
def test_every_overcooked_task_has_a_reference_config(task):
    path = CONFIGS / f"{task}.yaml"
    c = load_config(path)
    assert c.task == task
    # Overcooked settings of both reference scripts (reference notes §3)
    assert (c.num_envs, c.num_steps, c.total_timesteps, c.gamma, c.gae_lambda) == (4, 32, 500_000, 0.99, 0.95)
    assert (c.policy_learning_rate, c.value_learning_rate, c.target_kl) == (5e-7, 1e-5, 0.02)
    assert (c.policy_num_minibatches, c.value_num_minibatches, c.gradient_accumulation_steps) == (32, 4, 8)
    assert c.normalization == "word"
    # every value line says where it comes from
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            assert "#" in line, f"{path.name}: uncommented value line {line!r}"


def test_cli_precedence_defaults_yaml_flags_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("seed: 2\nmodel: from-yaml\ngamma: 0.9\nnum_seeds: 3\n")
    p = _parser()
    c = config_from_args(p.parse_args(["--config", str(f)]))
    assert (c.seed, c.model, c.gamma, c.num_seeds) == (2, "from-yaml", 0.9, 3)
    args = p.parse_args(["--config", str(f), "--seed", "3", "--model", "tiny-random",
                         "--total-timesteps", "256", "--run-dir", "out", "--agent", "saycan",
                         "--set", "seed=4", "--set", "gamma=0.5"])
    c = config_from_args(args)
    assert (c.seed, c.model, c.total_timesteps, c.run_dir, c.agent) == (4, "tiny-random", 256, "out", "saycan")
    assert c.gamma == 0.5 and c.num_seeds == 3
    assert config_from_args(p.parse_args([])) == TrainConfig()
    # --task, what people type first; an env id names the same task
    assert config_from_args(p.parse_args(["--task", "lettuce_tomato_salad"])).task == "lettuce_tomato_salad"
    assert config_from_args(p.parse_args(["--task", "VirtualHome-Cheese-v0"])).task == "cheese"
    with pytest.raises(ConfigError, match="task='cheese_salad' is invalid; accepted: tomato_salad"):
        config_from_args(p.parse_args(["--task", "cheese_salad"]))


def test_config_files_layer_left_to_right(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("seed: 2\ngamma: 0.9\n")
    b.write_text("gamma: 0.5\n")
    c = config_from_args(_parser().parse_args(["--config", str(a), "--config", str(b), "--set", "seed=7"]))
    assert (c.seed, c.gamma) == (7, 0.5)  # b over a, --set over both


def test_smollm2_overlay_changes_only_learning_settings():
    """configs/smollm2.yaml layers the SmolLM2 learning rates over any task's reference config."""
    ref = load_config(CONFIGS / "tomato_salad.yaml")
    both = config_from_args(_parser().parse_args(
        ["--config", str(CONFIGS / "tomato_salad.yaml"), "--config", str(CONFIGS / "smollm2.yaml")]))
    changed = {k for k in FIELDS if getattr(ref, k) != getattr(both, k)}
    assert changed == {"policy_learning_rate", "value_learning_rate", "critic_warmup_updates"}
    assert both.policy_learning_rate > 100 * ref.policy_learning_rate


def test_cli_errors_are_one_line_exit_2(capsys):
    p = _parser()
    with pytest.raises(SystemExit) as e:
        config_from_args(p.parse_args(["--set", "lerning_rate=1"]), p)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown config key 'lerning_rate'" in err[-1]
    with pytest.raises(ConfigError, match="seed='x'"):
        config_from_args(p.parse_args(["--seed", "x"]))


def test_help_lists_every_key_with_default():
    text = _parser().format_help()
    for flag in ("--config", "--model", "--seed", "--total-timesteps", "--run-dir", "--agent",
                 "--num-seeds", "--set"):
        assert flag in text
    lines = text.splitlines()
    for name, f in FIELDS.items():
        row = [ln for ln in lines if ln.split("=")[0].strip() == name]
        assert row, f"--help does not list {name}"
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default).lower()
        assert shown in row[0].lower(), (name, row[0])
    assert len(FIELDS) == len(dataclasses.fields(TrainConfig))


def test_flags_and_set_are_validated_together():
    """A flag that is only valid together with a later --set (batch shrunk below the steps)."""
    import argparse

    from twosome_jax.config import add_config_arguments, config_from_args

    parser = add_config_arguments(argparse.ArgumentParser())
    cfg = config_from_args(parser.parse_args(["--total-timesteps", "96", "--set", "num_steps=8",
                                              "--set", "policy_num_minibatches=8", "--seed", "3", "--set", "seed=4"]))
    assert (cfg.total_timesteps, cfg.num_steps, cfg.seed) == (96, 8, 4)


def test_config_validation_reads_the_registry_without_jax():
    """The task list has one home, the environment registry, and reading it imports no JAX."""
    import subprocess
    import sys

    code = ("import sys; from twosome_jax.config import TrainConfig, TASKS; TrainConfig(task='food_preparation'); "
            "assert 'jax' not in sys.modules, 'config imported jax'; print(len(TASKS))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) == sum(len(f.tasks) for f in FAMILIES.values())
    with pytest.raises(ConfigError, match="task='sushi' is invalid; accepted: tomato_salad, .*food_preparation"):
        TrainConfig(task="sushi")


def test_env_options_reach_the_environment():
    import envs_jax

    c = apply_overrides(TrainConfig(), ["agent=ppo-mlp", "ppo_update=joint",
                                        "env_options=obs_radius=10,reward_subtask=0.1"])
    assert c.env_kwargs == {"obs_radius": 10, "reward_subtask": 0.1}
    env, params = envs_jax.make(c.task, **c.env_kwargs)
    assert env.task.obs_radius == 10 and params.reward_subtask == 0.1 and params.reward_correct == 1.0
    with pytest.raises(ValueError, match="environment 'tomato_salad' has no option 'radius'; accepted: nav, obs_radius"):
        envs_jax.make("tomato_salad", radius=3)
