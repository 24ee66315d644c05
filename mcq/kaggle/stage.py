"""What goes to Kaggle: the staged models and code datasets, their metadata, and the kernel metadata.

Staging only copies files; nothing here talks to Kaggle. `mcq.kaggle` uploads the staged folders with
the kaggle CLI and `mcq.rehearse` unpacks them the way Kaggle does to run the kernel locally.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slugify import slugify  # python-slugify, which the kaggle CLI depends on and slugifies titles with

from mcq import __version__
from mcq.errors import KaggleSetupError
from mcq.io import atomic_write_text, clean_leftovers, replace_dir, writes_to

COMPETITION = "kaggle-llm-science-exam"
DATASET_METADATA = "dataset-metadata.json"
KERNEL_METADATA = "kernel-metadata.json"
CODE_MANIFEST = "mcq_code.json"
DEFAULT_LICENSE = "CC0-1.0"
SOURCE_DIR = Path(__file__).resolve().parents[2]  # the checkout: pyproject.toml, mcq/, kernels/
WHEEL_SOURCES = ("pyproject.toml", "requirements.txt", "README.md")  # besides mcq/, what the build reads
CODE_ENTRY = "mcq.infer.run.run_inference"  # what the kernel calls
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
# Staged text files are scanned for credential values; weights above this size are not read.
SCAN_LIMIT_BYTES = 64 * 2**20


@dataclass
class StagedDataset:
    """A folder laid out for `kaggle datasets create|version -p PATH --dir-mode zip`."""

    path: Path
    ref: str
    entries: list[str]
    skipped: list[str] = field(default_factory=list)


def check_owner(owner: str | None, source: str = "--owner") -> str:
    """A Kaggle user name as it appears in `owner/slug` references."""
    if not owner:
        raise KaggleSetupError(
            "no Kaggle owner: pass --owner YOUR_KAGGLE_USERNAME (it is not in the credentials found)."
        )
    if not OWNER_RE.match(owner):
        raise KaggleSetupError(
            f"{source} '{owner}' is not a Kaggle user name (letters, digits, '-' or '_')"
            + ("." if source == "--owner" else "; fix it there, or pass --owner YOUR_KAGGLE_USERNAME.")
        )
    return owner


def check_slug(slug: str, what: str, flag: str, lo: int = 6, hi: int = 50) -> str:
    """Kaggle rejects slugs outside lo..hi characters or with characters other than a-z, 0-9 and '-'."""
    if not lo <= len(slug) <= hi:
        raise KaggleSetupError(f"{flag} '{slug}': a {what} slug must be {lo} to {hi} characters (it has {len(slug)}).")
    if not SLUG_RE.match(slug):
        raise KaggleSetupError(
            f"{flag} '{slug}': a {what} slug may hold only lowercase letters, digits and single hyphens "
            "(no leading or trailing hyphen), e.g. 'llmse-mcq-models'."
        )
    return slug


def check_title(title: str, what: str, flag: str, lo: int = 6, hi: int = 50) -> str:
    """Kaggle rejects dataset titles outside 6..50 characters and kernel titles under 5."""
    if not lo <= len(title.strip()) <= hi:
        raise KaggleSetupError(
            f"{flag} '{title}': a {what} title must be {lo} to {hi} characters (it has {len(title.strip())})."
        )
    return title.strip()


def check_license(name: str) -> str:
    if not name or not name.strip() or "," in name:
        raise KaggleSetupError(
            f"--license '{name}': give exactly one licence name, e.g. CC0-1.0, CC-BY-4.0, apache-2.0."
        )
    return name.strip()


def dataset_metadata(
    owner: str, slug: str, title: str, license_name: str = DEFAULT_LICENSE, what: str = "models"
) -> dict:
    """dataset-metadata.json as `kaggle datasets create` reads it: id, title and exactly one licence."""
    return {
        "id": f"{check_owner(owner)}/{check_slug(slug, 'dataset', f'--{what}-slug')}",
        "title": check_title(title, "dataset", f"--{what}-title"),
        "licenses": [{"name": check_license(license_name)}],
    }


def kernel_metadata(
    owner: str,
    slug: str,
    title: str,
    dataset_sources: Sequence[str],
    machine_shape: str = "NvidiaTeslaT4",
    code_file: str = "kernel.py",
) -> dict:
    """kernel-metadata.json for an internet-free GPU script kernel on the competition's data."""
    check_slug(slug, "kernel", "--kernel-slug", lo=5)
    title = check_title(title, "kernel", "--kernel-title", lo=5)
    # the title must slugify (as the kaggle CLI does, with python-slugify) to the slug: Kaggle derives a new
    # kernel's slug from its title
    if slugify(title) != slug:
        raise KaggleSetupError(
            f"--kernel-title '{title}' gives the slug '{slugify(title)}', not the kernel slug '{slug}': "
            "Kaggle links a "
            f"kernel's title and slug, and a first push would create it under the title's. Use --kernel-title "
            f"'{slug.replace('-', ' ')}' or --kernel-slug {slugify(title)}."
        )
    return {
        "id": f"{check_owner(owner)}/{slug}",
        "title": title,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        # written out because `kaggle kernels push` defaults it to true, and a code competition refuses
        # submissions from kernels with internet on
        "enable_internet": False,
        "dataset_sources": list(dataset_sources),
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": machine_shape,
    }


