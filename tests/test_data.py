import json

import pytest

from hybridlib import data
from hybridlib.data import DataError, load, load_all

from .conftest import needs_data

OFFICIAL = {"xquad": 1190 * 11, "xquad-r": 1190 * 11, "mlqa-r": 4199, "mlqa": 4199, "tydi-dev": 5077,
            "tydi-train": 8076}


@needs_data
@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_counts(name):
    recs = load_all(name)
    assert sum(map(len, recs.values())) == OFFICIAL[name]
    assert set(recs) == set(data.SOURCES[name].languages)


@needs_data
def test_segmented_counts():
    xr = load_all("xquad-r")
    assert {lang: len({r.paragraph for r in v}) for lang, v in xr.items()} == {lang: 240 for lang in xr}
    sentences = sum(len(r.sentences) for v in xr.values() for r in {r.paragraph: r for r in v}.values())
    assert sentences == 13014
    mr = load_all("mlqa-r")
    assert sum(len(r.sentences) for v in mr.values() for r in {r.paragraph: r for r in v}.values()) == 20534
    tydi = load_all("tydi-dev")
    assert len({(lang, r.context) for lang, v in tydi.items() for r in v}) == 4488


@needs_data
def test_answer_sentence_holds_the_answer():
    for r in load("xquad-r", "de") + load("mlqa-r", "zh"):
        assert r.answer_start >= 0 and r.context[r.answer_start:r.answer_start + len(r.answer)] == r.answer
        assert 0 <= r.answer_sentence < len(r.sentences)


@needs_data
def test_known_upstream_span_flaw_is_counted_not_fatal(caplog):
    load("xquad-r", "tr")
    assert "2 sentence spans differ" in caplog.text


# ---- bad input: each case is written into a small data directory in the official layout ----

def good_doc(segmented=False):
    par = {"context": "Paris is the capital. It is large.",
           "qas": [{"id": "q1", "question": "What is the capital?", "answers": [{"text": "Paris", "answer_start": 0}]}]}
    if segmented:
        par |= {"sentences": ["Paris is the capital.", "It is large."], "sentence_breaks": [[0, 21], [22, 34]]}
    return {"version": "1", "data": [{"title": "France", "paragraphs": [par]}]}


def write(tmp_path, name, lang, content):
    path = tmp_path / data.SOURCES[name].relpath(lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def mutate(fn, segmented=False):
    doc = good_doc(segmented)
    fn(doc)
    return doc


def qa(doc):
    return doc["data"][0]["paragraphs"][0]["qas"][0]


BAD = {
    "truncated JSON": (json.dumps(good_doc()).encode()[:40], "invalid JSON at line 1"),
    "empty file": (b"", "empty file"),
    "wrong encoding": (json.dumps(good_doc(), ensure_ascii=False).replace("Paris", "Pärïs").encode("latin-1"),
                       "not UTF-8"),
    "wrong top-level type": (b"[1, 2]", "top level is a JSON list"),
    "missing data": (b'{"version": "1"}', "missing 'data'"),
    "missing paragraphs": (mutate(lambda d: d["data"][0].pop("paragraphs")), "missing field 'paragraphs'"),
    "missing qas": (mutate(lambda d: d["data"][0]["paragraphs"][0].pop("qas")), r"paragraphs\[0\]: missing field 'qas'"),
    "missing question": (mutate(lambda d: qa(d).pop("question")), "id 'q1'.*missing field 'question'"),
    "missing id": (mutate(lambda d: qa(d).pop("id")), r"qas\[0\]: missing field 'id'"),
    "missing answers": (mutate(lambda d: qa(d).pop("answers")), "missing field 'answers'"),
    "empty question": (mutate(lambda d: qa(d).update(question="  ")), "id 'q1'.*empty question"),
    "answer offset outside context": (mutate(lambda d: qa(d)["answers"][0].update(answer_start=99)),
                                      "answer_start 99 .* outside the context of 34 characters"),
    "answer offset not matching text": (mutate(lambda d: qa(d)["answers"][0].update(answer_start=3)),
                                        "answer_start 3 points at 'is is', not the answer 'Paris'"),
    "duplicate question id": (mutate(lambda d: d["data"][0]["paragraphs"][0]["qas"].append(qa(d))),
                              "duplicate question id"),
    "question id of the wrong type": (mutate(lambda d: qa(d).update(id=7)), "field 'id' is int, expected str"),
    "no articles (a language silently lost)": (b'{"version": "1", "data": []}', "field 'data' is an empty list"),
    "empty answer text": (mutate(lambda d: qa(d)["answers"][0].update(text="", answer_start=0)),
                          r"\(id 'q1'\).answers\[0\]: field 'text' is empty"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_gets_a_clear_error(tmp_path, case):
    content, message = BAD[case]
    path = write(tmp_path, "xquad", "en", content)
    with pytest.raises(DataError, match=message) as err:
        load("xquad", "en", data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_sentence_breaks_not_covering_the_answer(tmp_path):
    doc = good_doc(segmented=True)
    doc["data"][0]["paragraphs"][0]["sentence_breaks"] = [[5, 21], [22, 34]]
    path = write(tmp_path, "xquad-r", "en", doc)
    with pytest.raises(DataError, match=f"{path}.*no sentence break covers answer_start 0"):
        load("xquad-r", "en", data_dir=tmp_path)


@pytest.mark.parametrize("field, value, message", [
    ("sentences", ["Paris is the capital.", 7], r"sentences\[1\] is int 7, expected a string"),
    ("sentences", [None, "It is large."], r"sentences\[0\] is NoneType None, expected a string"),
    ("sentence_breaks", [[0, 21], "22-34"], r"sentence_breaks\[1\] is '22-34', expected \[start, end\]"),
])
def test_malformed_sentences_are_refused_not_blamed_on_the_known_flaw(tmp_path, field, value, message):
    doc = good_doc(segmented=True)
    doc["data"][0]["paragraphs"][0][field] = value
    path = write(tmp_path, "xquad-r", "en", doc)
    with pytest.raises(DataError, match=message) as err:
        load("xquad-r", "en", data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_parallel_ids_must_match(tmp_path):
    write(tmp_path, "xquad", "en", good_doc())
    write(tmp_path, "xquad", "de", mutate(lambda d: qa(d).update(id="other")))
    with pytest.raises(DataError, match=r"xquad.de.json: question ids do not match the parallel en file \(1 extra"):
        load_all("xquad", ["en", "de"], data_dir=tmp_path)


def test_data_directory_missing_a_language(tmp_path):
    write(tmp_path, "xquad", "en", good_doc())
    with pytest.raises(DataError, match="xquad.de.json: missing; the data directory .* no xquad file for language 'de'"):
        load_all("xquad", ["en", "de"], data_dir=tmp_path)


def test_data_directory_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        load("xquad", "en", data_dir=tmp_path / "nowhere")


def test_unknown_language_and_dataset():
    with pytest.raises(ValueError, match="unknown language 'xx' for xquad; valid: ar, de"):
        load("xquad", "xx")
    with pytest.raises(ValueError, match="unknown dataset 'squad'; valid: xquad, xquad-r"):
        load("squad", "en")


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "find_data_dir", lambda d=None: None)
    monkeypatch.setenv("HYBRIDLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DataError, match="download failed .* set HYBRIDLIB_DATA_DIR"):
        load("xquad", "en")
    assert not list(tmp_path.rglob("*.json"))  # nothing half-written
