"""The book: its pages paste only what the committed notebooks glue (the sphinx build warns on a missing key
and -W fails it; this says which page and key without building the book), and the committed notebooks its
chapters show still run, or say what to run, when a reader opens them in a fresh runtime."""
import json
import re
from pathlib import Path

import pytest

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


WALKTHROUGH = {  # the committed notebooks the book's chapters show and their Colab buttons open: run in a fresh
    # runtime (no notebook-01 output: it is not committed), each prints the one command that makes it
    "runs/cpu/hybrid-0.5-s0/02_train.ipynb": "hybrid-0.5-s0",
    "runs/cpu/pcgrad-s0/02_train.ipynb": "pcgrad-s0",
    "runs/cpu/zero-shot-s0/03_evaluate.ipynb": "zero-shot-s0",
}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", list(WALKTHROUGH))
def test_a_committed_walkthrough_notebook_in_a_fresh_runtime_prints_the_command_it_needs(notebook, tmp_path):
    """The notebooks were executed with the code of their day; what they call today says what to run."""
    from papermill.exceptions import PapermillExecutionError

    from hybridlib.pipeline import NOTEBOOKS, _run_notebook
    runs = tmp_path / "runs"
    params = {"PROFILE": "cpu", "DATA_OUT": str(runs / "cpu" / "data"), "RUN_DIR": str(runs / "cpu" / WALKTHROUGH[notebook])}
    with pytest.raises(PapermillExecutionError) as err:
        _run_notebook(REPO_ROOT / notebook, tmp_path / "out.ipynb", params, NOTEBOOKS)
    assert ("Run it first, from this notebook's folder: python -m "
            f"hybridlib run --profile cpu --runs-dir {runs} --until 01_data") in str(err.value)


@pytest.mark.slow
def test_the_book_builds_as_the_publishing_workflow_builds_it(tmp_path):
    """.github/workflows/book.yml: what it installs carries jupyter-book, and its build command, run here
    with the same flags (warnings are errors), builds the book."""
    import shlex
    import subprocess
    import sys

    import yaml
    steps = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "book.yml").read_text())["jobs"]["build"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert any(re.search(r"pip install -e \"\.\[(\w+,)*book(,\w+)*\]\"", r) for r in runs), runs
    build = next(r for r in runs if r.startswith("jupyter-book build"))
    argv = shlex.split(build)
    jupyter_book = str(Path(sys.executable).with_name("jupyter-book"))
    done = subprocess.run([jupyter_book, *argv[1:], "--path-output", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "_build" / "html" / "book" / "intro.html").is_file()
