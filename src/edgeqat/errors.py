"""Errors a user can act on. The CLI prints their message without a traceback."""


class EdgeqatError(Exception):
    """Base class: the message names the file, key or value at fault."""


class ConfigError(EdgeqatError):
    """A parameter is unknown, of the wrong type, or out of range."""


class DataError(EdgeqatError):
    """Input data is missing, unreadable or inconsistent."""


class ModelError(EdgeqatError):
    """A model file is missing, unreadable or does not fit the data."""


class GateFailed(EdgeqatError):
    """The pipeline ran, but its model failed a required gate (a device budget): nothing is
    registered. Exit status 1, like a failing test, not 2 (bad input)."""

    exit_code = 1


class UnsafePath(EdgeqatError):
    """A name from a file, registry entry, tag or parameter would leave the folder it belongs
    in, or an output would replace something that is not an edgeqat output."""


class OutOfSpace(EdgeqatError):
    """The disk (or quota) filled up while an output was written; nothing half-written is kept."""
class DeviceBudgetError(ConfigError):
    """Before any training: the model these settings describe cannot pass a required device
    (a budget checked from its graph); the message names the device, the figure, the budget
    and settings that would pass."""
