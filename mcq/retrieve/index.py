"""An index folder: the passages, one or two retrievers over them, and a manifest saying how it was built.

The folder is built under a temporary name and renamed into place when complete. Opening it with other
settings than it was built with is an error; `Index.search` answers with passage numbers, best first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcq.errors import IndexMismatchError, RetrievalError
from mcq.io import clean_leftovers, folder_lock, library_versions, replace_dir, writes_to
from mcq.retrieve.corpus import Passage, batched, corpus_files, passages
from mcq.retrieve.lexical import DOC_FREQ, DocFreq, DocFreqCounter
from mcq.retrieve.ranking import reciprocal_rank_fusion
from mcq.retrieve.registry import backends, embeddings_spool
from mcq.retrieve.settings import IndexSettings, PassageSettings, SearchSettings
from mcq.retrieve.store import PassageStore, PassageWriter

log = logging.getLogger(__name__)

MANIFEST = "mcq_index.json"
FORMAT = 1
CHUNK = 4096  # passages handed to a retriever at a time
VERSIONED = ("bm25s", "scikit-learn", "faiss-cpu", "sentence-transformers", "numpy", "scipy")
HYBRID_DEPTH = 4  # hybrid: each retriever's top (k x this) are fused
CHEAP_CHECKSUM_BYTES = 32 * 2**20  # files up to this size are checksummed at every open (a few ms)


def build_index(
    corpus: Sequence[str | Path],
    out: str | Path,
    settings: IndexSettings | None = None,
    text_column: str | None = None,
    progress: bool = False,
    search: SearchSettings | None = None,
) -> dict:
    """Read the corpus, store its distinct passages, build the retriever(s); return the manifest."""
    settings = settings or IndexSettings()
    search = search or SearchSettings()
    out = Path(out)
    _check_out(out)
    files = corpus_files(corpus)  # a missing or unknown file fails now, before any progress bar or temp folder
    out.parent.mkdir(parents=True, exist_ok=True)
    advice = "wait for it to finish, or choose another --out"
    with folder_lock(out.parent / f".{out.name}.lock", "an index build", advice, target=out):
        clean_leftovers(out)  # a killed build's temporary folder; an index it had moved aside is put back
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        kept = "the previous index is unchanged" if out.exists() else "no index was written"
        try:
            with writes_to(out, f"{kept}. {space_needed(files, out.parent)}, then build again"):
                manifest = _build(corpus, tmp, settings, text_column, progress, out, search)
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
                replace_dir(tmp, out)
            shutil.rmtree(embeddings_spool(out), ignore_errors=True)  # built: a resume has nothing to reuse
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest


def space_needed(files: Sequence[Path], where: Path) -> str:
    """What a full disk should be told: the index needs about twice its corpus on disk while it is built."""
    need = 2 * sum(f.stat().st_size for f in files)
    free = shutil.disk_usage(where).free
    return (
        f"Free disk space: the index needs about {need / 2**30:.2f} GiB (twice its corpus), "
        f"{free / 2**30:.2f} GiB is free on {where}"
    )


def _check_out(out: Path) -> None:
    """An existing folder is replaced only when it is an index (never a folder of the user's files)."""
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file()):
        raise RetrievalError(f"--out {out}: exists and is not an index folder; give a new folder name")


def _build(corpus, tmp: Path, settings: IndexSettings, text_column: str | None, progress: bool, out: Path,
           search: SearchSettings) -> dict:  # fmt: skip
    start = time.perf_counter()
    builders = {b.name: b.builder(settings, tmp, out, search) for b in backends(settings.retriever)}
    writer = PassageWriter(tmp)
    freq = None if "bm25" in builders else DocFreqCounter()  # BM25 counts the same words as it builds
    stats: dict = {}
    stream = passages(corpus, settings.passages, text_column, stats)
    bar = _bar(progress, "passages")
    for chunk in batched(stream, CHUNK):
        for passage in chunk:
            writer.add(passage)
        texts = [p.search_text(settings.passages.title_in_text) for p in chunk]
        if freq is not None:
            freq.add(texts)
        for builder in builders.values():
            builder.add(texts)
        bar.update(len(chunk))
    bar.close()
    n = writer.close()
    read_s = time.perf_counter() - start
    store = PassageStore(tmp)

    def search_texts():
        return (p.search_text(settings.passages.title_in_text) for p in store)

    built = {name: builder.finish(tmp, search_texts) for name, builder in builders.items()}
    (freq.result() if freq is not None else builders["bm25"].doc_freq).save(tmp / DOC_FREQ)
    build_s = time.perf_counter() - start
    log.info(
        "indexed %d passages from %d articles (%d duplicates dropped) in %.1fs: %.0f passages/s",
        n, stats["articles"], stats["duplicates"], build_s, n / max(build_s, 1e-9),
    )  # fmt: skip
    return _manifest(tmp, settings, stats, built, corpus, read_s, build_s) | {"search": dataclasses.asdict(search)}


