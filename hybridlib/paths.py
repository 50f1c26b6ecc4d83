"""Where things live: the benchmark data directory, the user cache, atomic writes.

The data directory is found in this order: an explicit argument, the
``HYBRIDLIB_DATA_DIR`` environment variable, then ``../shared/data`` beside the
repository (development and CI). When none exists, loaders download the
official files into ``cache_dir() / "data"``.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

from .errors import HybridError

REPO_ROOT = Path(__file__).resolve().parents[1]
# A source checkout (development, an editable install), or an installed package whose notebooks are package data
CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "notebooks").is_dir()
NOTEBOOKS = REPO_ROOT / "notebooks" if CHECKOUT else Path(__file__).resolve().parent / "notebooks"
PROFILE_DIR = Path(__file__).parent / "profiles"
UMASK = os.umask(0o022)
os.umask(UMASK)


def builtin_profiles() -> list[str]:
    """The names of the profiles shipped in ``hybridlib/profiles/`` (``cpu``, ``study``, ...)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


class Locked(HybridError, RuntimeError):
    """Another process holds the lock of a directory."""


@contextlib.contextmanager
def locked(path: str | os.PathLike, what: str):
    """Hold an exclusive lock on ``path`` (created if needed) or raise :class:`Locked` at once saying ``what``.
    The kernel releases it when the process dies, so a killed run never leaves a stale lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(f"{path}: {what}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def default_runs_dir() -> Path:
    """Where results go by default: ``runs/`` of the checkout, or of the current directory for an installed
    package (never inside site-packages)."""
    return REPO_ROOT / "runs" if CHECKOUT else Path.cwd() / "runs"


def cache_dir() -> Path:
    """The user cache (``HYBRIDLIB_CACHE``, else ``$XDG_CACHE_HOME/hybridlib``, else ``~/.cache/hybridlib``)."""
    if os.environ.get("HYBRIDLIB_CACHE"):
        return Path(os.environ["HYBRIDLIB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hybridlib"


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The benchmark data directory, or None when only a download can provide the data.

    An explicitly given directory (argument or environment variable) must exist:
    a typo there is an error, not a silent download.
    """
    for source, value in (("argument data_dir", data_dir), ("HYBRIDLIB_DATA_DIR", os.environ.get("HYBRIDLIB_DATA_DIR"))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"data directory {path} (from {source}) does not exist")
            return path
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so a reader never sees a half-written file. Errors name the path."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes it private; the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # an interrupt too: never leave the temporary file behind
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from e
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
