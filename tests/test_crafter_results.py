"""scripts/crafter_results.py on hand-made run directories (the files the guided PPO and RLAdapter
trainers write: config.yaml from the config classes, metrics.jsonl, episodes.jsonl and
stage_K/summary.json in their trainers' formats), against figures worked out by hand: Crafter
scores (danijar/crafter analysis/common.py: geometric mean of 1 + success % minus 1), budgets,
per-stage comprehension means and where the time goes."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from envs_jax.crafter.constants import ACHIEVEMENTS
from twosome_jax.guided_config import GuidedConfig, save_guided_config
from twosome_jax.rladapter_config import RLAdapterConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def crafter_results(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # the script imports scripts/results.py
    spec = importlib.util.spec_from_file_location("crafter_results", REPO / "scripts" / "crafter_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "assemble", lambda: pytest.fail("docs/RESULTS.md assembled from a test"))
    return module


def episode(seed, env_step, ret, *unlocked):
    """A line of episodes.jsonl (guided_train._episode_lines), ``unlocked`` counted once each."""
    return {"seed": seed, "env_step": env_step, "achievements": {a: int(a in unlocked) for a in ACHIEVEMENTS},
            "return": ret, "length": 100}


def write_jsonl(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))


def record(iteration, env_steps, wall_time, steps_per_second, **extra):
    """A metrics.jsonl line as RunLogger writes the trainers' metrics (two seeds)."""
    return {"iteration": iteration, "env_steps": env_steps, "wall_time": wall_time,
            "steps_per_second": steps_per_second, "crafter_score": 1.0, "crafter_score_per_seed": [0.5, 1.5],
            "mean_return": 2.0, "mean_return_per_seed": [1.0, 3.0], **extra}


def query(adapter, decision, situation, score):
    parts = {"situation": situation, "score": score, "adapter": adapter, "decision": decision}
    return {"query_seconds": sum(parts.values()), **{f"query_{k}_seconds": v for k, v in parts.items()}}


def stage(number, stage_steps, per_seed, sft, closing, sft_seconds=0.0):
    """A stage_K/summary.json (rladapter_train.stage_summary, plus its closing and SFT seconds)."""
    return {"stage": number, "env_steps": [(number - 1) * stage_steps, number * stage_steps], "queries": 80,
            "comprehension_score": sum(per_seed) / len(per_seed), "comprehension_score_per_seed": per_seed,
            "subgoal_histogram": {}, "sft": sft, "samples": [], "seconds": {"closing": closing, "sft": sft_seconds}}


def sft(first, last, eval_loss):
    return {"train_pairs": 7, "eval_pairs": 1, "train_loss": (first + last) / 2, "train_loss_first": first,
            "train_loss_last": last, "eval_loss": eval_loss, "train_losses": [first, last]}


@pytest.fixture
def runs(tmp_path):
    """Three arms of 2 seeds, 4,000 env steps per iteration:

    * ppo: guided, a 6,000-step budget (its second iteration runs to 8,000; the episode after
      6,000 is not counted); seed 0: 4 episodes, collect_wood in 2, eat_cow in 1; seed 1: 2
      episodes, one with collect_wood, one with eat_cow;
    * frozen: RLAdapter, 2 stages of 4,000, no SFT, finished;
    * full: RLAdapter, 3 stages of 4,000 with SFT, stopped after stage 2 (8,000 of 12,000).
    """
    ppo, frozen, full = tmp_path / "ppo", tmp_path / "frozen", tmp_path / "full"
    for d in (ppo, frozen, full):
        d.mkdir()
    save_guided_config(GuidedConfig(instruction="none", total_timesteps=6000, num_seeds=2, num_envs=4, num_steps=1000),
                       ppo / "config.yaml")
    write_jsonl(ppo / "episodes.jsonl", [
        episode(0, 1000, 1.0, "collect_wood"), episode(1, 1500, 5.0, "collect_wood"), episode(0, 2000, 2.0),
        episode(0, 3000, 3.0, "collect_wood"), episode(0, 5500, 4.0, "eat_cow"), episode(1, 6000, 7.0, "eat_cow"),
        episode(0, 7000, 9.0, *ACHIEVEMENTS)])
    # 50 s per iteration (4000 / 80 steps/s), 10 s between them
    write_jsonl(ppo / "metrics.jsonl", [record(1, 4000, 100.0, 80.0), record(2, 8000, 160.0, 80.0)])

    save_guided_config(RLAdapterConfig(total_timesteps=4000, stages=2, num_seeds=2, adapter_sft=False,
                                       policy_encoder="random_linears"),
                       frozen / "config.yaml")
    write_jsonl(frozen / "episodes.jsonl", [episode(0, 3000, 1.0), episode(1, 7000, 2.0, "collect_sapling")])
    write_jsonl(frozen / "metrics.jsonl", [record(1, 4000, 0.0, 40.0, **query(10, 10, 1, 1)),
                                           record(2, 8000, 101.0, 40.0, **query(20, 20, 2, 2))])
    for k, per_seed in ((1, [0.1, 0.3]), (2, [0.6, 0.6])):
        (frozen / f"stage_{k}").mkdir()
        (frozen / f"stage_{k}" / "summary.json").write_text(json.dumps(stage(k, 4000, per_seed, None, 0.5)))

    save_guided_config(RLAdapterConfig(total_timesteps=4000, stages=3, num_seeds=2, sft_max_pairs=8),
                       full / "config.yaml")
    write_jsonl(full / "episodes.jsonl", [episode(0, 2000, 1.5), episode(1, 6000, 0.5, "collect_wood")])
    # iteration 1 (compiles) ends at 1000 s; stage 1 closes (30 s); iteration 2 takes 100 s
    # (40 adapter, 25 decision, 3 situation, 2 comprehension score, 30 env and PPO) and ends at
    # 1135 s; 5 s between iterations; stage 2 closes after it (45 s); the closings' SFT: 18 and 42 s
    write_jsonl(full / "metrics.jsonl", [record(1, 4000, 1000.0, 4.0, **query(500, 500, 50, 50)),
                                         record(2, 8000, 1135.0, 40.0, **query(40, 25, 3, 2))])
    for k, per_seed, losses, closing, sft_seconds in ((1, [0.2, 0.4], (2.5, 1.25, 1.5), 30.0, 18.0),
                                                      (2, [0.5, 0.9], (1.0, 0.75, None), 45.0, 42.0)):
        (full / f"stage_{k}").mkdir()
        (full / f"stage_{k}" / "summary.json").write_text(json.dumps(stage(k, 4000, per_seed, sft(*losses), closing, sft_seconds)))
    return {"ppo": ppo, "frozen": frozen, "full": full}