def file_list(folder: Path) -> dict[str, dict]:
    """Every file of an index folder but the manifest: its size and SHA-256 (what open_index checks)."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        out[path.relative_to(folder).as_posix()] = {"bytes": path.stat().st_size, "sha256": digest}
    return out


def check_files(folder: Path, manifest: dict, verify: bool = False) -> None:
    """Each file the manifest lists is there with its size; its checksum too when it is small (cheap) or with
    verify. An index of an older mcq lists no files and is not checked."""
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            problem = "missing"
        elif path.stat().st_size != entry["bytes"]:
            problem = f"{path.stat().st_size} bytes, the manifest says {entry['bytes']}"
        elif (verify or entry["bytes"] <= CHEAP_CHECKSUM_BYTES) and _sha256(path) != entry["sha256"]:
            problem = "its checksum differs from the manifest's (damaged bytes)"
        else:
            continue
        raise RetrievalError(
            f"{folder}: {name}: {problem}; the index is damaged: build the index again (or copy it whole)"
        )


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _manifest(tmp, settings, stats, backends, corpus, read_s, build_s) -> dict:
    files = file_list(tmp)
    disk = sum(entry["bytes"] for entry in files.values())
    identity = json.dumps([stats["fingerprint"], settings.as_dict()], sort_keys=True)
    return {
        "format": FORMAT,
        "fingerprint": hashlib.sha256(identity.encode()).hexdigest()[:16],
        "settings": settings.as_dict(),
        "corpus": {
            "paths": [str(p) for p in corpus],
            "fingerprint": stats["fingerprint"],
            "files": stats["files"],
            "articles": stats["articles"],
            "duplicates": stats["duplicates"],
        },
        "passages": stats["passages"],
        "backends": backends,
        "versions": library_versions(VERSIONED, installed_only=True),
        "disk_bytes": disk,
        "ram_bytes": ram_estimate(tmp, backends),
        "read_s": round(read_s, 2),
        "build_s": round(build_s, 2),
        "files": files,
    }


def ram_estimate(folder: Path, backends: dict) -> int:
    """Bytes of memory a search process needs on top of Python and torch: what the searchers load."""

    def size(sub: str) -> int:
        return (
            sum(p.stat().st_size for p in (folder / sub).rglob("*") if p.is_file()) if (folder / sub).is_dir() else 0
        )

    total = (folder / "passages.offsets.npy").stat().st_size
    total += size("bm25")  # memory-mapped, but every page of a posting list a query touches is read
    total += 3 * size("tfidf")  # the matrix, its transpose, and the vocabulary as a Python dict
    total += size("dense")  # the faiss index and the embedder's weights
    if "dense" in backends:
        total += 300 * 2**20  # the embedder's activations and torch's own buffers
    return int(total)


def _bar(enabled: bool, unit: str):
    from tqdm.auto import tqdm

    return tqdm(unit=f" {unit}", disable=not enabled, mininterval=1.0, dynamic_ncols=True)


@dataclass
class Index:
    folder: Path
    manifest: dict
    store: PassageStore
    searchers: dict
    _freq: DocFreq | None = field(default=None, repr=False)

    @property
    def settings(self) -> IndexSettings:
        return settings_from_dict(self.manifest["settings"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    def __len__(self) -> int:
        return len(self.store)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(passage numbers, scores), each [queries, k], best first; -1 where fewer than k passages match."""
        if self.settings.retriever != "hybrid":
            return self.searchers[self.settings.retriever].search(queries, k)
        depth = max(k * HYBRID_DEPTH, 20)
        rankings = [self.searchers[name].search(queries, depth)[0] for name in ("bm25", "dense")]
        weight = self.settings.dense_weight
        return reciprocal_rank_fusion(rankings, k, weights=[1 - weight, weight])

    def passages(self, numbers: list[int]) -> list[Passage]:
        return self.store.get(numbers)

    def doc_freq(self) -> DocFreq:
        """Word document frequencies over the passages (the IDF of lexical evidence): saved at build time, or
        counted now for an index built before they were (once per open index)."""
        if self._freq is None:
            path = self.folder / DOC_FREQ
            if path.is_file():
                self._freq = DocFreq.load(path)
            else:
                log.info(
                    "%s: no %s (built by an older mcq); counting word frequencies over its passages",
                    self.folder,
                    DOC_FREQ,
                )
                with_title = self.settings.passages.title_in_text
                self._freq = DocFreq.of(p.search_text(with_title) for p in self.store)
        return self._freq

    def embedder(self):
        """The sentence-transformers model a dense or hybrid index searches with (None for sparse ones)."""
        dense = self.searchers.get("dense")
        return None if dense is None else dense.model


