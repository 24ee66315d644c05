"""Atomic writes: all or nothing, leftovers of a killed writer removed by the next run, a full disk reported as
one clear error with the previous file intact."""

import errno
import os
import subprocess
import sys
from importlib import metadata

import pytest

from mcq.errors import OutputError
from mcq.io import atomic_write, atomic_write_text, library_versions, pid_alive


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_writer_are_removed_and_a_live_writers_are_kept(tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("old\n")
    dead = tmp_path / f".submission.csv.{dead_pid()}.k3j2.tmp"
    alive = tmp_path / f".submission.csv.{os.getpid()}.x8q1.tmp"  # another writer of this very process
    other = tmp_path / ".logits_seed0.npy.123.abcd.tmp"  # another file's: not ours to judge
    for leftover in (dead, alive, other):
        leftover.write_text("partial")
    atomic_write_text(out, "new\n")
    assert out.read_text() == "new\n"
    assert not dead.exists() and alive.exists() and other.exists()
    assert pid_alive(os.getpid()) and not pid_alive(dead_pid())


def test_a_full_disk_keeps_the_previous_file_and_names_the_one_not_written(tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("id,prediction\n1,A B C\n")

    def fills_the_disk(tmp):
        tmp.write_text("id,predic")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError) as err:
        atomic_write(out, fills_the_disk)
    message = str(err.value)
    assert message.startswith(f"{out}: could not be written (No space left on device)")
    assert "the previous submission.csv is unchanged" in message
    assert out.read_text() == "id,prediction\n1,A B C\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"], "a partial temp file was left"


def test_a_bug_in_the_writer_is_not_dressed_up_as_a_user_error(tmp_path):
    def buggy(tmp):
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / "x.txt", buggy)
    assert not isinstance(err.value, OutputError)
    assert list(tmp_path.iterdir()) == []


def test_library_versions_name_what_is_installed_and_what_is_not():
    names = ["numpy", "no-such-distribution-mcq"]
    assert library_versions(names) == {"numpy": metadata.version("numpy"), "no-such-distribution-mcq": "not installed"}
    assert library_versions(names, installed_only=True) == {"numpy": metadata.version("numpy")}
    assert set(library_versions()) >= {"torch", "transformers", "safetensors"}


# ---- leftovers of killed processes, and locks (issue 25) --------------------------------------------------------

DEAD_PID = 2**22 + 12345  # above Linux's default pid_max: never a live process


def test_leftovers_of_dead_processes_are_removed_and_a_replaced_folder_is_restored(tmp_path):
    from mcq.io import clean_leftovers

    dest = tmp_path / "ix"
    for kind in ("tmp", "staging"):
        (tmp_path / f".ix.{kind}-{DEAD_PID}").mkdir()
    alive = tmp_path / f".ix.tmp-{os.getpid()}"
    alive.mkdir()
    old = tmp_path / f".ix.old-{DEAD_PID}"
    old.mkdir()
    (old / "mcq_index.json").write_text("{}")
    clean_leftovers(dest)
    # killed between replace_dir's two renames: the index was only moved aside, so it is put back
    assert (dest / "mcq_index.json").is_file() and not old.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ix", alive.name])
    (tmp_path / f".ix.old-{DEAD_PID}").mkdir()
    clean_leftovers(dest)  # the folder is back: a dead process's old copy is just removed
    assert not (tmp_path / f".ix.old-{DEAD_PID}").exists()


def test_a_second_holder_of_a_folder_lock_is_refused_at_once_naming_the_first(tmp_path):
    import subprocess
    import sys

    from mcq.errors import ConfigError
    from mcq.io import folder_lock

    lock = tmp_path / ".ix.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('PID 4242 on index-host, since today'); f.flush(); "
         "print('locked', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        busy = "is in use by an index build \\(PID 4242 on index-host"
        with (
            pytest.raises(ConfigError, match=busy),
            folder_lock(lock, "an index build", "wait, or choose another --out"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(lock, "an index build", "wait"):
        assert lock.read_text().startswith(f"PID {os.getpid()}")
    assert not lock.exists()
