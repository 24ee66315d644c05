"""The kaggle executable underneath `mcq.kaggle`: credentials, running it with secrets redacted, and
reading what it prints.

kaggle 2.2.5 exits 0 on several failures (a refused dataset create or version, a refused kernel push;
`kernels status` always exits 0, even for a kernel that failed), so every output is read, not only
the exit code. The strings below are copied from kaggle/api/kaggle_api_extended.py (2.2.5).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcq.errors import KaggleCommandError, KaggleSetupError
from mcq.secrets import redact

AUTH_REQUIRED = "Authentication required to call the Kaggle API."
DATASET_CREATE_ERROR = "Dataset creation error: "
DATASET_VERSION_ERROR = "Dataset version creation error: "
SLUG_IN_USE = "is already in use by a dataset"
KERNEL_PUSH_ERROR = "Kernel push error: "
# `kernels push` goes through but drops sources it cannot find: the kernel would then run without them.
INVALID_SOURCES = re.compile(r"The following are not valid (dataset|competition|kernel) sources.*", re.MULTILINE)
PUSHED_VERSION = re.compile(r"Kernel version (\d+) successfully pushed")
KAGGLE_CLI_ENV = "MCQ_KAGGLE_CLI"  # path of the kaggle executable to run (tests point it at the stand-in)
SUBMISSION_REF = re.compile(r"Submission ref: (\d+)")
KERNEL_STATUS = re.compile(r'has status "([^"]*)"')
FAILURE_MESSAGE = re.compile(r'Failure message: "(.*)"\s*\Z', re.DOTALL)
# What kaggle 2.2.5 prints when Kaggle cannot be reached (requests/urllib3 wording, token or kaggle.json alike)
OFFLINE = re.compile(
    r"NameResolutionError|Failed to resolve|Name or service not known|Temporary failure in name resolution|"
    r"Network is unreachable|Max retries exceeded|Connection refused"
)
KERNEL_DONE, KERNEL_FAILED = {"COMPLETE"}, {"ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}

WHERE_CREDENTIALS = (
    "Put an API token (https://www.kaggle.com/settings/api) in KAGGLE_API_TOKEN or ~/.kaggle/access_token, "
    "or a legacy kaggle.json in $KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle (or set KAGGLE_USERNAME "
    "and KAGGLE_KEY), or run `kaggle auth login`."
)


@dataclass(frozen=True)
class Credentials:
    """Where the kaggle CLI will find credentials (safe to print) and the values to redact (never printed)."""

    source: str
    username: str | None
    secrets: tuple[str, ...] = field(default=(), repr=False)


def config_dir(env: Mapping[str, str], home: Path) -> Path:
    """kaggle.json's folder, chosen as kaggle 2.2.5 chooses it."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"])
    folder = home / ".kaggle"
    if sys.platform.startswith("linux") and not folder.exists():
        folder = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    return folder


def find_credentials(env: Mapping[str, str] | None = None, home: Path | None = None) -> Credentials | None:
    """The credentials the kaggle CLI would use, in its order: access token, kaggle.json / KAGGLE_USERNAME +
    KAGGLE_KEY, `kaggle auth login`'s credentials.json. None when there are none."""
    env = os.environ if env is None else env
    home = Path(home or env.get("HOME") or Path.home())
    legacy = _read_json(config_dir(env, home) / "kaggle.json")
    oauth = _read_json(home / ".kaggle" / "credentials.json")
    username = env.get("KAGGLE_USERNAME") or legacy.get("username") or oauth.get("username")
    key = env.get("KAGGLE_KEY") or legacy.get("key")
    token, token_source = _access_token(env, home)
    secrets = tuple(
        s
        for s in (
            token,
            key,
            oauth.get("refresh_token"),
            oauth.get("access_token"),
            legacy.get("key"),
            env.get("KAGGLE_KEY"),
        )
        if isinstance(s, str) and s
    )
    if token:
        return Credentials(token_source, username, secrets)
    if username and key:
        source = "KAGGLE_USERNAME/KAGGLE_KEY" if env.get("KAGGLE_KEY") else str(config_dir(env, home) / "kaggle.json")
        return Credentials(source, username, secrets)
    if oauth.get("refresh_token"):
        return Credentials(str(home / ".kaggle" / "credentials.json"), username, secrets)
    return None


