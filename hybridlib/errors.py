"""Expected errors: bad input, a busy directory, a run that cannot go on. The command line prints their
message (which names the file, field and value) without a traceback; anything else is a bug."""


class HybridError(Exception):
    """Base of every expected error."""


class ConfigError(HybridError, ValueError):
    """A profile field, strategy, notebook parameter or command-line value with a wrong type, range or name."""


class TrainingError(HybridError, RuntimeError):
    """A training run that cannot go on: a damaged checkpoint or log, a non-finite loss, a collapse."""
