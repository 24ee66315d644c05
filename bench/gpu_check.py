"""DeBERTa-v3-large on a CUDA GPU with random weights (no download): train-step time and peak memory
at the recipe's batch, with and without gradient checkpointing, and fp16 inference throughput.

    python bench/gpu_check.py              # CUDA machine; a few minutes on an H100
    python bench/gpu_check.py --cpu-smoke  # tiny config on CPU: exercises the same code (tests use it)

Without CUDA (and without --cpu-smoke) it says so and exits 0.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import DebertaV2Config, DebertaV2ForMultipleChoice  # noqa: E402

from mcq.arch import deberta_v3_large_config  # noqa: E402
from mcq.features import pad_to, token_budget_batches  # noqa: E402
from mcq.lr import scaled_lr  # noqa: E402
from mcq.model import set_phase  # noqa: E402
from mcq.optim import build_optimizer, param_groups  # noqa: E402

TINY = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            type_vocab_size=0, relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
            position_buckets=32, max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def pair_lengths(n_pairs: int, mean: float, max_length: int, seed: int = 0) -> list[int]:
    """Realistic (prompt, option) pair lengths: a gamma spread around `mean`, clipped to [8, max_length]."""
    rng = random.Random(seed)
    return [min(max_length, max(8, round(rng.gammavariate(6.0, mean / 6.0)))) for _ in range(n_pairs)]


def train_step_time(config, device, args, checkpointing: bool) -> dict:
    """Median seconds of a recipe train step (bf16 autocast, AdamW over the recipe's groups) and peak memory."""
    torch.manual_seed(0)
    model = DebertaV2ForMultipleChoice(config).to(device).train()
    set_phase(model, "full", freeze_word_embeddings=True)
    if checkpointing:
        model.activation_checkpointing_enable()
    lr = scaled_lr(1e-4, 256, args.batch)
    optimizer = build_optimizer(param_groups(model, lr, "cosine", 0.1, 2.6, 0.01), 1e-6)
    ids = torch.randint(4, config.vocab_size, (args.batch, args.options, args.max_length), device=device)
    labels = torch.randint(0, args.options, (args.batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
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
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"step_s": sorted(times)[len(times) // 2], "peak_gib": peak_gib(device), "note": ""}


@torch.inference_mode()
def inference_time(config, device, args) -> dict:
    """Seconds to score args.questions x options pairs the way mcq.predict does (pairs by length, fp16)."""
    torch.manual_seed(0)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = DebertaV2ForMultipleChoice(config).to(device, dtype).eval()
    lengths = pair_lengths(args.questions * args.options, args.mean_length, args.max_length)
    batches = token_budget_batches(lengths, 1, args.batch_tokens)
    run = lambda bs: [model(**pad_batch([lengths[i] for i in b], config, device)).logits for b in bs]  # noqa: E731
    run(batches[:1])  # warm-up
    sync(device)
    start = time.perf_counter()
    run(batches)
    sync(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "real_tokens": sum(lengths), "batches": len(batches)}


def pad_batch(lengths: list[int], config, device) -> dict:
    """Random ids for pairs of these lengths, padded to a multiple of 8, shaped (pairs, 1, width)."""
    width = pad_to(max(lengths), 8)
    ids = torch.randint(4, config.vocab_size, (len(lengths), width), device=device)
    mask = (torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]).long()
    return {"input_ids": (ids * mask)[:, None], "attention_mask": mask[:, None]}


def print_table(device_name: str, train: dict, infer: dict, args) -> None:
    print(f"\n{device_name}; torch {torch.__version__}; batch {args.batch} questions x {args.options} options "
          f"x max_length {args.max_length}")
    print("| measurement | value |")
    print("|---|---|")
    for name, r in train.items():
        step = f"{r['step_s']:.3f} s/step" if r["step_s"] else r["note"]
        peak = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
        print(f"| train step, {name} | {step}{peak} |")
    qps = args.questions / infer["seconds"]
    print(f"| inference, {args.questions} questions (fp16, {infer['batches']} batches) | {infer['seconds']:.1f} s, "
          f"{qps:.1f} questions/s, {infer['real_tokens'] / infer['seconds']:.0f} real tokens/s |")
    print(f"| projected: 3 models x {args.questions} questions | {3 * infer['seconds'] / 60:.1f} min |")


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
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.batch, args.max_length, args.warmup, args.steps, args.questions = 2, 32, 1, 1, 20
        args.mean_length = 12
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cpu_smoke:
        device, config, name = torch.device("cpu"), DebertaV2Config(**TINY), "CPU smoke test (tiny DeBERTa)"
    elif torch.cuda.is_available():
        device, config = torch.device("cuda"), deberta_v3_large_config()
        name = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), DeBERTa-v3-large random weights"
    else:
        print("no CUDA device: gpu_check measures a GPU; nothing to do here (use --cpu-smoke to exercise the code)")
        return 0
    train = {label: train_step_time(config, device, args, ckpt)
             for label, ckpt in (("no checkpointing", False), ("gradient checkpointing", True))}
    print_table(name, train, inference_time(config, device, args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