def require_credentials(env: Mapping[str, str] | None = None, home: Path | None = None) -> Credentials:
    creds = find_credentials(env, home)
    if creds is None:
        env = os.environ if env is None else env
        problem = kaggle_json_problem(env, Path(home or env.get("HOME") or Path.home()))
        raise KaggleSetupError(f"{problem or 'no Kaggle credentials found.'} {WHERE_CREDENTIALS}")
    return creds


def kaggle_json_problem(env: Mapping[str, str], home: Path) -> str | None:
    """What is wrong with a kaggle.json that is there but gives no credentials (truncated, wrong keys)."""
    path = config_dir(env, home) / "kaggle.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f'{path}: not valid JSON ({type(err).__name__}); it should read {{"username": "...", "key": "..."}}.'
    if not isinstance(data, dict):
        return f'{path}: holds {type(data).__name__}, not {{"username": "...", "key": "..."}}.'
    missing = [k for k in ("username", "key") if not (env.get(f"KAGGLE_{k.upper()}") or data.get(k))]
    return f"{path}: no {' and no '.join(repr(k) for k in missing)} (its keys: {sorted(data)})." if missing else None


def _access_token(env: Mapping[str, str], home: Path) -> tuple[str | None, str]:
    value = env.get("KAGGLE_API_TOKEN")
    if value:
        path = Path(value)
        try:
            if path.is_file():
                return path.read_text(encoding="utf-8").strip() or None, "KAGGLE_API_TOKEN (file)"
        except OSError:  # a token too long to be a path name
            pass
        return value, "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        path = home / ".kaggle" / name
        if path.is_file():
            token = path.read_text(encoding="utf-8").strip()
            if token:
                return token, str(path)
    return None, ""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class CommandResult:
    """One kaggle run: its arguments, exit code and merged stdout/stderr (credentials redacted)."""

    args: list[str]
    returncode: int
    output: str

    @property
    def command(self) -> str:
        return display(self.args)


def display(args: list[str]) -> str:
    return shlex.join(["kaggle", *args])


