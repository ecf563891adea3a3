"""One TWOSOME training iteration as the reference runs it, in PyTorch, timed against ours.

    .venv/bin/python benchmarks/peer_torch.py --tasks tomato_salad lettuce_tomato_salad --repeats 3

The peer is what the reference TWOSOME code does per update (TWOSOME `twosome/overcooked/
ppo_llm_pomdp.py`, its agent `policy_pomdp.py` and `critic.py`; docs/reference-notes.md §3):

* transformers' ``LlamaForCausalLM`` with peft LoRA (r 8, alpha 16, q/v, dropout 0), float32,
  eager on the CPU;
* scoring: one right-padded sequence ``prompt + " " + action`` per (prompt, action), the LM
  head and the log-softmax over every position of every sequence, the log-probabilities of the
  action's tokens (the tail of the real tokens) summed and divided by the action's word count;
* the critic: the same LLM with the adapters disabled and no gradient, the prompt alone, the
  last hidden state at the prompt's last real token into a bias-free MLP 1024-512-1, run again
  on the prompts in the value phase;
* the rollout: at each of the 32 steps the policy of the 4 observations (no gradient) and the
  value of their prompts, then the value of the observations after the last step;
* GAE over macro actions, then a value phase of 4 Adam steps on minibatches of 32 and a
  policy phase of 32 minibatches of 4, gradients accumulated over 8 into one AdamW step, the
  accumulated approximate KL checked before each step (above 0.02 the phase ends).

It reads the same batch as ours: the observations, actions, rewards and done flags of our own
rollout from the same train state, turned into text by our environment's ``describe`` (the
reference's obs -> text). The actions are those of our rollout instead of fresh samples, so
both sides score the same sequences; the cost of the step does not depend on which action
is drawn. Both sides start from the same adapters and critic and the peer takes our update's
permutation, so the two iterations compute the same update, and the table shows both sides'
losses. Where the peer departs from the reference, it does so for that reason, at no change
in cost:

* an action's token count is ``len(tok(prompt + " " + action)) - len(tok(prompt))`` rather
  than the action tokenized alone minus its BOS, which is only right for LLaMA's tokenizer
  (Q21; SmolLM2 adds no BOS);
* the critic reads the prompt's last real token, not the last padded slot (Q9, fixed in ours);
* the actor's and the critic's gradients are clipped separately (Q10, fixed in ours);
* the reference wraps the actor in ``torch.compile``; the peer runs eager, since the
  right-padded batches change shape from step to step.

The benchmark alternates ours (the default trainer of ``train_setup.py``, one jitted iteration
from the fresh state, compiled by an untimed first call) and the peer, ``--repeats`` times per
task, and writes ``benchmarks/results/peer_DATE_COMMIT.json`` (``report.provenance``). Both
use ``--threads`` CPU threads (torch's intra-op pool; JAX's CPU client sizes its pool to the
cores). ``tests/test_peer_parity.py`` checks the peer's scores and values against ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import REPO, provenance  # noqa: E402

TASKS = ("tomato_salad", "lettuce_tomato_salad")


class PeerError(ValueError):
    """Bad input to the peer (the message is one line)."""


def _linear(n_in, n_out):
    return nn.Linear(n_in, n_out, bias=False)


class PeerAgent:
    """The reference's LLM agent: peft LoRA actor, value head on the adapter-free LLM."""

    def __init__(self, model, tokenizer, *, lora_rank=8, lora_alpha=16.0, lora_targets=("q_proj", "v_proj"),
                 critic_hidden=(1024, 512), normalization="word"):
        import peft

        if normalization not in ("sum", "token", "word"):
            raise PeerError(f"unknown normalization {normalization!r}; accepted: sum, token, word")
        if tokenizer.pad_token_id is None:
            raise PeerError("the tokenizer has no pad token; the reference pads its batches (on the right)")
        self.tokenizer = tokenizer
        self.normalization = normalization
        config = peft.LoraConfig(r=lora_rank, lora_alpha=lora_alpha, target_modules=list(lora_targets),
                                 lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
        dtype = next(model.parameters()).dtype
        if dtype != torch.float32:
            raise PeerError(f"the peer runs float32 weights, got {dtype}; load the model with dtype=torch.float32")
        self.actor = peft.get_peft_model(model, config)
        sizes = (model.config.hidden_size, *critic_hidden, 1)
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [_linear(n_in, n_out), nn.ReLU()]
        self.critic = nn.Sequential(*layers[:-1])

    # -- weights ------------------------------------------------------------------------
    def lora_parameters(self):
        return [p for p in self.actor.parameters() if p.requires_grad]

    def load_ours(self, lora: dict, critic: dict) -> None:
        """Copy our adapters (``{"layers": {group: {proj: {"lora_a" [L,in,r], "lora_b" [L,r,out]}}}}``)
        and our critic (``{"w0": [in,out], ...}``) into the peer (torch stores them transposed)."""
        flat = {}
        for group, projs in lora["layers"].items():
            for proj, ab in projs.items():
                flat[(group, proj)] = (np.asarray(ab["lora_a"]), np.asarray(ab["lora_b"]))
        seen = 0
        with torch.no_grad():
            for name, module in self.actor.named_modules():
                if not (hasattr(module, "lora_A") and "default" in module.lora_A):
                    continue
                parts = name.split(".")
                i = int(parts[parts.index("layers") + 1])
                a, b = flat[(parts[-2], parts[-1])]
                module.lora_A["default"].weight.copy_(torch.from_numpy(a[i].T.copy()))
                module.lora_B["default"].weight.copy_(torch.from_numpy(b[i].T.copy()))
                seen += 1
            linears = [m for m in self.critic if isinstance(m, nn.Linear)]
            for k, layer in enumerate(linears):
                layer.weight.copy_(torch.from_numpy(np.asarray(critic[f"w{k}"]).T.copy()))
        if seen != sum(a.shape[0] for a, _ in flat.values()):
            raise PeerError(f"copied {seen} adapters, ours has {sum(a.shape[0] for a, _ in flat.values())}")

    def snapshot(self) -> dict:
        return {"lora": [p.detach().clone() for p in self.lora_parameters()],
                "critic": [p.detach().clone() for p in self.critic.parameters()]}

    def restore(self, snap: dict) -> None:
        with torch.no_grad():
            for p, v in zip(self.lora_parameters(), snap["lora"]):
                p.copy_(v)
            for p, v in zip(self.critic.parameters(), snap["critic"]):
                p.copy_(v)

    # -- the policy and the critic --------------------------------------------------------
    def action_logprobs(self, descriptions):
        """Summed log-probability of each offered action's tokens after its prompt, and the
        action's token count: two lists with, per description, a tensor over its actions (in
        the order it lists them)."""
        tok = self.tokenizer
        sequences = [d.prompt + " " + a for d in descriptions for a in d.actions]
        owner = [n for n, d in enumerate(descriptions) for _ in d.actions]
        inputs = tok(sequences, return_tensors="pt", padding=True, padding_side="right")
        prompt_ids = tok([d.prompt for d in descriptions])["input_ids"]
        for j, n in enumerate(owner):
            if inputs["input_ids"][j, :len(prompt_ids[n])].tolist() != list(prompt_ids[n]):
                raise PeerError(f"the tokens of the prompt {descriptions[n].prompt!r} are not a prefix of the "
                                f"tokens of {sequences[j]!r}; this tokenizer cannot split them")
        starts = torch.tensor([len(prompt_ids[n]) for n in owner])
        ends = inputs["attention_mask"].sum(-1)  # the real tokens; the action is their tail
        logits = self.actor(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        logp = torch.log_softmax(logits.float(), dim=-1)[:, :-1]  # position t predicts token t + 1
        token_logp = torch.gather(logp, 2, inputs["input_ids"][:, 1:, None])[..., 0]
        sums = torch.stack([token_logp[j, s - 1:e - 1].sum() for j, (s, e) in enumerate(zip(starts, ends))])
        split = [len(d.actions) for d in descriptions]
        return list(torch.split(sums, split)), list(torch.split(ends - starts, split))

    def policy_logits(self, descriptions, num_actions: int):
        """[N, num_actions] categorical logits: the normalised scores in the env slots, -inf
        where an action is not offered."""
        sums, counts = self.action_logprobs(descriptions)
        out = torch.full((len(descriptions), num_actions), -torch.inf)
        for n, (d, s, c) in enumerate(zip(descriptions, sums, counts)):
            if self.normalization == "word":
                s = s / torch.tensor([len(a.split()) for a in d.actions], dtype=torch.float32)
            elif self.normalization == "token":
                s = s / c.float()
            out = out.index_put((torch.full((len(d.actions),), n), torch.tensor(list(d.action_ids))), s)
        return out

    def values(self, prompts):
        """[N] critic values: the adapter-free LLM's last hidden state at each prompt's last real
        token (no gradient), into the MLP (with gradient)."""
        inputs = self.tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="right")
        with torch.no_grad(), self.actor.disable_adapter():
            out = self.actor(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                             output_hidden_states=True)
        last = inputs["attention_mask"].sum(-1) - 1
        hidden = out.hidden_states[-1][torch.arange(len(last)), last].float()
        return self.critic(hidden)[:, 0]



@dataclasses.dataclass
class PeerBatch:
    """What one rollout of the environments gave ([T, N] arrays, T steps of N environments)."""

    obs: np.ndarray  # [T, N, obs_dim] the observation each action was chosen on
    actions: np.ndarray  # [T, N] env action indices
    rewards: np.ndarray  # [T, N] macro rewards
    dones: np.ndarray  # [T, N] the done flag that came with ``obs``
    macro_steps: np.ndarray  # [T, N] primitive steps each macro took
    next_obs: np.ndarray  # [N, obs_dim] the observations after the last step
    next_done: np.ndarray  # [N]
    perms: list | None = None  # one permutation of the T * N transitions per epoch; None: np.random


def peer_iteration(agent: PeerAgent, batch: PeerBatch, describe, num_actions: int, cfg, learning_rate_frac=1.0):
    """One reference update on ``batch``: the rollout's policy and value computations, GAE, the
    value phase and the policy phase. ``describe(obs)`` is the environment's obs -> text;
    ``cfg`` holds the PPO settings (a ``TrainConfig``). Returns metrics (means as ours logs
    them, and the seconds of the rollout, the value phase and the policy phase) and the
    rollout's log-probabilities and values."""
    from torch.distributions import Categorical

    T, N = batch.actions.shape
    B = T * N
    texts = lambda obs: [describe(o) for o in obs]
    actions = torch.tensor(np.asarray(batch.actions), dtype=torch.long)
    logprobs, values = torch.zeros(T, N), torch.zeros(T, N)
    clock = {"start": time.perf_counter(), "value_phase_s": 0.0, "policy_phase_s": 0.0}
    with torch.no_grad():
        for t in range(T):
            d = texts(batch.obs[t])
            logprobs[t] = Categorical(logits=agent.policy_logits(d, num_actions)).log_prob(actions[t])
            values[t] = agent.values([x.prompt for x in d])
        next_value = agent.values([x.prompt for x in texts(batch.next_obs)])

        rewards = torch.tensor(np.asarray(batch.rewards), dtype=torch.float32)
        dones = torch.tensor(np.asarray(batch.dones), dtype=torch.float32)
        steps = torch.tensor(np.asarray(batch.macro_steps), dtype=torch.float32)
        next_done = torch.tensor(np.asarray(batch.next_done), dtype=torch.float32)
        advantages, last = torch.zeros(T, N), torch.zeros(N)
        for t in reversed(range(T)):
            nonterminal = 1.0 - (next_done if t == T - 1 else dones[t + 1])
            next_v = next_value if t == T - 1 else values[t + 1]
            discount = torch.pow(cfg.gamma, steps[t])
            delta = rewards[t] + discount * next_v * nonterminal - values[t]
            advantages[t] = last = delta + discount * cfg.gae_lambda * nonterminal * last
        returns = advantages + values
    clock["rollout_s"] = time.perf_counter() - clock["start"]

    b_obs = np.asarray(batch.obs).reshape(B, -1)
    b_actions, b_logprobs, b_values = actions.reshape(B), logprobs.reshape(B), values.reshape(B)
    b_advantages, b_returns = advantages.reshape(B), returns.reshape(B)
    lora, critic = agent.lora_parameters(), list(agent.critic.parameters())
    policy_opt = torch.optim.AdamW(lora, lr=cfg.policy_learning_rate * learning_rate_frac, eps=1e-5, weight_decay=0)
    value_opt = torch.optim.Adam(critic, lr=cfg.value_learning_rate * learning_rate_frac, eps=1e-5)
    val_size, pol_size = B // cfg.value_num_minibatches, B // cfg.policy_num_minibatches
    accum, clip = cfg.gradient_accumulation_steps, cfg.clip_coef
    v_losses, groups, stopped = [], [], False
    for epoch in range(cfg.update_epochs):
        if stopped:
            break
        if batch.perms is None:
            perm = np.arange(B)
            np.random.shuffle(perm)
        else:
            perm = np.array(batch.perms[epoch])  # a writable copy: torch indexes with it
        phase = time.perf_counter()
        for start in range(0, B, val_size):
            idx = perm[start:start + val_size]
            new_v = agent.values([describe(o).prompt for o in b_obs[idx]])
            unclipped = (new_v - b_returns[idx]) ** 2
            if cfg.clip_vloss:
                v_clipped = b_values[idx] + torch.clamp(new_v - b_values[idx], -clip, clip)
                v_loss = 0.5 * torch.max(unclipped, (v_clipped - b_returns[idx]) ** 2).mean()
            else:
                v_loss = 0.5 * unclipped.mean()
            loss = cfg.vf_coef * v_loss
            value_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(critic, cfg.max_grad_norm)
            value_opt.step()
            v_losses.append(loss.item())
        clock["value_phase_s"] += time.perf_counter() - phase
        phase = time.perf_counter()

        policy_opt.zero_grad()
        group = []
        for k, start in enumerate(range(0, B, pol_size)):
            idx = perm[start:start + pol_size]
            dist = Categorical(logits=agent.policy_logits(texts(b_obs[idx]), num_actions))
            log_ratio = dist.log_prob(b_actions[idx]) - b_logprobs[idx]
            ratio = log_ratio.exp()
            adv = b_advantages[idx]
            if cfg.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
            entropy = dist.entropy().mean()
            ((pg - cfg.ent_coef * entropy) / accum).backward()
            with torch.no_grad():
                group.append(dict(pg_loss=pg.item(), entropy=entropy.item(),
                                  approx_kl=((ratio - 1) - log_ratio).mean().item(),
                                  clipfrac=((ratio - 1.0).abs() > clip).float().mean().item()))
            if (k + 1) % accum == 0:
                kl = sum(g["approx_kl"] for g in group) / accum
                stopped = cfg.target_kl is not None and kl > cfg.target_kl
                groups.append(dict({key: sum(g[key] for g in group) / accum for key in group[0]},
                                   approx_kl=kl, stepped=not stopped))
                group = []
                if stopped:
                    policy_opt.zero_grad()
                    break
                nn.utils.clip_grad_norm_(lora, cfg.max_grad_norm)
                policy_opt.step()
                policy_opt.zero_grad()
        clock["policy_phase_s"] += time.perf_counter() - phase
    metrics = {key: sum(g[key] for g in groups) / max(len(groups), 1)
               for key in ("pg_loss", "entropy", "approx_kl", "clipfrac")}
    metrics.update(value_loss=sum(v_losses) / len(v_losses), policy_steps=sum(g["stepped"] for g in groups),
                   early_stopped=stopped, **{k: v for k, v in clock.items() if k != "start"})
    return metrics, {"logp": logprobs.numpy(), "value": values.numpy()}


def export_to_torch(model, tokenizer, directory):
    """transformers' ``LlamaForCausalLM`` and tokenizer holding the base weights of our model
    (for models that have no files of their own, like the tiny random one)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from twosome_jax.model.loading import save_hf_checkpoint

    save_hf_checkpoint(model, directory, tokenizer)
    return (LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(directory))


def torch_model(spec: str, seed: int):
    """The base model of ``spec`` in transformers, float32, from the files ours loads (a GGUF
    through transformers' own GGUF reader, a checkpoint directory), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twosome_jax.hub import smollm2_gguf_path
    from twosome_jax.model import load_model
    from twosome_jax.model.loading import resolve_spec
    from twosome_jax.tokenizer import load_gguf_tokenizer

    kind, location = resolve_spec(spec)
    if kind in ("smollm2", "gguf"):
        path = smollm2_gguf_path() if kind == "smollm2" else Path(location)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        return model.eval(), load_gguf_tokenizer(path)
    if kind == "hf-dir":
        return (AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32).eval(),
                AutoTokenizer.from_pretrained(location))
    _, model, tokenizer = load_model(spec, dtype="float32", seed=seed)
    return export_to_torch(model, tokenizer, tempfile.mkdtemp(prefix="peer_torch_"))


def our_batch(trainer, frozen, state):
    """Our rollout from ``state`` (the one ``trainer.iteration`` starts with) as a
    :class:`PeerBatch`, with the permutations our update then draws, and the rollout itself."""
    import jax

    rolled, traj, _ = jax.jit(trainer.rollout)(frozen, state)
    _, k_update = jax.random.split(rolled.rng)  # as Trainer.iteration splits it for ppo_update
    B = trainer.num_envs * trainer.num_steps
    perms = [np.asarray(jax.random.permutation(k, B)) for k in jax.random.split(k_update, trainer.hyper.update_epochs)]
    batch = PeerBatch(obs=np.asarray(traj.obs), actions=np.asarray(traj.action), rewards=np.asarray(traj.reward),
                      dones=np.asarray(traj.done), macro_steps=np.asarray(traj.macro_steps),
                      next_obs=np.asarray(rolled.obs), next_done=np.asarray(rolled.done), perms=perms)
    return batch, jax.tree.map(np.asarray, traj)


def _spread(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def measure_task(task: str, model_spec: str, repeats: int, log=print) -> dict:
    """Ours and the peer on one task, alternating, ``repeats`` timed rounds each."""
    import jax

    from train_setup import make_setup, variant

    cfg, setup, reach, S = make_setup(model_spec, task=task)
    trainer, frozen = variant(cfg, setup, reach, S, "default")
    state0 = jax.jit(trainer.init)(jax.random.key(0))
    batch, traj = our_batch(trainer, frozen, state0)
    model, tokenizer = torch_model(model_spec, cfg.seed)
    peer = PeerAgent(model, tokenizer, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                     lora_targets=tuple(cfg.lora_targets), critic_hidden=tuple(cfg.critic_hidden),
                     normalization=cfg.normalization)
    peer.load_ours(jax.device_get(state0.actor), jax.device_get(state0.critic))
    start = peer.snapshot()
    env = setup.env

    iteration = jax.jit(trainer.iteration)
    t = time.perf_counter()
    jax.block_until_ready(iteration(frozen, state0))
    compile_s = time.perf_counter() - t
    log(f"{task}: ours compiled and ran once in {compile_s:.1f} s")
    ours_s, peer_s, phases, load = [], [], [], []
    for r in range(repeats):  # both sides always start from the same state: every round does the same work
        t = time.perf_counter()
        _, ours_metrics = jax.block_until_ready(iteration(frozen, state0))
        ours_s.append(time.perf_counter() - t)
        peer.restore(start)
        t = time.perf_counter()
        peer_metrics, peer_rollout = peer_iteration(peer, batch, env.describe, env.num_actions, cfg)
        peer_s.append(time.perf_counter() - t)
        phases.append({k: peer_metrics[k] for k in ("rollout_s", "value_phase_s", "policy_phase_s")})
        load.append(os.getloadavg()[0])
        log(f"{task} round {r + 1}/{repeats}: ours {ours_s[-1]:.1f} s, peer {peer_s[-1]:.1f} s, load {load[-1]:.2f}")
    keys = ("value_loss", "pg_loss", "entropy", "approx_kl", "clipfrac", "policy_steps", "early_stopped")
    ratios = [p / o for p, o in zip(peer_s, ours_s)]
    return {"env_steps": trainer.num_envs * trainer.num_steps, "num_actions": env.num_actions,
            "ours_compile_and_first_s": compile_s, "ours_s": ours_s, "peer_s": peer_s, "speedup": ratios,
            "ours": _spread(ours_s), "peer": _spread(peer_s), "speedup_spread": _spread(ratios),
            "peer_phases_s": phases, "loadavg_1m_after_rounds": load,
            "ours_metrics": {k: float(ours_metrics[k]) for k in keys},
            "peer_metrics": {k: float(peer_metrics[k]) for k in keys},
            "rollout_max_abs_diff": {"logp": float(np.abs(peer_rollout["logp"] - traj.logp).max()),
                                     "value": float(np.abs(peer_rollout["value"] - traj.value).max())}}


def table(report: dict) -> str:
    lines = ["| task | actions | ours s/iteration | peer s/iteration | speed-up (peer/ours) | ours / peer env steps/s | "
             "policy steps (ours / peer) | value loss (ours / peer) | approx KL (ours / peer) | rollout max abs diff (logp / value) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rng = lambda s, f: f"{s['median']:{f}} ({s['min']:{f}}-{s['max']:{f}})"
    for task, r in report["tasks"].items():
        o, p = r["ours_metrics"], r["peer_metrics"]
        lines.append(
            f"| {task} | {r['num_actions']} | {rng(r['ours'], '.1f')} | {rng(r['peer'], '.1f')} | "
            f"**{r['speedup_spread']['median']:.2f}x** ({r['speedup_spread']['min']:.2f}-{r['speedup_spread']['max']:.2f}) | "
            f"{r['env_steps'] / r['ours']['median']:.2f} / {r['env_steps'] / r['peer']['median']:.3f} | "
            f"{o['policy_steps']:.0f} / {p['policy_steps']:.0f} | {o['value_loss']:.4g} / {p['value_loss']:.4g} | "
            f"{o['approx_kl']:.2e} / {p['approx_kl']:.2e} | "
            f"{r['rollout_max_abs_diff']['logp']:.1e} / {r['rollout_max_abs_diff']['value']:.1e} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks (envs_jax.registry)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per side and task")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="model spec, as for twosome_jax.train")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of each side")
    ap.add_argument("--json", default=None, help="result file (default benchmarks/results/peer_torch_DATE_COMMIT.json)")
    args = ap.parse_args(argv)
    try:
        from envs_jax.registry import task_name

        tasks = [task_name(t) for t in args.tasks]
        if args.repeats < 1:
            raise PeerError(f"--repeats must be at least 1, got {args.repeats}")
        cores = sorted(os.sched_getaffinity(0))
        if not 1 <= args.threads <= len(cores):
            raise PeerError(f"--threads must be between 1 and the {len(cores)} usable cores, got {args.threads}")
    except ValueError as e:
        ap.exit(2, f"peer_torch.py: error: {e}\n")
    os.sched_setaffinity(0, cores[:args.threads])  # before JAX starts: its CPU pool takes the usable cores
    torch.set_num_threads(args.threads)
    import jax

    report = {**provenance(), "model": args.model, "jax": jax.__version__, "torch": torch.__version__,
              "threads": args.threads, "cores": sorted(os.sched_getaffinity(0)), "repeats": args.repeats,
              "command": "python benchmarks/peer_torch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "tasks": {}}
    path = args.json or REPO / "benchmarks" / "results" / (
        f"peer_torch_{report['date_utc'][:10]}_{report['commit'][:7]}.json")
    for task in tasks:  # the file is rewritten after each task: a long run killed late keeps what it measured
        report["tasks"][task] = measure_task(task, args.model, args.repeats, log=lambda m: print(m, file=sys.stderr))
        report["loadavg_at_end"] = list(os.getloadavg())
        Path(path).write_text(json.dumps(report, indent=1))
    print(table(report))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
