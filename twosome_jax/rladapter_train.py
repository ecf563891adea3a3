"""``python -m twosome_jax.train --config configs/crafter_rladapter.yaml``: RLAdapter's loop of stages.

    python -m twosome_jax.train --config configs/crafter_rladapter.yaml --set stages=K --total-timesteps N
    python -m twosome_jax.train --resume D          # continue a killed run, inside a stage or between stages

K stages of N env steps per seed each (AdaRefiner's README: 5 stages of ``train.py
--max_train_steps=1000000``). In a stage the guided PPO agent (``guided_trainer``) trains on the
instruction rows that the language models choose: before each ``instruction_interval`` env
steps of every env (at global steps 0, 100, 200, ... per env, as the release's
``num_timesteps % 100 == 0`` test, all envs in one round) a query round
(``rladapter_round.QueryRound``) sets each env's row, and :data:`guided_trainer.collect` rolls
the envs that far; :data:`guided_trainer.update` then runs GAE and PPO on the iteration's
segments. Every transition is stored with the instruction it was acted under (the release
stores the transition of a query step with the new instruction, although its action was taken
under the old one; fixed here). The action history of a round is the env's actions since the
previous round, the release's deque of the last 100 (which the release also empties at the
start of each 4096-step rollout, and this loop never does).

After a stage: LoRA SFT of the adapter on the stage's (prompt, response) pairs (``sft.run_sft``;
``sft_data``, ``sft_max_pairs``), its export in PEFT format, the new adapter in use for the next
stage's analyses, and with ``policy_across_stages: reinit`` a fresh policy.

The run directory holds what guided runs hold (``config.yaml``, ``checkpoints/``,
``metrics.jsonl``, ``tb/``, ``learning_curve.png``, ``episodes.jsonl``; ``env_step`` and
``env_steps`` count each seed's env steps from the start of the run, across stages, and every
metrics line's ``crafter_score`` is over all episodes so far) and per stage K (from 1):

* ``stage_K/data.jsonl``: one line per query, ``{"prompt", "response", "comprehension_score",
  "env_step", "seed", "env", "subgoals"}`` (``subgoals`` in the order drawn; ``env_step`` the
  seed's env steps when the round ran); whole lines, fsynced, cut back on resume;
* ``stage_K/adapter/``: the adapter after the stage's SFT (PEFT);
* ``stage_K/summary.json``: the stage's mean comprehension score (and per seed), the histogram
  of the chosen sub-goals, the SFT losses (each training step's, and the evaluation split's),
  a few sampled (situation, analysis, sub-goals) triples, also printed, and the wall seconds of
  the stage's closing and of its SFT (``seconds``). TensorBoard gets it too, at the stage's last
  env step: ``stage/comprehension_score``, ``stage/sft_train_loss``, ``stage/sft_eval_loss``,
  the histogram ``stage/subgoals`` (sub-goal indices; ``stage/subgoals/table`` names them) and
  the printed lines as ``stage/summary``.

Metrics lines add the iteration's mean ``comprehension_score``, its ``stage`` and the wall time
of its query rounds by part (``query_*_seconds``).

Resume: the checkpoint holds the PPO state, each env's actions since the last round (the next
round reads them), the adapter's LoRA, the stage count and whether the closing work of a stage
that just ended (SFT, export, summary, policy re-initialisation) is done. Checkpoint step
``2 i`` is taken after iteration ``i``, and step ``2 i + 1`` after closing the stage that
iteration ``i`` ended; a run killed while closing a stage redoes it from the stage's last
iteration. The keys of the language models' sampling are folded from the seed and the round's
index (the SFT's are its settings'), so a resumed run writes what an uninterrupted one writes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

DATA_FILE = "data.jsonl"
SUMMARY_FILE = "summary.json"
ADAPTER_DIR = "adapter"
SAMPLES_PER_STAGE = 3  # (situation, analysis, sub-goals) triples in a stage summary
_ROUND_KEYS, _REINIT_KEYS = 1, 2  # fold_in tags of the run key: the rounds' sampling, the re-made policies


def stage_dir(run_dir: Path, stage: int) -> Path:
    """``RUN_DIR/stage_K`` (stages count from 1)."""
    return Path(run_dir) / f"stage_{stage}"


def language_models(cfg):
    """``(model, tokenizer, adapter, decision)``: the adapter LM with fresh LoRA (``AdapterLM``;
    None, and no model, with ``adapter: none``) and the decision model, the same loaded model
    when both specs are equal (the decision model scores with the adapters off)."""
    from twosome_jax.guidance import AdapterLM, ScoringDecisionModel
    from twosome_jax.model import load_model
    from twosome_jax.run import compute_dtype

    dtype = compute_dtype(cfg)
    model = tokenizer = adapter = None
    if cfg.adapter == "lm":
        _, model, tokenizer = load_model(cfg.adapter_model, dtype=dtype, lora=cfg.sft_settings().lora_config(),
                                         seed=cfg.seed)
        adapter = AdapterLM(model, tokenizer, max_new_tokens=cfg.adapter_max_new_tokens,
                            temperature=cfg.adapter_temperature, top_p=cfg.adapter_top_p)
    if model is not None and cfg.decision_model == cfg.adapter_model:
        decision = ScoringDecisionModel(model, tokenizer, temperature=cfg.decision_temperature)
    else:
        decision = ScoringDecisionModel(cfg.decision_model, dtype=dtype, temperature=cfg.decision_temperature)
    return model, tokenizer, adapter, decision


def build(cfg, encoder=None):
    """``(env, sentences, encoder, table, trainer)`` of a run: the environment, the instruction
    table's sentences (3 of its sub-goals each), the comprehension score's sentence encoder
    (default all-MiniLM-L6-v2), the policy's embeddings of the sentences (``policy_encoder``),
    and one trainer for the whole run (its budget, for the episodes
    counted and any annealing, spans every stage)."""
    import jax.numpy as jnp

    import envs_jax
    from envs_jax.interface import GuidedEnvironment
    from twosome_jax import run as runlib
    from twosome_jax.guided_trainer import GuidedTrainer
    from twosome_jax.instructions import policy_table, subgoal_sentences

    env, env_params = envs_jax.make(cfg.task, **cfg.env_kwargs)
    if not isinstance(env, GuidedEnvironment) or not getattr(env, "subgoals", None):
        raise runlib.RunError(f"task {cfg.task!r} has no sub-goals for the decision model to choose from")
    sentences = subgoal_sentences(env.subgoals, cfg.subgoals_per_instruction)
    if encoder is None:  # the comprehension score's; the policy's table is cached with it
        from twosome_jax.sentence_encoder import SentenceEncoder

        encoder = SentenceEncoder.load()
        table = policy_table(sentences, cfg.policy_encoder, cfg.seed,
                             None if cfg.policy_encoder == "pretrained" else encoder)
    else:
        table = policy_table(sentences, cfg.policy_encoder, cfg.seed, encoder)
    trainer = GuidedTrainer.from_config(cfg.replace(total_timesteps=cfg.stages * cfg.total_timesteps), env,
                                        env_params, table.shape[1])
    return env, sentences, encoder, jnp.asarray(table), trainer


def sft_pairs(cfg, run_dir: Path, stage: int) -> list[tuple[str, str]]:
    """The (prompt, response) pairs stage ``stage``'s SFT trains on, in dataset order: the stage's
    (``sft_data: stage``) or every stage's so far (``accumulated``); with ``sft_min_next_score``
    those whose env's next round (in the data read) scored at least that, so an env's last round
    in them is left out; then at most ``sft_max_pairs`` of them, a subset drawn with the seed and
    the stage, order kept."""
    import numpy as np

    from twosome_jax.metrics import read_metrics

    stages = [stage] if cfg.sft_data == "stage" else range(1, stage + 1)
    records = [r for s in stages for r in read_metrics(stage_dir(run_dir, s) / DATA_FILE)]
    if cfg.sft_min_next_score is not None:
        rounds = {}  # (seed, env) -> its records' indices, in order of env step
        for i in sorted(range(len(records)), key=lambda i: records[i]["env_step"]):
            rounds.setdefault((records[i]["seed"], records[i]["env"]), []).append(i)
        kept = {i for env in rounds.values() for i, j in zip(env, env[1:])
                if records[j]["comprehension_score"] >= cfg.sft_min_next_score}
        records = [r for i, r in enumerate(records) if i in kept]
    pairs = [(r["prompt"], r["response"]) for r in records]
    if cfg.sft_max_pairs is not None and len(pairs) > cfg.sft_max_pairs:
        keep = np.sort(np.random.default_rng([cfg.seed, stage]).choice(len(pairs), cfg.sft_max_pairs, replace=False))
        pairs = [pairs[i] for i in keep]
    return pairs


def stage_summary(cfg, stage: int, records: list[dict], sft, subgoals: tuple[str, ...]) -> dict:
    """What a stage did: its queries' mean comprehension score (and per seed), how often each
    sub-goal was chosen, the SFT losses (``sft``: an ``SFTResult`` or None) and a few triples."""
    import numpy as np

    scores = np.array([r["comprehension_score"] for r in records], np.float64)
    per_seed = [float(np.mean([r["comprehension_score"] for r in records if r["seed"] == k]))
                for k in range(cfg.num_seeds)]
    counts = Counter(g for r in records for g in r["subgoals"])
    rng = np.random.default_rng([cfg.seed, stage])
    picked = np.sort(rng.choice(len(records), min(SAMPLES_PER_STAGE, len(records)), replace=False))
    from twosome_jax.rladapter_round import situation_text

    out = {"stage": stage, "env_steps": [(stage - 1) * cfg.total_timesteps, stage * cfg.total_timesteps],
           "queries": len(records), "comprehension_score": float(scores.mean()),
           "comprehension_score_per_seed": per_seed,
           "subgoal_histogram": {g: counts.get(g, 0) for g in subgoals},
           "sft": None,
           "samples": [{"situation": situation_text(records[i]["prompt"]), "analysis": records[i]["response"],
                        "subgoals": records[i]["subgoals"], "seed": records[i]["seed"], "env": records[i]["env"],
                        "env_step": records[i]["env_step"]} for i in picked]}
    if sft is not None:
        losses = [float(x) for x in sft.losses]
        out["sft"] = {"train_pairs": sft.train_pairs, "eval_pairs": sft.eval_pairs,
                      "train_loss": float(np.mean(losses)), "train_loss_first": losses[0],
                      "train_loss_last": losses[-1], "eval_loss": sft.eval_loss, "train_losses": losses}
    return out


def _checkpoint_tree(state, history, queried, closed, stage: int, adapter) -> dict:
    """What a checkpoint holds: the PPO state, each env's actions since the last round, whether a
    round ran, whether the ended stage is closed, the stage count and the adapter's LoRA."""
    import numpy as np
    from flax import nnx

    tree = {"ppo": state, "history": np.asarray(history, np.int32), "queried": np.bool_(queried),
            "closed": np.bool_(closed), "stage": np.int32(stage)}
    if adapter is not None:
        tree["lora"] = nnx.to_pure_dict(adapter.lora)
    return tree


