"""The attention switch: DeBERTa's own (eager) attention, or disentangled-flash's fused kernel.

DeBERTa attention in transformers has no SDPA/flash path: it builds (pairs x heads x L x L) score
tensors three times per layer (content, c2p, p2c). `disentangled-flash` (PyPI, Apache-2.0) swaps the
encoder for one that computes the same attention without them: Triton kernels on CUDA (forward and
fused backward), an exact PyTorch implementation elsewhere. Parameter names and identities are kept,
so optimizer groups, checkpoints and exported folders are the same as with eager attention, and an
exported model loads without the package.

The library's differentiable encoder serves training and inference alike. Its inference-only encoder
needs every padded width prepared in advance and caches position tables per width and layer (about
190 MB per layer for the 64 widths up to 512 tokens, measured in fp32 on CPU); predictions here use
dynamic widths, so it is not used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from mcq.errors import AttentionError

if TYPE_CHECKING:  # torch is imported by the callers; `infer.py --help` stays fast
    import torch

log = logging.getLogger(__name__)

ATTENTION = ("eager", "disentangled-flash")
DEFAULT_ATTENTION = ATTENTION[0]


def check_attention(name: str) -> str:
    """The attention name, or an AttentionError listing the choices."""
    if name not in ATTENTION:
        raise AttentionError(f"attention: '{name}' is not one of {', '.join(ATTENTION)}")
    return name


def flash_backend(device: torch.device) -> str:
    """disentangled-flash's backend for a device: Triton kernels on CUDA, its PyTorch code elsewhere."""
    return "triton" if device.type == "cuda" else "torch"


def use_attention(model: torch.nn.Module, name: str, device: torch.device) -> str:
    """Put attention `name` into `model` in place (before its optimizer is built); returns the backend
    in use: 'eager', 'triton' or 'torch'. `device` is where the model will run."""
    if check_attention(name) == "eager":
        return "eager"
    backbone = _deberta_backbone(model)
    try:
        from disentangled_flash import DebertaV2OptimizedEncoder, optimize_deberta
    except ImportError as err:
        raise AttentionError(
            "attention: disentangled-flash is not installed; pip install disentangled-flash (or use --attention eager)"
        ) from err
    if isinstance(backbone.encoder, DebertaV2OptimizedEncoder):
        return backbone.encoder.backend
    backend = flash_backend(device)
    optimize_deberta(backbone, backend=backend, inference=False)
    if not isinstance(backbone.encoder, DebertaV2OptimizedEncoder):
        # the library keeps the original encoder when Triton cannot run this shape
        config: Any = model.config
        head_dim = config.hidden_size // config.num_attention_heads
        raise AttentionError(
            f"attention: disentangled-flash cannot use Triton here (head dimension {head_dim}, needs 32, 64 "
            f"or 128, and a torch with triton and torch.library.triton_op); use --attention eager"
        )
    log.info("attention: disentangled-flash, %s backend", backend)
    return backend


def check_supported(name: str, model_type: str, where: str = "this model") -> None:
    """Refuse disentangled-flash for a backbone that is not DeBERTa-v2/v3 (before anything loads)."""
    if check_attention(name) == "disentangled-flash" and model_type != "deberta-v2":
        raise AttentionError(
            f"attention: disentangled-flash needs a DeBERTa-v2/v3 backbone, {where} is '{model_type}'; "
            "use --attention eager"
        )


def _deberta_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The DeBERTa-v2/v3 backbone module of a task model, or an AttentionError naming what the model is."""
    check_supported("disentangled-flash", getattr(model.config, "model_type", "?"))
    return cast("torch.nn.Module", model.deberta)
