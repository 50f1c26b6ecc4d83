"""Benchmark loaders: XQuAD, XQuAD-R, MLQA-R, MLQA and TyDi-QA GoldP into typed, validated records.

Every file is SQuAD-style JSON (``data -> paragraphs -> qas``). Loaders read the
data directory (see ``hybridlib.paths`` and ``book/data.md``) or, when there is
none, download the official files into the user cache: each archive once, with
retries, every file checked against its known SHA-256 where one is known
(``checksums.sha256``). Whatever is wrong with a file is reported as a
:class:`DataError` naming the file, the record and the problem.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import time
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HybridError
from .paths import atomic_write_bytes, cache_dir, find_data_dir

log = logging.getLogger(__name__)

XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MLQA_LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")
TYDI_NAMES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
              "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu"}
_LAREQA = "https://raw.githubusercontent.com/google-research-datasets/lareqa"


class DataError(HybridError, ValueError):
    """A benchmark file that cannot be used as it is; the message names the file, record and problem."""


@dataclass(frozen=True)
class Source:
    """Where one benchmark lives: its languages, its path in the data directory and its official URL."""
    name: str
    languages: tuple[str, ...]
    path: str  # relative to the data directory; ``{lang}`` or ``{name}`` (TyDi's language names)
    url: str  # the official file, or an archive holding it
    member: str = ""  # the file's path inside the archive, when ``url`` is one
    segmented: bool = False  # has ``sentences`` and ``sentence_breaks``
    parallel: bool = False  # every language holds the same question ids

    def relpath(self, lang: str) -> str:
        return self.path.format(lang=lang, name=TYDI_NAMES.get(lang, lang))


SOURCES = {s.name: s for s in (
    Source("xquad", XQUAD_LANGS, "xquad/xquad.{lang}.json",
           "https://raw.githubusercontent.com/deepmind/xquad/60cac41/xquad.{lang}.json", parallel=True),
    Source("xquad-r", XQUAD_LANGS, "xquad-r/{lang}.json", _LAREQA + "/9bc8c7f/xquad-r/{lang}.json",
           segmented=True, parallel=True),
    Source("mlqa-r", MLQA_LANGS, "mlqa-r/{lang}.json", _LAREQA + "/354d67d/mlqa-r/{lang}.json", segmented=True),
    Source("mlqa", MLQA_LANGS, "mlqa/dev/dev-context-{lang}-question-{lang}.json",
           "https://dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip", member="MLQA_V1/dev/dev-context-{lang}-question-{lang}.json"),
    Source("tydi-dev", tuple(TYDI_NAMES), "tydiqa-goldp/dev/tydiqa-goldp-dev-{name}.json",
           "https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.tgz",
           member="tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-{name}.json"),
    Source("tydi-train", ("en", "ko", "sw"), "tydiqa-goldp/train/{name}_tydiqa_train.json",
           "https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-train.json"),
)}


@dataclass(frozen=True)
class QA:
    """One question with its gold answer, as a benchmark file holds it.

    ``paragraph`` numbers the file's paragraphs from 0; ``answer_sentence`` is the
    index in ``sentences`` of the sentence holding the answer's first character
    (-1 for files without sentence segmentation).
    """
    dataset: str
    lang: str
    qid: str
    question: str
    title: str
    paragraph: int
    context: str
    answer: str
    answer_start: int
    sentences: tuple[str, ...] = ()
    answer_sentence: int = -1


def source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(SOURCES)}")
    return SOURCES[name]


def check_language(name: str, lang: str) -> None:
    langs = source(name).languages
    if lang not in langs:
        raise ValueError(f"unknown language {lang!r} for {name}; valid: {', '.join(langs)}")


def data_file(name: str, lang: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The path of one benchmark file, downloading it into the cache when no data directory has it."""
    check_language(name, lang)
    src = SOURCES[name]
    root = find_data_dir(data_dir)
    if root is not None:
        path = root / src.relpath(lang)
        if not path.is_file():
            raise DataError(f"{path}: missing; the data directory {root} has no {name} file for language {lang!r}")
        return path
    path = cache_dir() / "data" / src.relpath(lang)
    if not path.is_file():
        if not download:
            raise DataError(f"{path}: missing and downloads are off; set HYBRIDLIB_DATA_DIR to a data directory")
        _download(src, lang, path)
    return path


DATA_LAYOUT = "book/data.md in the repository (the data layout)"
CHECKSUMS = Path(__file__).with_name("checksums.sha256")


def known_checksums() -> dict[str, str]:
    """SHA-256 of the files whose official bytes are known, by path in the data directory."""
    return {path: digest for digest, path in (line.split() for line in CHECKSUMS.read_text().splitlines() if line)}


