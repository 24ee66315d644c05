"""Small I/O helpers: atomic writes and the versions recorded in reports and model metadata."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from mcq.errors import ConfigError, OutputError

if TYPE_CHECKING:  # numpy is imported where an array is written: `--help` of every command stays fast
    import numpy as np

log = logging.getLogger(__name__)

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


# how libraries that are not Python's file API (safetensors' Rust writer) report a full disk or quota
_DISK_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|StorageFull|os error 28", re.I)


def write_failure(err: BaseException) -> str | None:
    """Why a write failed when the user can fix it (a full disk, a quota, a read-only or forbidden folder), else
    None (a bug, which keeps its traceback)."""
    if isinstance(err, OSError) and err.errno in USER_WRITE_ERRORS:
        return err.strerror or str(err)
    found = _DISK_FULL_TEXT.search(str(err))
    if found and not isinstance(err, OSError):
        return "No space left on device" if "quota" not in found.group(0).lower() else "Disk quota exceeded"
    return None


@contextlib.contextmanager
def writes_to(where: str | Path, after: str) -> Iterator[None]:
    """A write failure the user can fix, anywhere inside, becomes one OutputError naming `where`; `after` says
    what state things are left in and what to do (e.g. 'the previous index is unchanged')."""
    try:
        yield
    except Exception as err:
        reason = write_failure(err)
        if reason is None or isinstance(err, OutputError):
            raise
        raise OutputError(f"{where}: could not be written ({reason}); {after}") from err


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


LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|staging)-(?P<pid>\d+)$")


def clean_leftovers(dest: str | Path) -> None:
    """Remove what killed processes left beside `dest` (`.NAME.tmp-PID`, `.NAME.staging-PID` folders of a build or
    staging, `.NAME.old-PID` of replace_dir); a dest moved aside by replace_dir whose process died before the
    second rename is put back instead. A live process's folders are left alone."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return
    for path in sorted(dest.parent.iterdir()):
        match = LEFTOVER.match(path.name)
        if not match or match["name"] != dest.name or pid_alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not dest.exists():
            path.rename(dest)
            log.warning("%s: restored from %s, where a killed process had moved it", dest, path.name)
        else:
            log.info("removing %s, left by a killed process", path)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(lock_file: str | Path, what: str, advice: str, target: str | Path | None = None) -> Iterator[None]:
    """Hold a lock file for one process: a second one exits at once naming the holder (`what` says whose it
    is; `target` what is held, the lock's folder by default); a lock left by a process that died is taken over
    with a warning. The file is removed on release."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel when the holder dies
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(f"{target or lock_file.parent} is in use by {what} ({holder}); {advice}.") from None
        fh.seek(0)
        left = fh.read().strip()
        if left:
            log.warning("%s: taking over the lock left by %s, which is no longer running", lock_file, left)
        fh.seek(0)
        fh.truncate()
        fh.write(f"PID {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            lock_file.unlink(missing_ok=True)


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
