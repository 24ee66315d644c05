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
