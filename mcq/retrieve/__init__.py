"""Open book: passages for every question from a corpus index (BM25, TF-IDF, dense or hybrid), joined into
the `context` that mcq.core.features puts after the prompt. Imports only the shared helpers, so the kernel
(mcq.core) can retrieve without the training room."""
