"""Credentials never shown: every text a command prints passes through `redact` first."""

from __future__ import annotations

from collections.abc import Iterable


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Text with every secret (of 4+ characters, surrounding whitespace ignored) replaced by '***';
    longer secrets first, so one that contains another is hidden whole."""
    cleaned = {(s or "").strip() for s in secrets}
    for secret in sorted((s for s in cleaned if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