def fetch(url: str, remedy: str | None = None, attempts: int = 3, wait: float = 2.0) -> bytes:
    """The bytes at ``url``, retried with growing waits; failing for good, a DataError saying what to do
    (``remedy``; by default, the data directory to use offline)."""
    for attempt in range(1, attempts + 1):
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.read()
        except OSError as e:
            if attempt == attempts:
                raise DataError(f"{url}: download failed after {attempts} attempts ({e}); " + (remedy or (
                    f"offline, set HYBRIDLIB_DATA_DIR to a directory laid out as {DATA_LAYOUT} describes"))) from e
            log.warning("%s: %s; retrying (%d of %d)", url, e, attempt + 1, attempts)
            time.sleep(wait * 2 ** (attempt - 1))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _shared(url: str) -> Path:
    """A download that serves several files (an archive, TyDi's one training file): fetched once into the
    cache and read from there afterwards."""
    path = cache_dir() / "downloads" / url.rsplit("/", 1)[1]
    if not path.is_file():
        atomic_write_bytes(path, fetch(url))
    return path


def _unpack(url: str, path: Path, member: str | None) -> bytes:
    """``member`` of the cached download ``path`` (its whole bytes when None). A damaged download is deleted,
    so that the next attempt fetches it again, and named."""
    blob = path.read_bytes()
    try:
        if member is None:
            return blob
        if url.endswith(".zip"):
            return zipfile.ZipFile(io.BytesIO(blob)).read(member)
        extracted = tarfile.open(fileobj=io.BytesIO(blob)).extractfile(member)
        if extracted is None:
            raise KeyError(f"{member} is not a file")
        return extracted.read()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, KeyError, zlib.error) as e:
        path.unlink(missing_ok=True)
        raise DataError(f"{path} (downloaded from {url}): damaged or incomplete archive ({type(e).__name__}: {e}); "
                        "it was deleted, so the next run downloads it again") from None


def _download(src: Source, lang: str, path: Path) -> None:
    url = src.url.format(lang=lang, name=TYDI_NAMES.get(lang, lang))
    member = src.member.format(lang=lang, name=TYDI_NAMES.get(lang, lang)) if src.member else None
    cached = _shared(url) if src.member or src.name == "tydi-train" else None
    blob = _unpack(url, cached, member) if cached else fetch(url)
    if src.name == "tydi-train":  # one official file for all languages; keep this language's entries
        try:
            doc = json.loads(blob)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            assert cached is not None  # tydi-train is always cached
            cached.unlink(missing_ok=True)
            raise DataError(f"{cached} (downloaded from {url}): not valid JSON ({e}); it was deleted, so the next "
                            "run downloads it again") from None
        prefix = TYDI_NAMES[lang] + "-"
        doc["data"] = [a for a in doc["data"] if any(q["id"].startswith(prefix)
                                                     for p in a["paragraphs"] for q in p["qas"])]
        blob = json.dumps(doc, ensure_ascii=False).encode()
    rel, digest = src.relpath(lang), hashlib.sha256(blob).hexdigest()
    expected = known_checksums().get(rel)
    if expected and digest != expected:
        raise DataError(f"{url}: {rel} has SHA-256 {digest}, expected {expected} (the download is corrupted or "
                        f"the official file changed); nothing was written")
    if not expected:
        log.warning("%s: no known SHA-256 to check it against; its SHA-256 is %s", rel, digest)
    atomic_write_bytes(path, blob)


