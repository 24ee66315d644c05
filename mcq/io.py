"""Small I/O helpers: atomic writes and the versions recorded in reports and model metadata."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from mcq.errors import OutputError

if TYPE_CHECKING:  # numpy is imported where an array is written: `--help` of every command stays fast
    import numpy as np

VERSIONED = ("torch", "transformers", "tokenizers", "datasets", "safetensors", "numpy", "pandas")


# Write failures the user fixes (disk full, quota, read-only or forbidden folder), not bugs.
USER_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path` (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    # the PID in the name tells a later run whether the writer is still alive (see remove_stale_temps)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno in USER_WRITE_ERRORS:
            kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
            raise OutputError(
                f"{path}: could not be written ({err.strerror}); {kept}. Free disk space or pick "
                "another output folder, then run again."
            ) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temps(path: Path) -> None:
    """Remove `.NAME.PID.*.tmp` files beside `path` left by a writer that was killed (its PID is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


@functools.cache
def umask() -> int:
    """This process's umask (read once: setting it is the only way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_array(path: str | Path, array: np.ndarray) -> Path:
    """Save a .npy atomically (np.save appends .npy to names without it, so write through a handle)."""
    import numpy as np

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    return atomic_write(path, save)


def replace_dir(tmp: str | Path, dest: str | Path) -> Path:
    """Move a finished folder into place, replacing what was there; the old one is removed last."""
    tmp, dest = Path(tmp), Path(dest)
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


@functools.cache
def installed_version(name: str) -> str | None:
    """A distribution's installed version, or None; cached, as what is installed does not change while we run."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions(names: Iterable[str] = VERSIONED, installed_only: bool = False) -> dict[str, str]:
    """Installed versions of the libraries that decide whether a model (or index) loads and scores the same."""
    found = {name: installed_version(name) for name in names}
    return {name: v or "not installed" for name, v in found.items() if v or not installed_only}
