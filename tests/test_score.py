"""The scoring command: JSON schema, values against transformers' torch model, error handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twosome_jax import score
from twosome_jax.model import load_model, save_hf_checkpoint

PROMPT = "There is a cup on the table. You should"
ACTIONS = ["pick up the cup", "walk to the door", "sit on the sofa and watch TV"]


def _run(capsys, *argv):
    rc = score.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _argv(model, *extra):
    args = ["--model", model, "--prompt", PROMPT]
    for a in ACTIONS:
        args += ["--action", a]
    return [*args, *extra]


def test_json_schema(capsys):
    rc, out, _ = _run(capsys, *_argv("tiny-random", "--json"))
    assert rc == 0
    result = json.loads(out)  # exactly one JSON object on stdout
    assert set(result) == {"model", "actions", "policy"}
    assert result["model"] == "tiny-random"
    assert [r["action"] for r in result["actions"]] == ACTIONS
    for r in result["actions"]:
        assert set(r) == {"action", "tokens", "words", "logprob_sum", "logprob_token", "logprob_word"}
        assert r["words"] == len(r["action"].split())
        assert r["tokens"] >= 1 and r["logprob_sum"] < 0
        assert r["logprob_token"] == pytest.approx(r["logprob_sum"] / r["tokens"])
        assert r["logprob_word"] == pytest.approx(r["logprob_sum"] / r["words"])
    assert set(result["policy"]) == {"sum", "token", "word"}
    for key, field in (("sum", "logprob_sum"), ("token", "logprob_token"), ("word", "logprob_word")):
        p = np.asarray(result["policy"][key])
        assert p.shape == (3,) and p.sum() == pytest.approx(1.0)
        x = np.asarray([r[field] for r in result["actions"]])
        np.testing.assert_allclose(p, np.exp(x - x.max()) / np.exp(x - x.max()).sum(), rtol=1e-6)


def test_table_output(capsys):
    rc, out, _ = _run(capsys, *_argv("tiny-random"))
    assert rc == 0
    for a in ACTIONS:
        assert a in out
    assert "lp_sum" in out and "pi_word" in out


def test_values_match_transformers(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    _, model, tok = load_model("tiny-random", dtype="float32")
    save_hf_checkpoint(model, tmp_path, tok)
    rc, out, _ = _run(capsys, *_argv(str(tmp_path), "--json"))
    assert rc == 0
    result = json.loads(out)
    ref = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    n_prompt = len(tok(PROMPT)["input_ids"])
    for a, r in zip(ACTIONS, result["actions"]):
        ids = tok(PROMPT + " " + a)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(ref(torch.tensor([ids])).logits[0].float(), -1).numpy()
        want = sum(lp[t - 1, ids[t]] for t in range(n_prompt, len(ids)))
        assert r["tokens"] == len(ids) - n_prompt
        assert r["logprob_sum"] == pytest.approx(float(want), abs=1e-3)
    # the tiny tokenizer adds a BOS, which must stay part of the prompt
    assert tok(PROMPT)["input_ids"][0] == tok.bos_token_id


def test_batching_and_padding_do_not_change_scores():
    _, model, tok = load_model("tiny-random", dtype="float32")
    together = score.score_actions(model, tok, PROMPT, ACTIONS)
    for i, a in enumerate(ACTIONS):
        alone = score.score_actions(model, tok, PROMPT, [a], length_bucket=64)
        assert alone["actions"][0]["logprob_sum"] == pytest.approx(
            together["actions"][i]["logprob_sum"], abs=1e-4)


class _FakeTokenizer:
    pad_token_id = 0

    def __call__(self, text):
        # the prompt's last token merges with the following space: not a prefix
        return {"input_ids": [1, 2, 3] if text == "p" else [1, 2, 9, 4]}


def test_prefix_violation_is_clear():
    with pytest.raises(score.ScoreError, match="not a prefix"):
        score.score_actions(None, _FakeTokenizer(), "p", ["x"])  # rejected before any model runs


def test_errors_exit_2_with_one_line(capsys, tmp_path):
    rc, out, err = _run(capsys, *_argv(str(tmp_path / "nope.gguf")))
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "nope.gguf" in err
    rc, _, err = _run(capsys, "--model", "tiny-random", "--prompt", PROMPT, "--action", "  ")
    assert rc == 2 and "empty" in err