def tables(text: str) -> dict[str, dict[str, list[list[str]]]]:
    """Each markdown table of ``text`` by its header's last column: {first cell: [row cells, ...]}."""
    out, block = {}, []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip("|").split("|")])
        elif block:
            rows = {}
            for cells in block[2:]:
                rows.setdefault(cells[0], []).append(cells)
            out[block[0][-1]] = rows
            block = []
    return out


def test_arms_section_by_hand(crafter_results, runs, tmp_path, capsys):
    out = tmp_path / "docs"
    command = "bash scripts/crafter_arms.sh 4000"
    rc = crafter_results.main(["--name", "crafter_arms", "--command", command, "--out", str(out),
                               *(f"{k}={v}" for k, v in runs.items())])
    assert rc == 0
    text = (out / "crafter_arms.md").read_text()
    assert (out / "crafter_arms.png").stat().st_size > 10_000
    assert not (out / "crafter.md").exists()
    assert f"Trained by `{command}`" in text
    assert ("`.venv/bin/python scripts/crafter_results.py --name crafter_arms "
            "--command 'bash scripts/crafter_arms.sh 4000' ppo=") in text
    assert ("Arms `frozen`, `full` are the RLAdapter mechanism with a 135M decision model (SmolLM2-135M-Instruct "
            "scoring the 31 sub-goals), not the paper's GPT-4; its numbers are not comparable with the "
            "paper's.") in text
    assert "Hafner" not in text and "scoreboard" not in text  # no published numbers beside ours
    t = tables(text)

    arms = t["wall-clock min per 1M steps (all seeds at once)"]
    ppo, frozen, full = arms["ppo"][0], arms["frozen"][0], arms["full"][0]
    assert ppo[1] == "PPO, no instruction input (`instruction: none`)"
    assert frozen[1] == ("RLAdapter: the adapter LM's analysis, frozen (`instruction: rladapter`, `adapter: lm`, "
                         "`adapter_sft: false`, `stages: 2`, `sft_max_pairs: none`, `policy_across_stages: carry`), "
                         "its instruction encoder's linear layers random (`policy_encoder: random_linears`)")
    assert full[1].startswith("RLAdapter: the adapter LM's analysis, fine-tuned after every stage (")
    assert full[1].endswith(")")  # the pretrained instruction encoder goes unsaid
    assert "`sft_max_pairs: 8`" in full[1] and "`sft_data: stage`" in full[1]
    # budgets: an RLAdapter run's total_timesteps is one stage's
    assert (ppo[2], frozen[2], full[2]) == ("6,000", "2 × 4,000 = 8,000", "3 × 4,000 = 12,000")
    assert (ppo[3], frozen[3], full[3]) == ("6,000", "8,000", "8,000 (of 12,000: in progress)")
    assert ppo[4] == "2 (seed 1)" and ppo[5] == "4, 2"  # the episode at 7,000 is past the budget
    # seed 0: wood 50 %, cow 25 %, the other 20 at 0 %; seed 1: wood 50 %, cow 50 %
    s0, s1 = (51 * 26) ** (1 / 22) - 1, (51 * 51) ** (1 / 22) - 1
    assert ppo[6] == f"{(s0 + s1) / 2:.2f} ± {abs(s0 - s1) / 2:.2f}" and ppo[7] == f"{s0:.2f}, {s1:.2f}"
    assert full[7] == f"0.00, {101 ** (1 / 22) - 1:.2f}"  # seed 1: collect_wood in its one episode
    # returns: seed 0 (1+2+3+4)/4 = 2.5, seed 1 (5+7)/2 = 6; last tenth (5,400, 6,000]: 4 and 7
    assert ppo[8] == "4.25 ± 1.75" and ppo[9] == "5.50 ± 1.50"
    # minutes per 1M: 60 s over 4,000 steps; full: 135 s + the 45 s closing after the last record
    assert ppo[10] == f"{60 / 4000 * 1e6 / 60:.1f}" and full[10] == f"{180 / 4000 * 1e6 / 60:.1f}"

    success = t["full"]
    assert success["collect_wood"][0][1:] == ["50.0 ± 0.0", "0.0 ± 0.0", "50.0 ± 50.0"]
    assert success["eat_cow"][0][1] == "37.5 ± 12.5"

    stages = t["rest of stage closing (min)"]
    f1, f2 = stages["full"][:2]
    assert f1[1:5] == ["1 of 3", "0-4,000", "80", "0.300 ± 0.100"]  # per-seed means 0.2, 0.4
    assert f1[6:] == ["7, 1", "2.500 → 1.250", "1.500", "0.3", "0.2"]  # SFT 18 s of the 30 s closing
    assert f2[1:5] == ["2 of 3", "4,000-8,000", "80", "0.700 ± 0.200"] and f2[8] == "n/a"
    assert stages["full"][2][1:3] == ["3 of 3", "not finished"]
    assert [r[4] for r in stages["frozen"]] == ["0.200 ± 0.100", "0.600 ± 0.000"]
    assert [r[6:9] for r in stages["frozen"]] == [["no SFT"] * 3] * 2
    assert [r[9:] for r in stages["frozen"]] == [["0.0", "0.0"]] * 2
    assert len(stages["frozen"]) == 2  # finished: no "not finished" row

    # full, over 4,000 steps: adapter 40 s, decision 25, other query 5, env+PPO 100 - 70 = 30,
    # SFT 18 + 42, the rest of the closings 30 + 45 - 60 = 15, between 135 - 100 - 30 = 5; total
    # 180 s (iteration 1's query time left out)
    def per_1m(seconds):  # minutes per 1M env steps of seconds over the 4,000 steps after iteration 1
        return seconds / 4000 * 1e6 / 60

    time = t["total"]
    expected = [f"{per_1m(s):.1f} ({100 * s / 180:.0f} %)" for s in (40, 25, 5, 30, 60, 15, 5)]
    assert time["full"][0][1:] == expected + [f"{per_1m(180):.1f}"]
    # frozen: 101 s; iteration 2 100 s (query 44 s); closing of stage 1 0.5 s, of stage 2 after it 0.5 s
    assert time["frozen"][0][4:] == [f"{per_1m(56):.1f} ({100 * 56 / 101.5:.0f} %)", "0.0 (0 %)", f"{per_1m(1):.1f} (1 %)",
                                     f"{per_1m(0.5):.1f} (0 %)", f"{per_1m(101.5):.1f}"]
    assert time["ppo"][0][1:] == ["-", "-", "-", f"{per_1m(50):.1f} (83 %)", "-", "-", f"{per_1m(10):.1f} (17 %)",
                                  f"{per_1m(60):.1f}"]
    assert "left as it is" in capsys.readouterr().err


