"""The test suite's wall and CPU time in one checkout against another, run in turn (A B A B ...) so that a
comparison holds while a shared machine's speed drifts; each figure is the median, each ratio pair by pair.

    git worktree add /tmp/old 5335a2b     # the suite as it was when issue 10 was filed
    python bench/suite_time.py --a . --b /tmp/old --repeats 3
    python bench/suite_time.py --a . --b /tmp/old --same-tests-as-b \
        --also tests/core/test_submission.py::test_map3_score \
        --also tests/kaggle/test_kaggle.py::test_push_code_stages_a_wheel_of_the_package_and_extra_wheels

The second form runs in A only the tests that descend from B's: those whose name (after `::`) B has too,
plus the renamed ones given with --also (here the successors of test_map3_from_logits and of
test_push_code_stages_the_inference_modules; B's five to_frame tests left with the dead Questions.to_frame).

Each run is `python -m pytest -q` in that checkout with this Python (the same .venv for both), so each
suite runs the way its own pyproject.toml says (the old one in one process, today's in parallel workers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def timed(checkout: Path, pytest_args: list[str]) -> dict:
    """One suite run: wall seconds, CPU seconds of it and every process it started, and its exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", *pytest_args],
        cwd=checkout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    return {
        "wall": time.perf_counter() - start,
        "cpu": usage.ru_utime + usage.ru_stime,
        "code": os.waitstatus_to_exitcode(status),
    }


def collected(checkout: Path) -> list[str]:
    """The node ids pytest collects in a checkout, in one process."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-n", "0"],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    return [line for line in proc.stdout.splitlines() if "::" in line]


def same_tests(a_ids: list[str], b_ids: list[str], also: Sequence[str] = ()) -> list[str]:
    """A's node ids whose test name B has too (files moved, names kept), then the renamed ones in `also`."""
    unknown = [i for i in also if i not in a_ids]
    if unknown:
        sys.exit(f"--also names tests A does not have: {unknown}")
    b_names = {i.split("::", 1)[1] for i in b_ids}
    kept = [i for i in a_ids if i.split("::", 1)[1] in b_names]
    return kept + [i for i in also if i not in kept]


def summarise(pairs: list[tuple[dict, dict]]) -> dict:
    """Medians of A's and B's wall and CPU seconds, and the median of the per-pair ratios A/B."""
    out = {}
    for key in ("wall", "cpu"):
        out[f"a_{key}"] = statistics.median(a[key] for a, _ in pairs)
        out[f"b_{key}"] = statistics.median(b[key] for _, b in pairs)
        out[f"ratio_{key}"] = statistics.median(a[key] / b[key] for a, b in pairs)
        out[f"ratios_{key}"] = [round(a[key] / b[key], 3) for a, b in pairs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, default=Path("."), help="checkout A (default: this one)")
    parser.add_argument("--b", type=Path, required=True, help="checkout B, the baseline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--select-a", type=Path, help="a file of pytest node ids, one a line: A runs only these (B's whole suite runs)"
    )
    parser.add_argument("--same-tests-as-b", action="store_true", help="A runs only the tests that descend from B's")
    parser.add_argument("--also", action="append", default=[], help="with --same-tests-as-b: a renamed test of A's")
    parser.add_argument("--deselect-b", action="append", default=[], help="a test of B's to leave out (e.g. one that "
                        "reads the console scripts, which the shared .venv points at A)")  # fmt: skip
    args = parser.parse_args()
    a_args = args.select_a.read_text().splitlines() if args.select_a else []
    if args.same_tests_as_b:
        b_ids = [i for i in collected(args.b) if i not in args.deselect_b]
        a_args = same_tests(collected(args.a), b_ids, args.also)
        print(f"A runs {len(a_args)} tests, those that descend from B's", flush=True)
    pairs = []
    for i in range(args.repeats):
        a, b = timed(args.a, a_args), timed(args.b, [f"--deselect={t}" for t in args.deselect_b])
        print(
            f"pair {i + 1}: A {a['wall']:.1f} s wall {a['cpu']:.1f} s cpu (exit {a['code']}), "
            f"B {b['wall']:.1f} s wall {b['cpu']:.1f} s cpu (exit {b['code']})",
            flush=True,
        )
        if a["code"] or b["code"]:
            sys.exit("a suite failed: its time says nothing; run it by hand to see why")
        pairs.append((a, b))
    s = summarise(pairs)
    print(f"| | A ({args.a}) | B ({args.b}) | A / B (pairs) |\n|---|---:|---:|---:|")
    for key in ("wall", "cpu"):
        print(
            f"| {key} s, median of {len(pairs)} | {s[f'a_{key}']:.1f} | {s[f'b_{key}']:.1f} | "
            f"**{s[f'ratio_{key}']:.2f}** ({', '.join(map(str, s[f'ratios_{key}']))}) |"
        )


if __name__ == "__main__":
    main()
