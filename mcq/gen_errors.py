"""The error that stops a whole generation run, raised by the chat client, the output reader and the run."""


class GenerateError(RuntimeError):
    """A problem that stops the whole run (bad key, wrong URL, server gone); the message says what to do."""
