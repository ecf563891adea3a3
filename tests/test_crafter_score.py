"""The Crafter score (envs_jax/crafter/score.py) on synthetic achievement tables, against values
worked out by hand from Crafter's formulas (danijar/crafter analysis/common.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from envs_jax.crafter import score
from envs_jax.crafter.constants import ACHIEVEMENTS

N = len(ACHIEVEMENTS)


def test_all_zero_and_all_hundred():
    assert score.crafter_score(np.zeros(N)) == 0.0
    assert score.crafter_score(np.full(N, 100.0)) == pytest.approx(100.0, abs=1e-12)
    # every episode unlocks everything: 100 %; none: 0 %
    assert score.crafter_score(score.success_rates(np.ones((7, N)))) == pytest.approx(100.0, abs=1e-12)
    assert score.crafter_score(score.success_rates(np.zeros((7, N)))) == 0.0


def test_mixed_cases_by_hand():
    # half the achievements at 100 %, half at 0 %: exp(11 ln 101 / 22) - 1 = sqrt(101) - 1
    rates = np.array([100.0] * 11 + [0.0] * 11)
    assert score.crafter_score(rates) == pytest.approx(math.sqrt(101) - 1, rel=1e-12)
    # 4 episodes; collect_wood unlocked in two of them (counts 3 and 1), eat_cow in one:
    # s_wood = 50 %, s_cow = 25 %, the other 20 are 0 %  ->  (51 * 26) ** (1/22) - 1
    table = np.zeros((4, N))
    table[0, ACHIEVEMENTS.index("collect_wood")] = 3
    table[2, ACHIEVEMENTS.index("collect_wood")] = 1
    table[3, ACHIEVEMENTS.index("eat_cow")] = 1
    rates = score.success_rates(table)
    assert rates[ACHIEVEMENTS.index("collect_wood")] == 50.0 and rates[ACHIEVEMENTS.index("eat_cow")] == 25.0
    assert rates.sum() == 75.0
    assert score.crafter_score(rates) == pytest.approx((51 * 26) ** (1 / 22) - 1, rel=1e-12)
    # the same from totals: episodes in which each was unlocked, and the episode count
    with_ = np.zeros(N)
    with_[ACHIEVEMENTS.index("collect_wood")], with_[ACHIEVEMENTS.index("eat_cow")] = 2, 1
    np.testing.assert_array_equal(score.rates_from_totals(with_, 4), rates)
    # per-seed rows at once
    both = score.crafter_score(np.stack([rates, np.zeros(N)]))
    np.testing.assert_allclose(both, [(51 * 26) ** (1 / 22) - 1, 0.0], rtol=1e-12)


def test_not_the_mean_of_per_episode_scores():
    """craftax's info["score"] is the geometric mean of one episode's 0/100 values; averaging it
    over episodes is not the Crafter score. Two episodes, one unlocking only collect_wood, the
    other only eat_cow: the Crafter score is (51 * 51) ** (1/22) - 1, the mean of per-episode
    scores 101 ** (1/22) - 1."""
    table = np.zeros((2, N))
    table[0, ACHIEVEMENTS.index("collect_wood")] = 1
    table[1, ACHIEVEMENTS.index("eat_cow")] = 1
    per_episode = [score.crafter_score(100.0 * (row >= 1)) for row in table]
    assert np.mean(per_episode) == pytest.approx(101 ** (1 / 22) - 1, rel=1e-12)
    assert score.crafter_score(score.success_rates(table)) == pytest.approx(51 ** (2 / 22) - 1, rel=1e-12)


def test_over_seeds_and_empty_runs():
    mean, std = score.mean_std([1.0, 2.0, 3.0])
    assert (mean, std) == pytest.approx((2.0, math.sqrt(2 / 3)))  # population std
    assert np.isnan(score.success_rates(np.zeros((0, N)))).all()
    assert np.isnan(score.crafter_score(score.rates_from_totals(np.zeros(N), 0)))
    assert score.mean_std([np.nan, 4.0]) == (4.0, 0.0)  # a seed without episodes is left out


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="percentages"):
        score.crafter_score(np.full(N, 0.5) * 300)
    with pytest.raises(ValueError, match="achievements"):
        score.rates_from_totals(np.zeros(5), 3)


def _line(seed, step, unlocked):
    return {"seed": seed, "env_step": step, "return": 1.0, "length": 10,
            "achievements": {a: int(a in unlocked) for a in ACHIEVEMENTS}}


def test_episodes_file_budget_and_cli(tmp_path, capsys):
    lines = [_line(0, 100, {"collect_wood"}), _line(0, 300, {"collect_wood", "eat_cow"}),
             _line(1, 150, set()), _line(0, 2_000, {"wake_up"})]
    path = tmp_path / score.EPISODES_FILE
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"seed": 0, "env_st')  # cut-off last line
    records = score.read_episodes(path)
    assert len(records) == 4
    tables = score.episode_table(records, budget=1_000)
    assert sorted(tables) == [0, 1] and tables[0].shape == (2, N) and tables[1].shape == (1, N)
    assert score.crafter_score(score.success_rates(tables[0])) == pytest.approx((101 * 51) ** (1 / 22) - 1)
    assert score.main([str(tmp_path), "--budget", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["episodes"] for r in out["seeds"]] == [2, 1]
    assert out["score_mean"] == pytest.approx(((101 * 51) ** (1 / 22) - 1) / 2)
    assert score.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