def read_json(path: Path) -> dict:
    """Read a SQuAD-style file; every way it can be unreadable becomes a DataError naming it."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: empty file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r}); "
                        "the benchmark files are UTF-8 JSON") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg} "
                        "(truncated or corrupted file?)") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: top level is a JSON {type(doc).__name__}, expected an object with key 'data'")
    if not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: missing 'data' list at the top level (keys: {sorted(doc)})")
    if not doc["data"]:
        raise DataError(f"{path}: field 'data' is an empty list: the file holds no articles")
    return doc


def _field(obj, key: str, kind: type, path: Path, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path}: {where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):  # JSON true is not a position
        raise DataError(f"{path}: {where}: field {key!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def parse(doc: dict, path: Path, name: str, lang: str) -> tuple[list[QA], dict[str, int]]:
    """Turn a parsed file into records. Returns the records and counts of tolerated upstream flaws."""
    src = SOURCES[name]
    records: list[QA] = []
    seen: dict[str, str] = {}
    flaws = {"sentence_span_mismatch": 0}
    paragraph = 0
    for a, article in enumerate(doc["data"]):
        title = _field(article, "title", str, path, f"data[{a}]")
        for p, par in enumerate(_field(article, "paragraphs", list, path, f"data[{a}] ({title!r})")):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(par, "context", str, path, where)
            sentences: tuple[Any, ...] = ()
            breaks: list[Any] = []
            if src.segmented:
                sentences = tuple(_field(par, "sentences", list, path, where))
                breaks = _field(par, "sentence_breaks", list, path, where)
                bad = next((i for i, t in enumerate(sentences) if not isinstance(t, str)), None)
                if bad is not None:
                    raise DataError(f"{path}: {where}: sentences[{bad}] is {type(sentences[bad]).__name__} "
                                    f"{sentences[bad]!r}, expected a string")
                bad = next((i for i, b in enumerate(breaks) if not (isinstance(b, list) and len(b) == 2 and
                                                                    all(isinstance(x, int) and not isinstance(x, bool) for x in b))), None)
                if bad is not None:
                    raise DataError(f"{path}: {where}: sentence_breaks[{bad}] is {breaks[bad]!r}, "
                                    "expected [start, end]")
                if len(breaks) != len(sentences):
                    raise DataError(f"{path}: {where}: {len(sentences)} sentences but {len(breaks)} sentence_breaks")
                # Breaks run in order through the context; out of order, an answer lands in the wrong sentence.
                ends = [0] + [e for _, e in breaks]
                bad = next((i for i, (s, e) in enumerate(breaks) if not ends[i] <= s < e <= len(context)), None)
                if bad is not None:
                    raise DataError(f"{path}: {where}: sentence_breaks[{bad}] is {breaks[bad]!r}, expected "
                                    f"[start, end] with {ends[bad]} <= start < end <= {len(context)} (the breaks run "
                                    "in order through the context)")
                # Upstream XQuAD-R tr has spans off by one character against the sentence text: count, don't fail.
                flaws["sentence_span_mismatch"] += sum(context[s:e] != t for (s, e), t in zip(breaks, sentences))
            for q, qa in enumerate(_field(par, "qas", list, path, where)):
                qwhere = f"{where}.qas[{q}]"
                qid = _field(qa, "id", str, path, qwhere)
                qwhere = f"{qwhere} (id {qid!r})"
                question = _field(qa, "question", str, path, qwhere)
                if not question.strip():
                    raise DataError(f"{path}: {qwhere}: empty question")
                if qid in seen:
                    raise DataError(f"{path}: {qwhere}: duplicate question id (also at {seen[qid]})")
                seen[qid] = qwhere
                answers = _field(qa, "answers", list, path, qwhere)
                if not answers:
                    raise DataError(f"{path}: {qwhere}: no answers")
                answer = _field(answers[0], "text", str, path, f"{qwhere}.answers[0]")
                if not answer.strip():
                    raise DataError(f"{path}: {qwhere}.answers[0]: field 'text' is empty")
                start = _field(answers[0], "answer_start", int, path, f"{qwhere}.answers[0]")
                if not 0 <= start <= len(context) - len(answer):
                    raise DataError(f"{path}: {qwhere}: answer_start {start} (+{len(answer)} characters) "
                                    f"outside the context of {len(context)} characters")
                if context[start:start + len(answer)] != answer:
                    raise DataError(f"{path}: {qwhere}: answer_start {start} points at "
                                    f"{context[start:start + len(answer)]!r}, not the answer {answer!r}")
                sentence = -1
                if src.segmented:
                    sentence = next((i for i, (s, e) in enumerate(breaks) if s <= start < e), -1)
                    if sentence < 0:
                        raise DataError(f"{path}: {qwhere}: no sentence break covers answer_start {start}")
                records.append(QA(name, lang, qid, question, title, paragraph, context, answer, start,
                                  sentences, sentence))
            paragraph += 1
    return records, flaws


def load(name: str, lang: str, data_dir: str | os.PathLike | None = None) -> list[QA]:
    """All records of one benchmark file (``name`` in ``SOURCES``, ``lang`` an ISO 639-1 code)."""
    path = data_file(name, lang, data_dir)
    records, flaws = parse(read_json(path), path, name, lang)
    if flaws["sentence_span_mismatch"]:
        log.warning("%s: %d sentence spans differ from their sentence text (known upstream flaw); "
                    "the sentence text is used", path, flaws["sentence_span_mismatch"])
    return records


def load_all(name: str, langs: tuple[str, ...] | list[str] | None = None,
             data_dir: str | os.PathLike | None = None) -> dict[str, list[QA]]:
    """Records per language. For parallel benchmarks (XQuAD, XQuAD-R) every language must hold the same ids."""
    langs = tuple(langs or source(name).languages)
    out = {lang: load(name, lang, data_dir) for lang in langs}
    if SOURCES[name].parallel and len(langs) > 1:
        ref_lang = langs[0]
        ref = {r.qid for r in out[ref_lang]}
        for lang in langs[1:]:
            ids = {r.qid for r in out[lang]}
            if ids != ref:
                extra, missing = sorted(ids - ref)[:3], sorted(ref - ids)[:3]
                raise DataError(f"{data_file(name, lang, data_dir)}: question ids do not match the parallel "
                                f"{ref_lang} file ({len(ids - ref)} extra, e.g. {extra}; "
                                f"{len(ref - ids)} missing, e.g. {missing})")
    return out