def test_guided_section_keeps_its_layout(crafter_results, runs, tmp_path):
    out = tmp_path / "docs"
    assert crafter_results.main(["--out", str(out), f"ppo={runs['ppo']}"]) == 0
    text = (out / "crafter.md").read_text()
    assert text.startswith("## Crafter (RLAdapter's PPO agent, no adapter yet)\n")
    assert "![Crafter learning curves](results/crafter.png)" in text
    row = tables(text)["wall-clock min per 1M steps (all seeds at once)"]["ppo"][0]
    assert row[1] == ("`python -m twosome_jax.train --config configs/crafter_ppo.yaml --num-seeds 2 --seed 1 "
                      f"--run-dir {runs['ppo']}`")
    assert row[3:] == ["6,000", "4, 2", row[5], row[6], "4.25 ± 1.75", "5.50 ± 1.50", "250.0"]
    assert math.isclose(float(row[5].split(" ± ")[0]), ((51 * 26) ** (1 / 22) + 51 ** (2 / 22)) / 2 - 1, abs_tol=5e-3)


@pytest.mark.parametrize("args, message", [
    (["ppo"], "'ppo' is not LABEL=RUN_DIR"),
    (["ppo=/nonexistent"], "'ppo=/nonexistent' is not LABEL=RUN_DIR"),
    (["full={full}"], "arm 'full' is an RLAdapter run; accepted without --command: guided PPO runs only"),
    (["--command", "c", "a={ppo}", "a={full}"], "arm label 'a' is given twice"),
])
def test_bad_arguments(crafter_results, runs, tmp_path, capsys, args, message):
    args = [a.format(**runs) for a in args]
    assert crafter_results.main(["--out", str(tmp_path / "docs"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "docs").exists() or not any((tmp_path / "docs").iterdir())
