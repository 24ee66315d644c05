"""Eager vs disentangled-flash attention on the same random weights (DeBERTa-v3-large's shape, a few
layers): logits and every gradient, on padded multiple-choice batches at realistic lengths, fp32, no
dropout. On CPU the library runs its PyTorch backend; on CUDA its Triton kernels (strict fp32).

    python bench/attention_parity.py                 # 2 layers, lengths 256 and 512
    python bench/attention_parity.py --cpu-smoke     # tiny config (tests use it)

`bench/gpu_check.py` prints the same rows on a GPU.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import random_deberta  # noqa: E402
from mcq.core.arch import (
    deberta_v3_large_config,  # noqa: E402
    tiny_deberta_config,  # noqa: E402
)
from mcq.core.attention import use_attention  # noqa: E402

# The classifier's bias adds the same number to every option's logit, which the softmax over options
# cancels: its gradient is zero in exact arithmetic (both paths give ~1e-8 of rounding), so it is not compared.
ZERO_GRADIENT = {"classifier.bias"}


def padded_batch(vocab: int, length: int, device: torch.device, seed: int) -> dict:
    """2 questions x 2 options of `length` tokens; one option cut to a third, one to length - 5."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (2, 2, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 1, length // 3 :] = 0
    mask[1, 0, length - 5 :] = 0
    return {
        "input_ids": (ids * mask).to(device),
        "attention_mask": mask.to(device),
        "labels": torch.tensor([1, 0], device=device),
    }


def compare(config, device: torch.device, lengths: list[int]) -> list[dict]:
    """Max |logit difference| and max relative gradient difference, eager vs flash, per length."""
    config = copy.deepcopy(config)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    eager = random_deberta(config, device).train()
    flash = copy.deepcopy(eager)
    backend = use_attention(flash, "disentangled-flash", device)
    results = []
    for length in lengths:
        batch = padded_batch(config.vocab_size, length, device, seed=length)
        (logits_a, grads_a), (logits_b, grads_b) = (forward_backward(m, batch) for m in (eager, flash))
        grad_diff = max(
            ((grads_a[n] - grads_b[n]).norm() / grads_a[n].norm()).item() for n in grads_a if n not in ZERO_GRADIENT
        )
        results.append(
            {
                "length": length,
                "backend": backend,
                "logit_diff": (logits_a - logits_b).abs().max().item(),
                "grad_diff": grad_diff,
                "same_params": grads_a.keys() == grads_b.keys(),
            }
        )
    return results


def forward_backward(model, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    return out.logits.detach().float(), {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}


def rows(results: list[dict], layers: int) -> list[tuple[str, str]]:
    """Table rows, one per length."""
    return [
        (
            f"parity eager vs disentangled-flash ({r['backend']} backend), {layers} layers, fp32, "
            f"length {r['length']}",
            f"max logit diff {r['logit_diff']:.1e}, max gradient diff {r['grad_diff']:.1e} (relative)"
            + ("" if r["same_params"] else ", DIFFERENT parameters got gradients"),
        )
        for r in results
    ]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2, help="encoder layers of DeBERTa-v3-large kept")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny config, one short length")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
    if args.cpu_smoke:
        config, args.lengths = tiny_deberta_config(), [40]
    else:
        config = deberta_v3_large_config()
        config.num_hidden_layers = args.layers
    print("| comparison | result |\n|---|---|")
    for name, value in rows(compare(config, device, args.lengths), config.num_hidden_layers):
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