def settings_from_dict(raw: dict) -> IndexSettings:
    """A manifest's settings; a missing key is its default, an unknown one (a newer mcq built it) an error."""
    fields = dict(raw)
    passages = dict(fields.get("passages", {}))
    unknown = sorted(set(fields) - _field_names(IndexSettings)) + [
        f"passages.{key}" for key in sorted(set(passages) - _field_names(PassageSettings))
    ]
    if unknown:
        raise RetrievalError(
            f"index settings {', '.join(unknown)} are unknown to this mcq: the index was built by a newer version. "
            "Install that version here (on Kaggle: push-code again) or build the index with this one."
        )
    fields["passages"] = PassageSettings(**passages)
    return IndexSettings(**fields)


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        hint = " (it holds an unfinished build: build it again)" if folder.is_dir() else ""
        raise RetrievalError(
            f"{folder}: not an index folder, no {MANIFEST}{hint}. Build one: python -m mcq.retrieve build"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RetrievalError(f"{path}: not valid JSON ({err.msg}); build the index again") from err
    if not isinstance(manifest, dict):
        raise RetrievalError(f"{path}: not a manifest (a JSON {type(manifest).__name__}); build the index again")
    if manifest.get("format") != FORMAT:
        raise RetrievalError(f"{path}: index format {manifest.get('format')}, this mcq reads {FORMAT}; build it again")
    for key, kind in (("settings", dict), ("passages", int), ("fingerprint", str), ("files", dict)):
        if key in manifest and not isinstance(manifest[key], kind):
            raise RetrievalError(
                f"{path}: '{key}' is {type(manifest[key]).__name__}, not {kind.__name__}; build the index again"
            )
    for key in ("settings", "passages", "fingerprint"):
        if key not in manifest:
            raise RetrievalError(f"{path}: no '{key}'; build the index again")
    return manifest


def open_index(
    folder: str | Path, expect: IndexSettings | None = None, verify: bool = False, search: SearchSettings | None = None
) -> Index:
    """Load an index for searching; with `expect`, settings other than those it was built with are an error.
    Every file's size is checked first (and checksum: small files always, all of them with verify)."""
    folder = Path(folder)
    if not folder.exists():
        clean_leftovers(folder)  # a build killed between its two renames had moved the index aside
    manifest = read_manifest(folder)
    check_files(folder, manifest, verify)
    built = settings_from_dict(manifest["settings"])
    if expect is not None and expect != built:
        differences = settings_differences(built, expect)
        raise IndexMismatchError(
            f"{folder}: built with {differences}; build a new index with these settings", differences
        )
    _warn_versions(folder, manifest.get("versions", {}))
    search = SearchSettings(**(manifest.get("search") or {})) if search is None else search
    searchers = {b.name: b.searcher(folder, search) for b in backends(built.retriever)}
    index = Index(folder, manifest, PassageStore(folder), searchers)
    if len(index) != manifest["passages"]:
        raise RetrievalError(
            f"{folder}: {len(index)} passages stored, manifest says {manifest['passages']}; build again"
        )
    return index


def settings_differences(built: IndexSettings, asked: IndexSettings) -> str:
    """Each setting that differs, as 'key built (asked asked)'."""
    a, b = _flat(built.as_dict()), _flat(asked.as_dict())
    return "; ".join(f"{key} {a[key]!r} (asked {b[key]!r})" for key in sorted(a) if a[key] != b.get(key))


def _flat(raw: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _warn_versions(folder: Path, built: dict) -> None:
    now = library_versions(VERSIONED, installed_only=True)
    changed = [f"{n} {v} -> {now.get(n, 'not installed')}" for n, v in built.items() if now.get(n) != v]
    if changed:
        log.warning(
            "%s: built with other library versions (%s); scores may differ slightly", folder, ", ".join(changed)
        )
