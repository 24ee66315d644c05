"""Inference speed on real questions: our path vs a run_swag-style baseline vs the bare-model floor.

    python bench/infer_speed.py --repeats 3                # exports MiniLM + a random MC head
    python bench/infer_speed.py --models runs/x/models     # or exported folders

ours     : mcq.features.encode once + mcq.predict.predict_logits ((question, option) pairs sorted by
           length in token-budget batches, padded to a multiple of 8, inference_mode)
baseline : every pair padded to max_length (run_swag.py --pad_to_max_length), file order, a fixed
           batch of questions, torch.no_grad, as Trainer.predict would run it
floor    : our batches, tokenised and collated beforehand, through the bare model (model time only)
Model loading is outside every timing; tokenisation is inside ours and the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import AutoTokenizer, default_data_collator  # noqa: E402

from bench.common import MINILM, VALID, cpu_name, export_backbone, median, timed, token_counts  # noqa: E402
from mcq.core.data import read_questions  # noqa: E402
from mcq.core.export import find_model_folders  # noqa: E402
from mcq.core.features import MultipleChoiceCollator, encode, first_texts  # noqa: E402
from mcq.core.predict import load_model, pair_batches, predict_logits  # noqa: E402


def our_batches(features, collator, batch_tokens: int) -> list[dict]:
    """The collated batches predict_logits computes, in its order (for token counts and the floor)."""
    return [batch for _, batch in pair_batches(features, collator, batch_tokens)]


def run_ours(model, questions, tokenizer, max_length: int, batch_tokens: int, device):
    """Tokenise once, then predict in token-budget batches: what infer.py does per model."""
    features = encode(questions, tokenizer, max_length)
    collator = MultipleChoiceCollator(tokenizer, pad_to_multiple_of=8)
    return predict_logits(model, features, collator, device, batch_tokens)


def naive_batches(questions, tokenizer, max_length: int, batch: int) -> list[dict]:
    """run_swag.py --pad_to_max_length: flatten, pad every pair to max_length, un-flatten, file order."""
    n = len(questions.letters)
    firsts = [t for t in first_texts(questions, tokenizer.sep_token or "\n") for _ in range(n)]
    seconds = [o for opts in questions.options for o in opts]
    enc = tokenizer(firsts, seconds, truncation="only_first", max_length=max_length, padding="max_length")
    rows = [{k: v[i : i + n] for k, v in enc.items()} for i in range(0, len(firsts), n)]
    return [default_data_collator(rows[i : i + batch]) for i in range(0, len(rows), batch)]


@torch.no_grad()
def run_baseline(model, questions, tokenizer, max_length: int, batch: int):
    return [model(**b).logits for b in naive_batches(questions, tokenizer, max_length, batch)]


@torch.inference_mode()
def run_floor(model, batches: list[dict]):
    return [model(**b).logits for b in batches]


def bench_model(folder: Path, questions, args) -> list[dict]:
    """Median seconds of the three paths on one model, interleaved per repeat."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(folder, device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    features = encode(questions, tokenizer, args.max_length)
    ours_b = our_batches(features, MultipleChoiceCollator(tokenizer, pad_to_multiple_of=8), args.batch_tokens)
    naive_b = naive_batches(questions, tokenizer, args.max_length, args.batch)
    floor_b = [{k: v.to(device) for k, v in b.items()} for b in ours_b]
    times: dict[str, list[float]] = {"ours": [], "baseline": [], "floor": []}
    run_floor(model, floor_b[:1])  # warm-up
    for r in range(args.repeats):
        times["floor"].append(timed(run_floor, model, floor_b)[1])
        times["ours"].append(
            timed(run_ours, model, questions, tokenizer, args.max_length, args.batch_tokens, device)[1]
        )
        if not args.skip_baseline:
            times["baseline"].append(timed(run_baseline, model, questions, tokenizer, args.max_length, args.batch)[1])
        print(f"  repeat {r + 1}: " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v), flush=True)
    if args.profile:
        profile_ours(model, questions, tokenizer, args, device)
    counts = {"ours": token_counts(ours_b), "baseline": token_counts(naive_b), "floor": token_counts(ours_b)}
    return [
        {"path": k, "seconds": median(v), "runs": v, "real": counts[k][0], "computed": counts[k][1]}
        for k, v in times.items()
        if v
    ]


def profile_ours(model, questions, tokenizer, args, device) -> None:
    """cProfile of one run of our path: where the time beyond the bare model goes."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(run_ours, model, questions, tokenizer, args.max_length, args.batch_tokens, device)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def print_table(name: str, n: int, rows: list[dict]) -> None:
    by = {r["path"]: r for r in rows}
    print(f"\n{name}: {n} questions, medians of {len(rows[0]['runs'])} runs; {cpu_name()}")
    print("| path | median s | questions/s | padding efficiency | runs (s) |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        runs = ", ".join(f"{t:.2f}" for t in r["runs"])
        print(
            f"| {r['path']} | {r['seconds']:.2f} | {n / r['seconds']:.1f} | {r['real'] / r['computed']:.3f} | {runs} |"
        )
    if "baseline" in by:
        print(f"speed-up ours vs baseline: {by['baseline']['seconds'] / by['ours']['seconds']:.2f}x (target >= 2x)")
    print(f"ours / floor: {by['ours']['seconds'] / by['floor']['seconds']:.3f}x (target <= 1.15x)")
    print(f"padding efficiency ours: {by['ours']['real'] / by['ours']['computed']:.3f} (target >= 0.9)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(VALID), help="question file (the 500-question validation set)")
    p.add_argument("--models", nargs="+", help="exported model folders; default: MiniLM with a random head")
    p.add_argument("--max-length", type=int, default=256, help="max tokens per pair, ours and baseline alike")
    p.add_argument("--batch", type=int, default=16, help="baseline: questions per batch")
    p.add_argument("--batch-tokens", type=int, default=16384, help="ours: padded tokens per batch (infer.py default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier when another process holds a core)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--skip-baseline", action="store_true", help="time ours and the floor only")
    p.add_argument("--profile", action="store_true", help="also print cProfile's top entries of one run of ours")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    questions = read_questions(args.data, require_answer=False).head(args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        folders = (
            find_model_folders(args.models)
            if args.models
            else [export_backbone(MINILM, Path(tmp) / "minilm", args.max_length, questions.letters)]
        )
        for folder in folders:
            print_table(folder.name, len(questions), bench_model(folder, questions, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