def write_json(path: Path, data: dict) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def model_files(folder: Path) -> tuple[list[str], list[str]]:
    """(files to stage, entries left out) of an exported model folder: inference files only. An allowed file
    that is a link (weights kept elsewhere) is staged with the bytes it points at."""
    from mcq.core.export import ALLOWED_FILES

    keep, skipped = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        allowed = entry.name in ALLOWED_FILES or SHARD_RE.match(entry.name)
        if allowed and entry.is_file():  # is_file follows a link to its target
            keep.append(entry.name)
        else:
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
    return keep, skipped


def stage_models(
    folders: Sequence[Path], dest: Path, meta: dict, secrets: Iterable[str] = (), allow_mixed: bool = False
) -> StagedDataset:
    """Lay out the exported models as one dataset: DEST/<name>/ per model plus dataset-metadata.json."""
    from mcq.core.export import find_model_folders
    from mcq.core.predict import inspect_models
    from mcq.errors import ModelFolderError

    # every folder is checked as inference checks it (and models that could not be ensembled are refused)
    # before anything is written
    try:
        infos = inspect_models(find_model_folders(list(folders)), allow_mixed=allow_mixed)
    except ModelFolderError as err:
        raise KaggleSetupError(str(err)) from err
    names = _unique_names([m.path for m in infos])
    tmp = _fresh(dest)
    skipped, origin = [], {}
    with _removed_on_failure(tmp):
        for name, info in zip(names, infos):
            keep, left_out = model_files(info.path)  # only inference files are copied (hard-linked where possible)
            (tmp / name).mkdir()
            for file in keep:
                _link_or_copy(info.path / file, tmp / name / file)
                origin[tmp / name / file] = info.path / file
            skipped += [f"{info.path}/{s}" for s in left_out]
        write_json(tmp / DATASET_METADATA, meta)
        check_no_secrets(tmp, secrets, origin)
    return StagedDataset(replace_dir(tmp, dest), meta["id"], names, skipped)


def kaggle_lacks(retriever: str) -> list[str]:
    """The pip packages an index of this retriever needs that the kernel must get as wheels."""
    from mcq.retrieve.registry import kaggle_lacks as lacks

    return lacks(retriever)


def wheel_names(wheels: Iterable[Path]) -> set[str]:
    """The normalised project names (lower case, '-' for '_') of wheel files."""
    return {w.name.split("-")[0].lower().replace("_", "-") for w in wheels}


def stage_index(index: Path, dest: Path, meta: dict, secrets: Iterable[str] = ()) -> StagedDataset:
    """Lay out a retrieval index as a dataset: DEST/<index name>/ holding the files its manifest lists (sizes
    and checksums verified first) and the manifest; nothing else of the folder, and no symbolic link (the
    kaggle CLI's zip would follow it)."""
    from mcq.errors import RetrievalError
    from mcq.retrieve.index import MANIFEST, check_files, read_manifest
    from mcq.retrieve.store import PassageStore

    index = Path(index)
    try:
        manifest = read_manifest(index)
        if "files" not in manifest:
            raise RetrievalError(f"{index}: its manifest lists no files (an older mcq built it); build it again")
        for name in [*manifest["files"], MANIFEST]:
            if (index / name).is_symlink():
                raise RetrievalError(f"{index}: {name}: is a symbolic link; copy the real file into the index")
        check_files(index, manifest, verify=True)
        stored = len(PassageStore(index))
    except RetrievalError as err:
        raise KaggleSetupError(f"--index: {err}") from err
    if stored != manifest["passages"]:
        raise KaggleSetupError(f"--index {index}: {stored} passages stored, manifest says {manifest['passages']}")
    allowed = [*manifest["files"], MANIFEST]
    skipped = sorted(
        p.relative_to(index).as_posix()
        for p in index.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(index).as_posix() not in allowed
    )
    tmp = _fresh(dest)
    origin = {}
    with _removed_on_failure(tmp):
        name = index.resolve().name
        for rel in sorted(allowed):
            src, dst = index / rel, tmp / name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(src, dst)
            origin[dst] = src
        write_json(tmp / DATASET_METADATA, meta)
        check_no_secrets(tmp, secrets, origin)
    return StagedDataset(replace_dir(tmp, dest), meta["id"], [name], skipped)