def restore_lora(model, adapter, pure: dict) -> None:
    """Put a checkpoint's LoRA (``nnx.to_pure_dict`` of the adapter's) into the model and the adapter LM."""
    from flax import nnx

    from twosome_jax.model import split_model

    lora = split_model(model)[2]
    nnx.replace_by_pure_dict(lora, pure)
    nnx.update(model, lora)
    adapter.update_adapters(lora)


def checkpoint_abstract(trainer, cfg, adapter) -> dict:
    """The structure a run's checkpoints restore into (``run.restore_checkpoint``)."""
    import jax
    import numpy as np

    from twosome_jax.guided_trainer import init

    state = jax.eval_shape(lambda k: init(trainer, k), jax.random.PRNGKey(cfg.seed))
    history = np.zeros((cfg.num_seeds, cfg.num_envs, cfg.instruction_interval))
    return _checkpoint_tree(state, history, False, False, 0, adapter)


def _summary_lines(s: dict) -> list[str]:
    top = sorted(s["subgoal_histogram"].items(), key=lambda kv: -kv[1])[:5]
    sft = s["sft"]
    loss = ("no SFT" if sft is None else
            f"SFT loss {sft['train_loss']:.3f} on {sft['train_pairs']} pairs (first {sft['train_loss_first']:.3f}, "
            f"last {sft['train_loss_last']:.3f}), eval "
            + ("n/a" if sft["eval_loss"] is None else f"{sft['eval_loss']:.3f} on {sft['eval_pairs']} pairs"))
    lines = [f"stage {s['stage']}: {s['queries']} queries, comprehension score {s['comprehension_score']:.3f}; {loss}; "
             f"most chosen: {', '.join(f'{g} {n}' for g, n in top)}"]
    for t in s["samples"]:
        lines.append(f"  seed {t['seed']} env {t['env']} step {t['env_step']}: {t['situation']}")
        lines.append(f"    analysis: {t['analysis']!r}")
        lines.append(f"    sub-goals: {', '.join(t['subgoals'])}")
    return lines


