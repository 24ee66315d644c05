"""Open book from the command line:
`python -m mcq.retrieve build --corpus PATH... --out INDEX` and
`python -m mcq.retrieve context --index INDEX --questions IN --out OUT --k 5`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mcq.cli import main_guard, positive_int, setup_logging, share
from mcq.errors import ConfigError
from mcq.retrieve.settings import (
    DENSE_KINDS,
    HYBRID_DENSE_WEIGHT,
    RETRIEVERS,
    ContextSettings,
    IndexSettings,
    PassageSettings,
    SearchSettings,
)

DEFAULTS = PassageSettings()
SEARCH = SearchSettings()
CONTEXT = ContextSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mcq.retrieve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="index a corpus", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    build.add_argument("--corpus", nargs="+", required=True, help="CSV/TSV/Parquet/JSONL files or folders of them")
    build.add_argument("--out", required=True, help="index folder (written atomically; an older index is replaced)")
    build.add_argument("--retriever", choices=RETRIEVERS, default="bm25", help="lexical, dense or both (hybrid)")
    build.add_argument("--text-column", help="the column holding the text (default: text, passage, content, ...)")
    build.add_argument("--max-words", type=positive_int, default=DEFAULTS.max_words, help="words per passage at most")
    build.add_argument("--overlap-words", type=int, default=DEFAULTS.overlap_words, help="words a window repeats")
    build.add_argument("--min-words", type=int, default=DEFAULTS.min_words, help="shorter paragraphs join the next")
    build.add_argument("--no-title", action="store_true", help="do not search or show the title with each passage")
    build.add_argument("--embedder", help="dense/hybrid: local sentence-transformers folder or package:<module>")
    build.add_argument("--dense-kind", choices=DENSE_KINDS, default="auto", help="faiss: exact or IVF-PQ")
    build.add_argument(
        "--dense-weight",
        type=share,
        default=HYBRID_DENSE_WEIGHT,
        help="hybrid: dense's share of the rank fusion (0 to 1; BM25 has the rest)",
    )
    build.add_argument(
        "--nprobe", type=positive_int, default=SEARCH.nprobe, help="IVF-PQ: lists a query visits (search setting)"
    )
    build.add_argument(
        "--query-terms",
        type=int,
        default=SEARCH.query_terms,
        help="BM25: look up only a query's N rarest words (0: all; a search setting, see docs/BENCHMARKS.md)",
    )
    ctx = sub.add_parser(
        "context",
        help="add retrieved context to a question file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ctx.add_argument("--index", required=True, help="index folder made by `build`")
    ctx.add_argument("--questions", required=True, help="question file (CSV/TSV/Parquet/JSONL with prompt, A, B, ...)")
    ctx.add_argument("--out", required=True, help="the same questions with a context column (same format as its name)")
    ctx.add_argument("--k", type=positive_int, default=CONTEXT.k, help="passages per question, best first")
    ctx.add_argument("--max-chars", type=positive_int, default=CONTEXT.max_chars, help="characters of context at most")
    verify = sub.add_parser("verify", help="check every file of an index against its manifest's sizes and checksums")
    verify.add_argument("--index", required=True, help="index folder made by `build`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.command == "build":
        return _build(args)
    if args.command == "verify":
        return _verify(args)
    return _context(args)


def _verify(args: argparse.Namespace) -> int:
    """Every checksum (open_index checks sizes and small files only): before shipping a copied index."""
    from mcq.retrieve.index import check_files, read_manifest

    manifest = read_manifest(args.index)
    if "files" not in manifest:
        raise ConfigError(f"{args.index}: its manifest lists no files (an older mcq built it); build it again")
    check_files(Path(args.index), manifest, verify=True)
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    print(f"{args.index}: {len(manifest['files'])} files, {size / 2**20:.1f} MiB, every size and checksum as built")
    return 0


def _build(args: argparse.Namespace) -> int:
    from mcq.retrieve.index import build_index

    passages = PassageSettings(args.max_words, args.overlap_words, args.min_words, not args.no_title)
    settings = IndexSettings(args.retriever, passages, args.embedder, args.dense_kind, dense_weight=args.dense_weight)
    search = SearchSettings(args.nprobe, args.query_terms)
    manifest = build_index(args.corpus, args.out, settings, args.text_column, progress=True, search=search)
    print(
        f"index {args.out}: {manifest['passages']} passages from {manifest['corpus']['articles']} articles "
        f"({manifest['corpus']['duplicates']} duplicates dropped), {settings.retriever}, "
        f"{manifest['disk_bytes'] / 2**20:.1f} MiB on disk, ~{manifest['ram_bytes'] / 2**20:.0f} MiB to search; "
        f"built in {manifest['build_s']:.1f}s"
    )
    return 0


def _context(args: argparse.Namespace) -> int:
    from mcq.retrieve.context import retrieve_contexts
    from mcq.retrieve.index import open_index, read_manifest
    from mcq.retrieve.table import queries_of, read_table, with_context, write_table

    settings = ContextSettings(args.k, args.max_chars)
    if Path(args.out).is_dir():
        raise ConfigError(
            f"--out {args.out}: is a folder; give the question file to write (e.g. {args.out}/q_ctx.csv)"
        )
    read_manifest(args.index)  # a wrong index folder fails before a large question file is read
    frame = read_table(args.questions)
    prompts, options = queries_of(frame, args.questions)
    index = open_index(args.index)
    contexts = retrieve_contexts(index, prompts, options, settings, progress=True)
    write_table(with_context(frame, contexts), args.out)
    empty = sum(not c for c in contexts)
    print(f"{args.out}: {len(contexts)} questions with context (k={settings.k}, {empty} without a match)")
    return 0


def run() -> None:
    """Console-script entry point (mcq-retrieve, python -m mcq.retrieve)."""
    sys.exit(main_guard(main))
