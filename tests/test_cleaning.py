"""Executed notebooks made ready for readers (``hybridlib.cleaning``): on hand-made and real notebook JSON."""
import json
import os
import re


def test_clean_notebook_drops_noise_and_keeps_output(tmp_path):
    from hybridlib.cleaning import clean_notebook
    from hybridlib.paths import REPO_ROOT
    path = tmp_path / ".03_evaluate.running.ipynb"
    path.write_text(json.dumps({"metadata": {"papermill": {"output_path": str(REPO_ROOT / "runs/x/.03_evaluate.running.ipynb")}},
                                "cells": [{"cell_type": "code", "source": [], "outputs": [
                                    {"output_type": "stream", "name": "stderr",
                                     "text": "DEBUG:bm25s:Building index\n/x/tqdm/auto.py:21: TqdmWarning: IProgress\n"},
                                    {"output_type": "stream", "name": "stdout",
                                     "text": f"read {REPO_ROOT.parent}/shared/data/xquad-r/tr.json\n"}]}]}))
    assert clean_notebook(path) and not clean_notebook(path)  # a second pass finds nothing
    doc = json.loads(path.read_text())
    assert doc["cells"][0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "read shared/data/xquad-r/tr.json\n"}]
    assert doc["metadata"]["papermill"]["output_path"] == "runs/x/03_evaluate.ipynb"


def test_clean_notebook_makes_a_rerun_write_the_same_bytes_and_styler_ids_of_its_own(tmp_path):
    import pandas as pd
    from IPython.lib.pretty import pretty  # what a notebook's text/plain output holds

    from hybridlib.cleaning import clean_notebook

    def executed(path):  # two styled tables, as 05_compare shows them: each run draws new ids and addresses
        tables = [pd.DataFrame({"mAP": [0.5, 0.25]}).style.map(lambda v: "color: red") for _ in range(2)]
        path.write_text(json.dumps({"metadata": {}, "cells": [
            {"cell_type": "code", "source": [], "outputs": [{"output_type": "display_data", "metadata": {},
                                                              "data": {"text/html": t.to_html(), "text/plain": pretty(t)}}]}
            for t in tables] + [{"cell_type": "code", "id": os.urandom(4).hex(), "source": ["SEED = 1\n"], "outputs": [],
                                 "metadata": {"tags": ["injected-parameters"]}}]}))
        assert clean_notebook(path) and not clean_notebook(path)  # a second pass finds nothing
        return path.read_bytes()

    a, b = tmp_path / "a" / "05_compare.ipynb", tmp_path / "b" / "05_compare.ipynb"
    for d in (a, b):
        d.parent.mkdir()
    first = executed(a)
    assert executed(a) == first  # a re-run writes the same bytes
    html = ["".join(c["outputs"][0]["data"]["text/html"]) for c in json.loads(first)["cells"] if c["outputs"]]
    ids = [re.findall(r'<table id="T_(\w+)"', h) for h in html]
    assert len({i[0] for i in ids}) == 2
    for h, (i,) in zip(html, ids):  # each table's style rules still name its own id
        assert set(re.findall(r"#T_([0-9a-f]{5})", h)) == {i}
    assert json.loads(first)["cells"][0]["outputs"][0]["data"]["text/plain"] == ["<pandas.io.formats.style.Styler>"]
    other = "".join(json.loads(executed(b))["cells"][0]["outputs"][0]["data"]["text/html"])
    assert ids[0][0] not in other  # another notebook's tables get other ids


def test_clean_notebook_titles_the_run_hides_parameters_and_points_the_badge_at_itself(tmp_path):
    from hybridlib.cleaning import clean_notebook
    from hybridlib.paths import NOTEBOOKS
    (tmp_path / "pyproject.toml").write_text("")  # a checkout holding the runs
    (tmp_path / "notebooks").mkdir()
    out = tmp_path / "runs" / "test-clean" / "xx-s0"
    out.mkdir(parents=True)
    path = out / ".02_train.running.ipynb"
    source = json.loads((NOTEBOOKS / "02_train.ipynb").read_text())
    source["metadata"]["papermill"] = {"parameters": {"STRATEGY": "xx"}}
    path.write_text(json.dumps(source))
    assert clean_notebook(path) and not clean_notebook(path)
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["source"][0] == "# 2. Training one strategy (xx)\n"
    assert "blob/main/runs/test-clean/xx-s0/02_train.ipynb)" in "".join(cells[0]["source"])
    hidden = [c["metadata"]["tags"] for c in cells if "remove-cell" in c["metadata"].get("tags", [])]
    assert hidden == [["hide-input", "remove-cell"], ["parameters", "remove-cell"]]  # Colab setup, parameters


def test_clean_notebook_points_the_badge_and_paths_into_the_checkout_holding_the_runs(tmp_path):
    """Runs written by code from another worktree link to their own place in the runs' checkout, and their
    path parameters read as they would there (not as seen from the worktree that ran them)."""
    from hybridlib.cleaning import clean_notebook
    from hybridlib.paths import NOTEBOOKS
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    out = tmp_path / "runs" / "study" / "xy-s1"
    out.mkdir(parents=True)
    (out.parent / "profile.yaml").write_text("name: study\n")
    seen = lambda p: os.path.relpath(p, NOTEBOOKS)  # noqa: E731  (from the code's notebooks/, where it ran)
    params = {"PROFILE": seen(out.parent / "profile.yaml"), "RUN_DIR": seen(out), "STRATEGY": "xy", "SEED": 1}
    doc = json.loads((NOTEBOOKS / "02_train.ipynb").read_text())
    doc["cells"].insert(2, {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
                            "execution_count": None, "source": [f"{k} = {json.dumps(v)}\n" for k, v in params.items()]})
    doc["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout",
                                   "text": f"wrote {params['RUN_DIR']}/results.parquet 636 rows\n"}]
    doc["metadata"]["papermill"] = {"parameters": params, "input_path": str(NOTEBOOKS / "02_train.ipynb"),
                                    "output_path": str(out / ".02_train.running.ipynb")}
    path = out / ".02_train.running.ipynb"
    path.write_text(json.dumps(doc))
    assert clean_notebook(path) and not clean_notebook(path)
    doc = json.loads(path.read_text())
    assert "blob/main/runs/study/xy-s1/02_train.ipynb)" in "".join(doc["cells"][0]["source"])
    assert doc["metadata"]["papermill"] == {
        "parameters": {"PROFILE": "../runs/study/profile.yaml", "RUN_DIR": "../runs/study/xy-s1", "STRATEGY": "xy", "SEED": 1},
        "input_path": "notebooks/02_train.ipynb", "output_path": "runs/study/xy-s1/02_train.ipynb"}
    assert "".join(doc["cells"][2]["source"]) == ('PROFILE = "../runs/study/profile.yaml"\nRUN_DIR = "../runs/study/xy-s1"\n'
                                                 'STRATEGY = "xy"\nSEED = 1\n')
    assert doc["cells"][3]["outputs"][0]["text"] == "wrote ../runs/study/xy-s1/results.parquet 636 rows\n"