def _summary_tensorboard(s: dict, lines: list[str]) -> dict:
    """A stage summary as ``RunLogger.log_summary`` arguments: its comprehension score and SFT
    losses, the chosen sub-goals' histogram and the printed lines (the sampled triples)."""
    sft = s["sft"] or {}
    return {"scalars": {"stage/comprehension_score": s["comprehension_score"],
                        "stage/sft_train_loss": sft.get("train_loss"), "stage/sft_eval_loss": sft.get("eval_loss")},
            "counts": {"stage/subgoals": s["subgoal_histogram"]},
            "texts": {"stage/summary": "\n".join(f"    {line}" for line in lines)}}  # indented: verbatim


def train(cfg, run_dir: Path, *, resume: bool, progress: bool | None = None, encoder=None, on_event=None) -> dict:
    """Run (or continue) an RLAdapter run in ``run_dir``; returns the summary it prints.

    ``encoder``: the sentence encoder of the instruction table and the comprehension score
    (default all-MiniLM-L6-v2, its table cached); a given one must be given again on resume.
    ``on_event(kind, n)`` is called with ``("iteration", i)`` after iteration ``i``'s records
    are written and before its checkpoint, and with ``("stage", k)`` after stage ``k``'s closing
    work and before its checkpoint."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from twosome_jax import run as runlib
    from twosome_jax.atomic import write_atomic
    from twosome_jax.guided_config import save_guided_config
    from twosome_jax.guided_train import EPISODES_FILE, EpisodeLog, _check_finite, _episode_lines, summarize
    from twosome_jax.guided_trainer import GuidedTrainer, collect, init, update
    from twosome_jax.metrics import RunLogger, read_metrics
    from twosome_jax.plotting import plot_learning_curve
    from twosome_jax.rladapter_round import QueryRound
    from twosome_jax.export import export_peft_adapter
    from twosome_jax.sft import run_sft, split_pairs
    from twosome_jax.train import HF_NAMES

    env, sentences, encoder, table, trainer = build(cfg, encoder)
    score_keys = tuple(env.episode_metrics(np.zeros((0, len(env.achievements))), np.zeros(0)))
    stage_steps, total = cfg.total_timesteps, cfg.stages * cfg.total_timesteps
    model, tokenizer, adapter, decision = language_models(cfg)
    rounds = QueryRound(encoder, adapter, decision, sentences, history_keep=cfg.history_keep)
    key = jax.random.PRNGKey(cfg.seed)
    round_keys, reinit_keys = jax.random.fold_in(key, _ROUND_KEYS), jax.random.fold_in(key, _REINIT_KEYS)
    K, N, H = cfg.num_seeds, cfg.num_envs, cfg.instruction_interval
    reinit = jax.jit(GuidedTrainer.init_agents, static_argnums=0)

    def checkpoint_tree(state, history, queried, closed, stage):
        return _checkpoint_tree(state, history, queried, closed, stage, adapter)

    def install_lora(lora) -> None:
        nnx.update(model, lora)
        adapter.update_adapters(lora)

    run_dir.mkdir(parents=True, exist_ok=True)
    manager = runlib.checkpoint_manager(run_dir, keep=cfg.keep_checkpoints)
    notes = []
    if resume and manager.all_steps():
        abstract = checkpoint_abstract(trainer, cfg, adapter)
        step, ck = runlib.restore_checkpoint(manager, abstract, warn=notes.append, set_aside=True)
        state, history = ck["ppo"], np.asarray(ck["history"])
        queried, closed = bool(ck["queried"]), bool(ck["closed"])
        if int(ck["stage"]) != int(state.env_steps) // stage_steps or step // 2 != int(state.iteration):
            raise runlib.RunError(f"checkpoint {step} is inconsistent: stage {int(ck['stage'])}, iteration "
                                  f"{int(state.iteration)}, {int(state.env_steps)} env steps per seed")
        if adapter is not None:
            restore_lora(model, adapter, ck["lora"])
    else:
        if not resume:
            save_guided_config(cfg, run_dir / runlib.CONFIG_FILE)
        state = init(trainer, key)  # a resumed run killed before its first checkpoint restarts
        history, queried, closed = np.zeros((K, N, H), np.int32), False, True
    start = int(state.iteration)
    last_checkpoint = start or None
    episodes_log = EpisodeLog(run_dir / EPISODES_FILE, resume=resume, after_env_step=int(state.env_steps))
    logger = RunLogger(run_dir, total_steps=total, resume=resume, after_iteration=start, progress=progress,
                       config=cfg.to_dict())
    data_log, data_stage = None, None

    def save(iteration: int, closed: bool) -> None:
        tree = checkpoint_tree(state, history, queried, closed, int(state.env_steps) // stage_steps)
        runlib.save_checkpoint(manager, 2 * iteration + int(closed), tree)

    def close_stage(stage: int) -> None:
        """SFT, export, summary and (reinit) a fresh policy after stage ``stage``'s RL."""
        nonlocal state
        t0 = time.perf_counter()
        where = stage_dir(run_dir, stage)
        sft, sft_seconds, skipped = None, 0.0, None
        if cfg.adapter_sft:
            # the seed is sft.py's fixed 42 (the release's), so every stage's step is one compilation
            settings = cfg.sft_settings(max_length=min(cfg.sft_settings().max_length,
                                                       model.config.max_position_embeddings))
            pairs, base_name = sft_pairs(cfg, run_dir, stage), HF_NAMES.get(cfg.adapter_model, cfg.adapter_model)
            if split_pairs(pairs, settings.eval_fraction)[0]:
                sft = run_sft(model, tokenizer, pairs, settings, adapter_dir=where / ADAPTER_DIR,
                              base_model_name_or_path=base_name)
                install_lora(sft.lora)
            else:  # sft_min_next_score left no pair to train on: the adapter goes on unchanged
                skipped = f"{len(pairs)} pair(s) with a next comprehension score >= {cfg.sft_min_next_score}"
                export_peft_adapter(adapter.lora, model.config, model.lora_config, where / ADAPTER_DIR, base_name,
                                    lora_dropout=settings.lora_dropout)
            sft_seconds = time.perf_counter() - t0
        summary = stage_summary(cfg, stage, read_metrics(where / DATA_FILE), sft, env.subgoals)
        if skipped:
            summary["sft_skipped"] = skipped
            logger.write(f"stage {stage}: no SFT, {skipped}")
        summary["seconds"] = {"closing": time.perf_counter() - t0, "sft": sft_seconds}
        write_atomic(where / SUMMARY_FILE, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1) + "\n"))
        lines = _summary_lines(summary)
        for line in lines:
            logger.write(line)
        logger.log_summary(stage * stage_steps, **_summary_tensorboard(summary, lines))
        if cfg.policy_across_stages == "reinit" and stage < cfg.stages:
            params, opt_state = reinit(trainer, jax.random.fold_in(reinit_keys, stage + 1))
            state = state.replace(params=params, opt_state=opt_state)

    try:
        with logger:
            for note in notes:
                logger.write(f"warning: {note}")
            if resume:
                logger.write(f"resumed {run_dir} at iteration {start}")
            while True:
                steps = int(state.env_steps)
                done_stages = steps // stage_steps
                if steps and steps % stage_steps == 0 and not closed:
                    close_stage(done_stages)
                    closed = True
                    if on_event is not None:
                        on_event("stage", done_stages)
                    save(int(state.iteration), closed=True)
                    last_checkpoint = int(state.iteration)
                if steps >= total:
                    break
                if data_stage != done_stages + 1:
                    if data_log is not None:
                        data_log.close()
                    data_stage = done_stages + 1
                    stage_dir(run_dir, data_stage).mkdir(exist_ok=True)
                    # a resumed run keeps the queries before its checkpoint (a round at step s runs before it)
                    data_log = EpisodeLog(stage_dir(run_dir, data_stage) / DATA_FILE, resume=resume,
                                          after_env_step=steps - 1)

                # one iteration: a query round before each segment of instruction_interval steps
                t0 = time.perf_counter()
                segments, episodes, scores, seconds = [], [], [], Counter()
                for _ in range(cfg.segments_per_iteration):
                    round_index = int(state.env_steps) // N // H
                    result = rounds(jax.device_get(state.env_state), history if queried else history[..., :0],
                                    np.asarray(state.instruction) if queried else None,
                                    jax.random.fold_in(round_keys, round_index), int(state.env_steps))
                    data_log.write(result.records)
                    scores.append(result.scores)
                    seconds.update(result.seconds)
                    state = state.replace(instruction=jnp.asarray(result.rows))
                    queried = True
                    state, traj, segment_episodes = collect(trainer, table, state, H)
                    history = np.moveaxis(np.asarray(jax.device_get(traj["action"])), 0, -1)  # [K, N, H]
                    segments.append((traj, segment_episodes))
                    episodes.append(jax.device_get(segment_episodes))
                state, metrics = update(trainer, table, state, segments)
                metrics = jax.device_get(metrics)
                elapsed = time.perf_counter() - t0
                done = int(state.iteration)
                _check_finite(metrics, done, last_checkpoint)
                episodes = jax.tree.map(lambda *a: np.concatenate(a, axis=0), *episodes)
                episodes_log.write(_episode_lines(episodes, int(state.env_steps) - cfg.batch_size, N, env.achievements))
                totals = jax.device_get((state.episodes, state.episodes_with))
                metrics.update(env.episode_metrics(totals[1], totals[0]))
                metrics.pop("params_finite")
                metrics.update(episodes_total=totals[0], stage=done_stages + 1,
                               comprehension_score=np.mean(np.stack(scores), axis=(0, 2)),
                               steps_per_second=cfg.batch_size / elapsed,
                               steps_per_second_all_seeds=cfg.batch_size * K / elapsed,
                               query_seconds=sum(seconds.values()),
                               **{f"query_{part}_seconds": s for part, s in seconds.items()})
                logger.log(done, int(state.env_steps), metrics)
                if on_event is not None:
                    on_event("iteration", done)
                stage_end = int(state.env_steps) % stage_steps == 0
                if stage_end:
                    closed = False
                if stage_end or done % cfg.checkpoint_every == 0:
                    save(done, closed=False)
                    last_checkpoint = done
    finally:
        episodes_log.close()
        if data_log is not None:
            data_log.close()
    plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", keys=score_keys + ("mean_return",),
                        x_label="env steps (per seed)")
    out = summarize(cfg, run_dir, read_metrics(run_dir / "metrics.jsonl"), score_keys)
    out["stages"] = [json.loads((stage_dir(run_dir, k) / SUMMARY_FILE).read_text()) for k in range(1, cfg.stages + 1)]
    return out


