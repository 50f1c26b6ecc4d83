"""The book's pages paste only what the committed notebooks glue: the sphinx build warns on a missing key
(and -W fails it), this says which page and key without building the book."""
import json
import re

from hybridlib.paths import REPO_ROOT

ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+?)::([^`:]+)(?::[^`]*)?`")  # {glue:text}`path::key:fmt`
DIRECTIVE = re.compile(r"```\{glue(?::\w+)?\} (\S+)\n:doc: (\S+)")  # ```{glue} key / :doc: path


def glued(notebook) -> set[str]:
    doc = json.loads(notebook.read_text())
    return {o["metadata"]["scrapbook"]["name"] for c in doc["cells"] for o in c.get("outputs", [])
            if "scrapbook" in o.get("metadata", {})}


def test_every_pasted_value_is_glued_by_the_committed_notebook_it_names():
    pastes = []
    for page in sorted((REPO_ROOT / "book").glob("*.md")):
        text = page.read_text()
        pastes += [(page, path, key) for path, key in ROLE.findall(text)]
        pastes += [(page, path, key) for key, path in DIRECTIVE.findall(text)]
    assert pastes, "the introduction pastes the study's answer"
    missing = [f"{page.name}: {path}::{key}" for page, path, key in pastes
               if not (page.parent / path).is_file() or key not in glued(page.parent / path)]
    assert not missing, missing


FIGURE = re.compile(r"(?<![\w.±])[+-]?\.\d{3}\b|\b\d+\.\d+ (?:times|hours|minutes)\b")  # .015, +.031, 1.02 times


def test_the_introduction_types_no_figure_of_its_own():
    """Every result the introduction states (a three-decimal figure, a ratio, a time) is pasted from a committed
    notebook, so a re-run that changes it changes the page; margins and protocol settings may be typed."""
    text = ROLE.sub("", (REPO_ROOT / "book" / "intro.md").read_text())
    assert not FIGURE.findall(text), FIGURE.findall(text)
    assert FIGURE.findall("gains +.031 and .046; 1.23 times") == ["+.031", ".046", "1.23 times"]  # what it catches
