"""Executed notebooks made ready for readers: warnings, machine paths and the parameters cells out of what
the book shows; the Colab badge and setup cell pointing at the notebook as committed; what a re-run would
write differently though it shows the same (random table ids, object addresses) made to repeat."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .paths import NOTEBOOKS, REPO_ROOT, atomic_write_text

NOISE = re.compile(r"Warning|DEBUG:|^\s*warnings\.warn|from \.autonotebook import", re.M)


COLAB_BADGE = re.compile(r"(colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/)notebooks/[\w.-]+\.ipynb")
REMOVED = ("parameters", "injected-parameters")  # tags of the cells the book leaves out
STYLER_ID = re.compile(r"(?<=\bT_)[0-9a-f]{5}(?=[_\"\s{,])")  # a pandas Styler's random table id
ADDRESS = re.compile(r" at 0x[0-9a-f]+>")  # an object's address in its default repr


def _setup_cell(name: str) -> list[str] | None:
    """The Colab setup cell's source in the source notebook ``name``."""
    try:
        cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None
    return next((c["source"] for c in cells if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])),
                None)


def _relocated(params: dict, root: Path | None) -> dict[str, str]:
    """Path parameters of a notebook that ran from another checkout's notebooks/ (a long study run from a
    pinned worktree into the main checkout's runs): each value -> the same path seen from ``root``'s
    notebooks/, where a reader re-runs it."""
    if root is None:
        return {}
    moved = {}
    for value in params.values():
        if isinstance(value, str) and value and not os.path.isabs(value):
            target = (NOTEBOOKS / value).resolve()
            if target.exists() and target.is_relative_to(root):
                moved[value] = os.path.relpath(target, root / "notebooks")
    return moved


def _stable_outputs(nb: dict, key: str) -> bool:
    """Make what differs between two runs that show the same thing repeat: each pandas Styler's random table
    id in the HTML outputs (the n-th becomes a digest of ``key``, the notebook's path, and n, so that a table
    pasted beside another notebook's keeps an id of its own), the object addresses in plain-text reprs
    ('<... Styler at 0x7f57...>') and papermill's random id for the injected-parameters cell. Returns whether
    anything changed."""
    ids: dict[str, str] = {}

    def stable(m: re.Match) -> str:
        return ids.setdefault(m.group(0), hashlib.sha1(f"{key}#{len(ids)}".encode()).hexdigest()[:5])

    changed = False
    for cell in nb.get("cells", []):
        injected = "injected-parameters" in cell.get("metadata", {}).get("tags", [])
        if injected and cell.get("id", "injected-parameters") != "injected-parameters":
            cell["id"], changed = "injected-parameters", True
        for data in [o["data"] for o in cell.get("outputs", []) if "data" in o]:
            for mime, pattern, repl in (("text/html", STYLER_ID, stable), ("text/plain", ADDRESS, ">")):
                if mime in data:
                    text = "".join(data[mime]) if isinstance(data[mime], list) else data[mime]
                    if (new := pattern.sub(repl, text)) != text:
                        data[mime], changed = new.splitlines(keepends=True), True
    return changed


def clean_notebook(path: Path) -> bool:
    """Prepare an executed notebook for readers. Dropped: stderr lines that are warnings or debug logging,
    and the machine's own paths (the repository's parent, the home directory, papermill's absolute input
    and output paths; path parameters are given as seen from the checkout the run lives in). Left out of
    the book (tag ``remove-cell``): the parameters cells and the Colab setup cell. The Colab badge opens
    this very notebook, as the book's launch button does, and its setup cell is the source notebook's.
    What a re-run that shows the same would write differently is made stable (:func:`_stable_outputs`).
    Returns whether anything changed; written atomically."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    roots = sorted({str(REPO_ROOT.parent), str(Path.home())}, key=len, reverse=True)
    final = path.with_name(re.sub(r"^\.(.+)\.running\.ipynb$", r"\1.ipynb", path.name))
    root = next((d for d in final.resolve().parents if (d / "pyproject.toml").is_file() and (d / "notebooks").is_dir()), None)
    here = os.path.relpath(final.resolve(), root) if root else None  # the checkout the runs live in, not the code's
    setup = _setup_cell(final.name)
    params = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    moved = _relocated(params, root)
    # the title names the run's strategy, or the profile an analysis notebook read
    named = params.get("STRATEGY") or (Path(params["PROFILE_DIR"]).name if params.get("PROFILE_DIR") else None)
    before = json.dumps(nb, sort_keys=True)
    params.update({k: moved.get(v, v) for k, v in params.items() if isinstance(v, str)})
    for i, cell in enumerate(nb.get("cells", [])):
        if i == 0 and named and cell["cell_type"] == "markdown" and cell["source"]:
            title = "".join(cell["source"]).split("\n", 1)
            if title[0].startswith("# ") and not title[0].endswith(f" ({named})"):
                cell["source"] = [f"{title[0]} ({named})\n", *title[1:]]
        source = "".join(cell.get("source", ""))
        tags = cell.get("metadata", {}).get("tags", [])
        colab = cell["cell_type"] == "code" and "google.colab" in source
        if colab and setup is not None and "".join(setup) != source:
            cell["source"] = setup
        if "injected-parameters" in tags and moved:
            for a, b in moved.items():
                source = source.replace(json.dumps(a), json.dumps(b))
            cell["source"] = source.splitlines(keepends=True)
        if (colab or set(tags) & set(REMOVED)) and "remove-cell" not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, "remove-cell"]
        badge = COLAB_BADGE.sub(lambda m: m.group(1) + here, source) if cell["cell_type"] == "markdown" and here else source
        if badge != source:
            cell["source"] = badge.splitlines(keepends=True)
    changed = json.dumps(nb, sort_keys=True) != before
    for cell in [c for c in nb.get("cells", []) if "outputs" in c]:
        kept = []
        for out in cell["outputs"]:
            if out.get("output_type") == "stream":
                text = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
                lines = [l for l in text.splitlines(keepends=True) if not (out.get("name") == "stderr" and NOISE.search(l))]
                clean = "".join(lines)
                for prefix in roots:
                    clean = clean.replace(prefix + "/", "")
                for a in sorted(moved, key=len, reverse=True):
                    clean = clean.replace(a, moved[a])
                if clean != text:
                    changed = True
                if not clean:
                    continue
                out["text"] = clean
            kept.append(out)
        cell["outputs"] = kept
    changed |= _stable_outputs(nb, here or str(final.resolve()))
    meta = nb.get("metadata", {}).get("papermill", {})
    # papermill records absolute paths: the source notebook's is kept relative to the code's checkout, the
    # executed one's to the checkout it lives in
    paths = {"output_path": here} if here and "output_path" in meta else {}
    for key in ("input_path", "output_path"):
        value = meta.get(key)
        if isinstance(value, str) and os.path.isabs(value):
            paths.setdefault(key, re.sub(r"\.([^/]+)\.running\.ipynb$", r"\1.ipynb", os.path.relpath(value, REPO_ROOT)))
    changed |= any(meta[k] != v for k, v in paths.items())
    meta.update(paths)
    if changed:
        atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed
