"""Errors a user can act on. The CLI prints their message without a traceback."""


class EdgeqatError(Exception):
    """Base class: the message names the file, key or value at fault."""


class ConfigError(EdgeqatError):
    """A parameter is unknown, of the wrong type, or out of range."""


class DataError(EdgeqatError):
    """Input data is missing, unreadable or inconsistent."""


class ModelError(EdgeqatError):
    """A model file is missing, unreadable or does not fit the data."""
