import hashlib
import io
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
    "answer_start true (JSON's true is not position 1)": (
        mutate(lambda d: qa(d)["answers"][0].update(answer_start=True)), "field 'answer_start' is bool, expected int"),
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
    ("sentence_breaks", [[0, 21], [22, True]], r"sentence_breaks\[1\] is \[22, True\], expected \[start, end\]"),
    # swapped, the answer would land in the second sentence: a wrong relevance label, not a known flaw
    ("sentence_breaks", [[22, 34], [0, 21]], r"sentence_breaks\[1\] is \[0, 21\], expected \[start, end\] with "
                                             r"34 <= start < end <= 34 \(the breaks run in order"),
    ("sentence_breaks", [[0, 21], [22, 90]], r"sentence_breaks\[1\] is \[22, 90\], .* <= 34"),
    ("sentence_breaks", [[0, 0], [0, 34]], r"sentence_breaks\[0\] is \[0, 0\]"),
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


@pytest.fixture
def offline_server(tmp_path, monkeypatch):
    """Downloads served from the data directory, as the official URLs hold them (MLQA and TyDi dev as their
    archives); the URLs fetched are recorded, and ``broken`` URLs fail ``broken[url]`` times first."""
    import tarfile
    import zipfile
    root = data.find_data_dir()
    if root is None:
        pytest.skip("no data directory")
    served = {}
    for name in ("xquad", "xquad-r", "mlqa-r"):
        src = data.SOURCES[name]
        served |= {src.url.format(lang=lang): (root / src.relpath(lang)).read_bytes() for lang in src.languages}
    for name, url in (("mlqa", data.SOURCES["mlqa"].url), ("tydi-dev", data.SOURCES["tydi-dev"].url)):
        src, buf = data.SOURCES[name], io.BytesIO()
        members = {src.member.format(lang=lang, name=data.TYDI_NAMES.get(lang, lang)): root / src.relpath(lang)
                   for lang in src.languages}
        if url.endswith(".zip"):
            with zipfile.ZipFile(buf, "w") as z:
                for member, path in members.items():
                    z.write(path, member)
        else:
            with tarfile.open(fileobj=buf, mode="w:gz") as t:
                for member, path in members.items():
                    t.add(path, member)
        served[url] = buf.getvalue()
    fetched, broken = [], {}

    def urlopen(url, timeout=None):
        fetched.append(url)
        if broken.get(url):
            broken[url] -= 1
            raise OSError("connection reset")
        return io.BytesIO(served[url])

    monkeypatch.setattr(data, "find_data_dir", lambda d=None: None)
    monkeypatch.setenv("HYBRIDLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    return served, fetched, broken


def test_downloads_fetch_each_archive_once_and_check_known_checksums(offline_server, tmp_path):
    served, fetched, _ = offline_server
    mlqa = load_all("mlqa")
    assert fetched == [data.SOURCES["mlqa"].url]  # one archive for the 7 languages
    tydi = load_all("tydi-dev")
    assert fetched.count(data.SOURCES["tydi-dev"].url) == 1
    assert len(mlqa) == 7 and sum(map(len, mlqa.values())) == 4199 and sum(map(len, tydi.values())) == 5077
    load("xquad-r", "de")
    cached = tmp_path / "data" / "xquad-r" / "de.json"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == data.known_checksums()["xquad-r/de.json"]


def test_a_download_with_the_wrong_checksum_writes_nothing(offline_server, tmp_path):
    served, _, _ = offline_server
    url = data.SOURCES["xquad"].url.format(lang="en")
    served[url] = served[url].replace(b"Denver", b"Boston", 1)
    with pytest.raises(DataError, match=r"xquad/xquad.en.json has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64} "
                                        r"\(the download is corrupted or the official file changed\)"):
        load("xquad", "en")
    assert not list(tmp_path.rglob("*.json"))


def test_a_damaged_archive_in_the_cache_is_named_deleted_and_fetched_again(offline_server, tmp_path):
    served, fetched, _ = offline_server
    url = data.SOURCES["mlqa"].url
    good, served[url] = served[url], served[url][: len(served[url]) // 2]  # a download cut short
    with pytest.raises(DataError, match=r"downloads/MLQA_V1.zip \(downloaded from .*\): damaged or incomplete "
                                        r"archive .* it was deleted, so the next run downloads it again"):
        load("mlqa", "de")
    assert not list((tmp_path / "downloads").iterdir()) and not list(tmp_path.rglob("*.json"))
    served[url] = good
    assert len(load("mlqa", "de")) > 0 and fetched == [url, url]


def test_a_failed_download_is_retried_and_failing_for_good_says_what_to_do(offline_server, tmp_path):
    _, fetched, broken = offline_server
    url = data.SOURCES["xquad"].url.format(lang="en")
    broken[url] = 2
    assert len(load("xquad", "en")) == 1190 and fetched == [url] * 3
    url = data.SOURCES["xquad"].url.format(lang="de")
    broken[url] = 3
    with pytest.raises(DataError, match="download failed after 3 attempts .* set HYBRIDLIB_DATA_DIR to a directory "
                                        "laid out as book/data.md in the repository"):
        load("xquad", "de")
    assert not (tmp_path / "data" / "xquad" / "xquad.de.json").exists()  # nothing half-written