def print_summary(summary: dict, out=sys.stdout) -> None:
    from twosome_jax.guided_train import print_summary as print_guided

    print_guided(summary, out)
    for s in summary["stages"]:
        print("  " + _summary_lines(s)[0], file=out)


def handles(argv: list[str] | None = None) -> bool:
    """Whether a ``twosome_jax.train`` command line is for this trainer: a ``--config`` file, or
    the ``--resume`` run's ``config.yaml``, says ``trainer: rladapter``."""
    from twosome_jax.guided_config import is_guided_config
    from twosome_jax.guided_train import _option_values
    from twosome_jax.rladapter_config import TRAINER

    argv = sys.argv[1:] if argv is None else list(argv)
    files = _option_values(argv, "--config") + [os.path.join(d, "config.yaml") for d in _option_values(argv, "--resume")]
    return any(is_guided_config(f, TRAINER) for f in files)


def main(argv: list[str] | None = None) -> int:
    from twosome_jax.guided_config import ConfigError, add_guided_arguments, guided_config_from_args, load_guided_config
    from twosome_jax.rladapter_config import RLAdapterConfig

    parser = argparse.ArgumentParser(prog="python -m twosome_jax.train",
                                     description="RLAdapter: guided PPO on Crafter whose sub-goals a decision model "
                                                 "picks after an adapter LM's analysis, in stages with the adapter's "
                                                 "LoRA SFT between them.")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue a killed run from its latest checkpoint (uses RUN_DIR/config.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar: a status line every few iterations")
    add_guided_arguments(parser, RLAdapterConfig)
    args = parser.parse_args(argv)

    from envs_jax.registry import UnknownEnvironment
    from envs_jax.text import TextTableError
    from twosome_jax.hub import FetchError
    from twosome_jax.model import ModelLoadError
    from twosome_jax.run import CONFIG_FILE, RunError
    from twosome_jax.sft import SFTError

    try:
        if args.resume:
            given = [flag for flag, key, _ in RLAdapterConfig.FLAGS if getattr(args, key, None) is not None]
            given += ["--config"] * bool(args.config) + ["--set"] * bool(args.overrides)
            if given:
                parser.error(f"--resume takes its settings from RUN_DIR/config.yaml; drop {', '.join(given)}")
            run_dir = Path(args.resume)
            if not (run_dir / CONFIG_FILE).is_file():
                raise RunError(f"{str(run_dir)!r} is not a run directory: it has no {CONFIG_FILE}")
            cfg = load_guided_config(run_dir / CONFIG_FILE, base=RLAdapterConfig())
        else:
            cfg = guided_config_from_args(args, RLAdapterConfig)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = Path(cfg.run_dir) if cfg.run_dir else Path("runs") / f"{cfg.task}-rladapter-seed{cfg.seed}-{stamp}"
            if (run_dir / CONFIG_FILE).exists():
                parser.error(f"run directory {str(run_dir)!r} already holds a run; use --resume {run_dir} or another --run-dir")
        summary = train(cfg, run_dir, resume=bool(args.resume), progress=False if args.no_progress else None)
    except (ConfigError, RunError, ModelLoadError, FetchError, UnknownEnvironment, SFTError, TextTableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