def build_wheel(out_dir: Path, source: Path = SOURCE_DIR) -> Path:
    """A wheel of the mcq package built from the source checkout (from a copy: the checkout gets no build
    files); built once per process for the same sources."""
    if not (source / "pyproject.toml").is_file() or not (source / "mcq" / "__init__.py").is_file():
        raise KaggleSetupError(
            f"{source}: not an mcq source checkout (no pyproject.toml and mcq/); push-code builds the code "
            "dataset's wheel from the checkout, so run it there (pip install -e .)."
        )
    files = sorted(p for p in (source / "mcq").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [source / name for name in WHEEL_SOURCES]
    digest = hashlib.sha256(b"".join(str(p.relative_to(source)).encode() + p.read_bytes() for p in files)).hexdigest()
    if digest not in _WHEELS:
        folder = Path(tempfile.mkdtemp(prefix="mcq-wheel-"))
        atexit.register(shutil.rmtree, folder, True)  # the cache lives as long as the process
        _WHEELS[digest] = _pip_wheel(source, folder)
    return Path(shutil.copy2(_WHEELS[digest], out_dir / _WHEELS[digest].name))


_WHEELS: dict[str, Path] = {}  # source digest -> a wheel built in this process


def _pip_wheel(source: Path, out_dir: Path) -> Path:
    """`pip wheel --no-deps` of a copy of the package's sources; no network (no index, no build isolation)."""
    with tempfile.TemporaryDirectory(prefix="mcq-src-") as work:
        tree = Path(work)
        shutil.copytree(source / "mcq", tree / "mcq", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in WHEEL_SOURCES:
            shutil.copy2(source / name, tree / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        proc = subprocess.run([*cmd, "-w", str(out_dir), str(tree)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise KaggleSetupError(
            f"building the mcq wheel failed (pip wheel exited {proc.returncode}; it needs setuptools):\n{tail}"
        )
    [wheel] = out_dir.glob("mcq-*.whl")
    return wheel


def stage_code(
    dest: Path, meta: dict, extra_wheels: Sequence[Path] = (), secrets: Iterable[str] = (), source: Path = SOURCE_DIR
) -> StagedDataset:
    """Lay out the inference code as a dataset: the mcq wheel, wheels of dependencies Kaggle's image lacks,
    and a manifest; the kernel installs them with `pip install --no-index --no-deps`."""
    tmp = _fresh(dest)
    with _removed_on_failure(tmp):
        return _stage_code(tmp, dest, meta, extra_wheels, secrets, source)


def _stage_code(
    tmp: Path, dest: Path, meta: dict, extra_wheels: Sequence[Path], secrets: Iterable[str], source: Path
) -> StagedDataset:
    wheels = [build_wheel(tmp, source)]
    for wheel in map(Path, extra_wheels):
        if wheel.suffix != ".whl" or not wheel.is_file():
            raise KaggleSetupError(
                f"--extra-wheels {wheel}: not a wheel file (pip download --only-binary=:all: gets one)."
            )
        wheels.append(Path(shutil.copy2(wheel, tmp / wheel.name)))
    manifest = {
        "package": "mcq",
        "version": __version__,
        "entry": CODE_ENTRY,
        "wheels": {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels},
    }
    write_json(tmp / CODE_MANIFEST, manifest)
    write_json(tmp / DATASET_METADATA, meta)
    check_no_secrets(tmp, secrets, {w: Path(e) for w, e in zip(wheels[1:], extra_wheels)})
    return StagedDataset(replace_dir(tmp, dest), meta["id"], [w.name for w in wheels] + [CODE_MANIFEST])


@contextlib.contextmanager
def _removed_on_failure(tmp: Path) -> Iterator[None]:
    """A staging folder that fails (a credential found, a full disk: one line) is removed: its copies never
    linger."""
    try:
        with writes_to(tmp.parent, "nothing was staged or uploaded. Free disk space (or --stage-dir elsewhere)"):
            yield
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_no_secrets(folder: Path, secrets: Iterable[str], origin: Mapping[Path, Path] | None = None) -> None:
    """Refuse to upload a staged folder in which any credential value appears (naming the source file, never
    the value)."""
    needles = [s.encode() for s in secrets if s and len(s) >= 8]
    if not needles:
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.stat().st_size > SCAN_LIMIT_BYTES:
            continue
        data = path.read_bytes()
        if any(n in data for n in needles):
            raise KaggleSetupError(
                f"{(origin or {}).get(path, path)}: holds one of your Kaggle credentials; nothing was staged or "
                "uploaded. Remove it from that file."
            )


def _unique_names(paths: list[Path]) -> list[str]:
    """Folder names inside the dataset: the export's name, prefixed by its run when two clash."""
    names = [p.name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{(p.parent.parent if p.parent.name == 'models' else p.parent).name}-{p.name}" for p in paths]
    if len(set(names)) < len(names):
        raise KaggleSetupError(f"two model folders would share a name in the dataset: {[str(p) for p in paths]}")
    return names


def _fresh(dest: Path) -> Path:
    clean_leftovers(dest)  # a killed staging's folder (it can hold every model: gigabytes)
    tmp = dest.parent / f".{dest.name}.staging-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link multi-GB weights where the file system allows it, else copy; a symbolic link is resolved first
    (the dataset holds the bytes, never a link)."""
    src = src.resolve()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