class KaggleCLI:
    """Runs the kaggle executable found on PATH; with dry_run it only prints the commands."""

    def __init__(self, secrets: Iterable[str] = (), dry_run: bool = False, echo: Callable[[str], None] = print):
        self.secrets = tuple(secrets)
        self.dry_run = dry_run
        self.echo = echo

    def say(self, text: str) -> None:
        self.echo(redact(text, self.secrets))

    def run(self, args: list[str], quiet: bool = False) -> CommandResult | None:
        """Run `kaggle ARGS`, echoing its output (unless quiet); None in a dry run."""
        if not quiet or self.dry_run:
            self.say(f"$ {display(args)}")
        if self.dry_run:
            return None
        exe = kaggle_executable()
        proc = subprocess.Popen(
            [exe, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        lines: list[str] = []
        traceback_at = None  # a Python traceback of the CLI is collected, not echoed line by line
        assert proc.stdout is not None
        for line in proc.stdout:
            line = redact(line, self.secrets)
            lines.append(line)
            if traceback_at is None and line.startswith("Traceback (most recent call last)"):
                traceback_at = len(lines) - 1
            if not quiet and traceback_at is None:
                self.echo("  " + line.rstrip("\n"))
        if traceback_at is not None and not quiet:
            self.echo(f"  ({len(lines) - traceback_at} lines of the kaggle CLI's traceback; its last line:)")
            self.echo("  " + lines[-1].rstrip("\n"))
        result = CommandResult(list(args), proc.wait(), "".join(lines))
        if AUTH_REQUIRED in result.output:
            raise KaggleCommandError(
                f"`{result.command}`: the kaggle CLI says it needs credentials. {WHERE_CREDENTIALS}"
            )
        return result


def kaggle_executable(env=os.environ) -> str:
    """$MCQ_KAGGLE_CLI when set; else the kaggle installed beside this Python (the version requirements.txt
    pins, whose output we parse), even when another kaggle comes first on PATH; else the one on PATH."""
    chosen = env.get(KAGGLE_CLI_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise KaggleSetupError(f"${KAGGLE_CLI_ENV}={chosen}: no such file.")
        return chosen
    exe = shutil.which("kaggle", path=str(Path(sys.executable).parent)) or shutil.which("kaggle", path=env.get("PATH"))
    if exe is None:
        raise KaggleSetupError("the kaggle CLI is not installed: pip install 'kaggle==2.2.5' six (or activate .venv).")
    return exe


def check_result(result: CommandResult) -> CommandResult:
    """Raise KaggleCommandError for a non-zero exit or a failure the CLI reports with exit code 0."""
    out = result.output
    for marker, what in (
        (DATASET_CREATE_ERROR, "Kaggle refused to create the dataset"),
        (DATASET_VERSION_ERROR, "Kaggle refused the new dataset version"),
        (KERNEL_PUSH_ERROR, "Kaggle refused the kernel push"),
    ):
        line = _line_with(out, marker)
        if line is not None:
            raise KaggleCommandError(f"{what} (`{result.command}` exited {result.returncode}): {line}")
    bad = INVALID_SOURCES.search(out)
    if bad:
        raise KaggleCommandError(
            f"`{result.command}`: {bad.group(0).strip()} Kaggle took the push anyway: that kernel version runs "
            "without these sources and must not be submitted. Check the dataset ids (owner/slug) and that the "
            "datasets finished processing (python -m mcq.kaggle status), then push again."
        )
    if result.returncode != 0 and OFFLINE.search(out):
        reasons = {
            "Failed to resolve": "api.kaggle.com could not be resolved",
            "Network is unreachable": "the network is unreachable",
            "Connection refused": "the connection was refused",
        }
        reason = next((text for marker, text in reasons.items() if marker in out), "no connection to api.kaggle.com")
        raise KaggleCommandError(
            f"cannot reach Kaggle (offline?): `{result.command}` exited {result.returncode} ({reason}). "
            "Check the network and run the step again."
        )
    if result.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-6:]) or "(no output)"
        raise KaggleCommandError(f"`{result.command}` failed with exit code {result.returncode}:\n{tail}")
    return result


def _line_with(text: str, marker: str) -> str | None:
    for line in text.splitlines():
        if marker in line:
            return line.strip()
    return None


def slug_in_use(result: CommandResult) -> bool:
    """`datasets create` found the slug taken (by our own dataset, as slugs are per owner): make a version instead."""
    line = _line_with(result.output, DATASET_CREATE_ERROR)
    return line is not None and SLUG_IN_USE in line


def pushed_version(output: str) -> int | None:
    match = PUSHED_VERSION.search(output)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class KernelStatus:
    """A kernel run's state (QUEUED, RUNNING, COMPLETE, ERROR, CANCEL_*) and Kaggle's failure message."""

    state: str
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.state in KERNEL_DONE

    @property
    def failed(self) -> bool:
        return self.state in KERNEL_FAILED


def parse_kernel_status(output: str) -> KernelStatus:
    """Read `kaggle kernels status`: 'OWNER/SLUG has status "KernelWorkerStatus.ERROR"' (older CLIs: "error")
    and, for a failed run, 'Failure message: "..."'."""
    match = KERNEL_STATUS.search(output)
    if not match:
        raise KaggleCommandError(f"cannot read a kernel status from the kaggle output:\n{output.strip()[-500:]}")
    state = match.group(1).rsplit(".", 1)[-1].strip().upper()
    failure = FAILURE_MESSAGE.search(output)
    return KernelStatus(state, failure.group(1) if failure else None)


def parse_submissions(output: str) -> list[dict[str, str]]:
    """Rows of `kaggle competitions submissions COMP --csv` (newest first as Kaggle lists them)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ref,fileName,")), None)
    if start is None:
        if "No submissions found" in output:
            return []
        raise KaggleCommandError(f"cannot read the submissions list from the kaggle output:\n{output.strip()[-500:]}")
    return list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))


def newest_submission(
    rows: list[dict[str, str]], description: str | None = None, ref: str | None = None
) -> dict[str, str] | None:
    """The submission `ref` when given (None until Kaggle lists it); else the latest with our description
    (None when there is none: an older submission is never taken for the new one); else the latest."""
    if ref is not None:
        mine = [r for r in rows if str(r.get("ref")) == str(ref)]
    elif description is not None:
        mine = [r for r in rows if r.get("description") == description]
    else:
        mine = rows
    return max(mine, key=lambda r: r.get("date") or "", default=None)


def submission_ref(output: str) -> str | None:
    """The new submission's ref from `kaggle competitions submit` ('Submission ref: 51234567')."""
    match = SUBMISSION_REF.search(output)
    return match.group(1) if match else None


def submission_state(row: dict[str, str]) -> str:
    """'SubmissionStatus.COMPLETE' -> 'COMPLETE'."""
    return (row.get("status") or "").rsplit(".", 1)[-1].upper()
