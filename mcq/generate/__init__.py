"""Extra training questions from any OpenAI-compatible chat server, with quality checks and resume."""
