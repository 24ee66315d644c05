"""Open book (issue #11, not built yet): passages for every question from a corpus index (BM25, TF-IDF,
dense), joined into the `context` that mcq.core.features already puts after the prompt."""
