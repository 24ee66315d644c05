"""Backbone configurations built in code: the published DeBERTa-v3-large (parameter counts, memory and speed
checks without a download) and the tiny DeBERTa-v3-style one that tests and smoke benchmarks train."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# microsoft/deberta-v3-large config.json as published on the Hugging Face hub.
DEBERTA_V3_LARGE: dict[str, Any] = dict(
    model_type="deberta-v2",
    vocab_size=128100,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=0,
    initializer_range=0.02,
    layer_norm_eps=1e-7,
    relative_attention=True,
    max_relative_positions=-1,
    position_buckets=256,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type=["p2c", "c2p"],
    position_biased_input=False,
    pad_token_id=0,
    pooler_hidden_size=1024,
    pooler_dropout=0,
    pooler_hidden_act="gelu",
)


def deberta_v3_large_config():
    """A DebertaV2Config identical to microsoft/deberta-v3-large's."""
    from transformers import DebertaV2Config

    values = {k: v for k, v in DEBERTA_V3_LARGE.items() if k != "model_type"}
    return DebertaV2Config(**values)


def tiny_deberta_config(vocab_size: int = 128, hidden: int = 32, heads: int = 2, layers: int = 2, **overrides: Any):
    """A DeBERTa-v3-style config small enough for CPU tests: relative positions only, no token types."""
    from transformers import DebertaV2Config

    values: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        type_vocab_size=0,
        relative_attention=True,
        position_biased_input=False,
        pos_att_type=["p2c", "c2p"],
        position_buckets=32,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pad_token_id=0,
        pooler_hidden_size=hidden,
    )
    return DebertaV2Config(**{**values, **overrides})


def save_tiny_deberta(folder, texts: Iterable[str], vocab_size: int = 96, **config: Any):
    """Write a tiny DeBERTa-v3-style backbone to `folder` (created if missing): a sentencepiece unigram tokenizer
    trained on `texts` with DeBERTa's special pieces, and a randomly initialised model (torch seed 0) of
    `tiny_deberta_config(**config)`. Tests and smoke benchmarks use it; nothing is downloaded."""
    import io
    from pathlib import Path

    import sentencepiece as spm
    import torch
    from transformers import DebertaV2Model, DebertaV2Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece="[PAD]",
        unk_piece="[UNK]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        user_defined_symbols=["[MASK]"],
        minloglevel=2,
    )
    (folder / "spm.model").write_bytes(buf.getvalue())
    tokenizer = DebertaV2Tokenizer.from_pretrained(folder)
    (folder / "spm.model").unlink()
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    DebertaV2Model(tiny_deberta_config(vocab_size=len(tokenizer), **config)).save_pretrained(folder)
    return folder
