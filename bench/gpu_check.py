"""DeBERTa-v3-large on a CUDA GPU with random weights (no download): train-step time and peak memory
at the recipe's batch, with and without gradient checkpointing; fp16 inference throughput for 4,000
questions; peak memory of one inference batch of 512-token pairs at the kernel's token budget (does it
fit a 16 GB T4?). Every row runs with eager attention and, when `disentangled-flash` is installed,
with its fused kernels too (the `--attention disentangled-flash` switch of train.py and infer.py). Then
the dense embedder in fp32, fp16 and on every GPU (bench/dense_gpu.py).

    python bench/gpu_check.py              # CUDA machine; a few minutes on an H100
    python bench/gpu_check.py --cpu-smoke  # tiny config on CPU: exercises the same code (tests use it)

Without CUDA (and without --cpu-smoke) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.attention_parity import compare  # noqa: E402
from bench.attention_parity import rows as parity_rows
from bench.common import random_deberta  # noqa: E402
from bench.dense_gpu import rows as dense_rows  # noqa: E402
from mcq.core.arch import (
    deberta_v3_large_config,  # noqa: E402
    tiny_deberta_config,  # noqa: E402
)
from mcq.core.attention import use_attention  # noqa: E402
from mcq.core.batching import pad_to, token_budget_batches  # noqa: E402
from mcq.train.lr import (
    LayerRule,  # noqa: E402
    scaled_lr,  # noqa: E402
)
from mcq.train.optim import build_optimizer, param_groups  # noqa: E402
from mcq.train.phases import Phase, freeze_for  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def pair_lengths(n_pairs: int, mean: float, max_length: int, seed: int = 0) -> list[int]:
    """Realistic (prompt, option) pair lengths: a gamma spread around `mean`, clipped to [8, max_length]."""
    rng = random.Random(seed)
    return [min(max_length, max(8, round(rng.gammavariate(6.0, mean / 6.0)))) for _ in range(n_pairs)]


def train_step_time(config, device, args, checkpointing: bool, attention: str) -> dict:
    """Median seconds of a recipe train step (bf16 autocast, AdamW over the recipe's groups) and peak memory."""
    model = random_deberta(config, device).train()
    use_attention(model, attention, device)
    freeze_for(model, Phase.full(1.0, freeze_word_embeddings=True))
    if checkpointing:
        model.activation_checkpointing_enable()
    lr = scaled_lr(1e-4, 256, args.batch)
    optimizer = build_optimizer(param_groups(model, lr, LayerRule("cosine", 0.1, 2.6), 0.01), 1e-6)
    ids = torch.randint(4, config.vocab_size, (args.batch, args.options, args.max_length), device=device)
    labels = torch.randint(0, args.options, (args.batch,), device=device)
    reset_peak(device)
    times = []
    try:
        for step in range(args.warmup + args.steps):
            sync(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(device)
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        return {"step_s": None, "peak_gib": peak_gib(device), "note": "out of memory"}
    finally:
        del model, optimizer
        free(device)
    return {"step_s": sorted(times)[len(times) // 2], "peak_gib": peak_gib(device), "note": ""}


def inference_model(config, device, attention: str):
    """A random-weight model as mcq.predict runs it: fp16 on CUDA, eval mode, the chosen attention."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = random_deberta(config, device).to(dtype).eval()
    use_attention(model, attention, device)
    return model


@torch.inference_mode()
def inference_time(config, device, args, attention: str) -> dict:
    """Median seconds over args.repeats to score args.questions x options pairs the way mcq.predict does
    (pairs sorted by length, token-budget batches, fp16)."""
    model = inference_model(config, device, attention)
    lengths = pair_lengths(args.questions * args.options, args.mean_length, args.max_length)
    batches = token_budget_batches(lengths, 1, args.batch_tokens)
    inputs = [pad_batch([lengths[i] for i in b], config, device) for b in batches]
    model(**inputs[0])  # warm-up (and kernel compilation)
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        for batch in inputs:
            model(**batch).logits.float().cpu()
        sync(device)
        times.append(time.perf_counter() - start)
    del model, inputs
    free(device)
    return {"seconds": sorted(times)[len(times) // 2], "real_tokens": sum(lengths), "batches": len(batches)}


@torch.inference_mode()
def long_batch_memory(config, device, args, attention: str) -> dict:
    """Peak memory of one inference batch of full-length pairs (args.long_length tokens each) at the token
    budget: the worst batch the Kaggle kernel meets with retrieved context."""
    model = inference_model(config, device, attention)
    weights = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
    pairs = max(1, args.batch_tokens // args.long_length)
    reset_peak(device)
    try:
        model(**pad_batch([args.long_length] * pairs, config, device)).logits.float().cpu()
        note = ""
    except torch.OutOfMemoryError:
        note = "out of memory"
    finally:
        del model
    peak = peak_gib(device)
    free(device)
    return {"pairs": pairs, "peak_gib": peak, "weights_gib": weights, "note": note}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def pad_batch(lengths: list[int], config, device) -> dict:
    """Random ids for pairs of these lengths, padded to a multiple of 8, shaped (pairs, 1, width)."""
    width = pad_to(max(lengths), 8)
    ids = torch.randint(4, config.vocab_size, (len(lengths), width), device=device)
    mask = (torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]).long()
    return {"input_ids": (ids * mask)[:, None], "attention_mask": mask[:, None]}


def print_table(device_name: str, rows: list[tuple[str, str]], args) -> None:
    print(
        f"\n{device_name}; torch {torch.__version__}; train batch {args.batch} questions x {args.options} options "
        f"x max_length {args.max_length} (bf16 autocast on CUDA); inference fp16 on CUDA, "
        f"token budget {args.batch_tokens}"
    )
    print("| measurement | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def train_row(r: dict) -> str:
    step = f"{r['step_s']:.3f} s/step" if r["step_s"] else r["note"]
    return step + (f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "")


def infer_rows(attention: str, infer: dict, long: dict, args) -> list[tuple[str, str]]:
    qps = args.questions / infer["seconds"]
    rows = [
        (
            f"inference, {args.questions} questions, {attention} ({infer['batches']} batches, "
            f"median of {args.repeats})",
            f"{infer['seconds']:.1f} s, {qps:.1f} questions/s, "
            f"{infer['real_tokens'] / infer['seconds']:.0f} real tokens/s",
        ),
        (f"projected: 3 models x {args.questions} questions, {attention}", f"{3 * infer['seconds'] / 60:.1f} min"),
    ]
    if long["peak_gib"] is not None:
        value = long["note"] or f"peak {long['peak_gib']:.2f} GiB (weights {long['weights_gib']:.2f} GiB)"
        rows.append((f"one batch of {long['pairs']} x {args.long_length}-token pairs, {attention}", value))
    return rows


def measure(config, device, args, attention: str) -> list[tuple[str, str]]:
    """Every row for one attention implementation."""
    rows = []
    for label, checkpointing in (("no checkpointing", False), ("gradient checkpointing", True)):
        result = train_step_time(config, device, args, checkpointing, attention)
        rows.append(progress((f"train step, {label}, {attention}", train_row(result))))
    infer = inference_time(config, device, args, attention)
    rows += [
        progress(r) for r in infer_rows(attention, infer, long_batch_memory(config, device, args, attention), args)
    ]
    if attention != "eager":
        rows += [progress(r) for r in parity(config, device, args)]
    return rows


def parity(config, device, args) -> list[tuple[str, str]]:
    """Eager vs the switch on the same weights (bench/attention_parity.py): 2 layers, fp32, padded batches."""
    small = copy.deepcopy(config)
    small.num_hidden_layers = min(2, config.num_hidden_layers)
    lengths = [args.max_length, args.long_length]
    return parity_rows(compare(small, device, lengths), small.num_hidden_layers)


def progress(row: tuple[str, str]) -> tuple[str, str]:
    """Print a row as soon as it is measured (stderr), so a run cut short still leaves its figures."""
    print(f"measured: {row[0]}: {row[1]}", file=sys.stderr, flush=True)
    return row


def attentions() -> list[str]:
    """eager, plus disentangled-flash when it is installed (on CPU it runs its PyTorch backend)."""
    try:
        import disentangled_flash  # noqa: F401
    except ImportError:
        print("disentangled-flash is not installed: eager attention only (pip install disentangled-flash)")
        return ["eager"]
    return ["eager", "disentangled-flash"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny DeBERTa config on CPU, small sizes")
    p.add_argument("--batch", type=int, default=45, help="questions per train step (recipe: 45)")
    p.add_argument("--options", type=int, default=5)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--questions", type=int, default=4000, help="inference questions")
    p.add_argument("--mean-length", type=float, default=48, help="mean real tokens per pair (inference)")
    p.add_argument("--batch-tokens", type=int, default=16384, help="inference token budget (infer.py default)")
    p.add_argument("--long-length", type=int, default=512, help="pair length of the worst-case memory batch")
    p.add_argument("--repeats", type=int, default=3, help="inference passes (median reported)")
    p.add_argument("--dense-texts", type=int, default=20_000, help="texts the dense embedder rows embed")
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.batch, args.max_length, args.warmup, args.steps, args.questions = 2, 32, 1, 1, 20
        args.mean_length, args.long_length, args.batch_tokens, args.repeats = 12, 64, 256, 1
        args.dense_texts = 100
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cpu_smoke:
        device, config, name = torch.device("cpu"), tiny_deberta_config(), "CPU smoke test (tiny DeBERTa)"
    elif torch.cuda.is_available():
        device, config = torch.device("cuda"), deberta_v3_large_config()
        name = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), DeBERTa-v3-large random weights"
    else:
        print("no CUDA device: gpu_check measures a GPU; nothing to do here (use --cpu-smoke to exercise the code)")
        return 0
    rows = []
    for attention in attentions():
        try:
            rows += measure(config, device, args, attention)
        except Exception as err:  # one failing variant must not cost the rest of a scarce GPU session
            rows.append((f"{attention}: failed", f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"))
            free(device)
    try:  # issue 23: the dense embedder's fp16 and several-GPU paths (bench/dense_gpu.py)
        rows += [progress(r) for r in dense_rows(args.dense_texts)]
    except Exception as err:
        rows.append(("dense embedding: failed", f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"))
    print_table(name, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
