"""Exception and warning classes raised by ICP Kit.

Every error the kit raises on bad input is an :class:`IcpError`; its message is
written for the person running the kit: it names the file, column or setting,
says what was expected and what was found, and what to do.
"""

__all__ = [
    "IcpError",
    "ConfigError",
    "DataError",
    "ModelError",
    "IcpWarning",
    "FallbackWarning",
]


class IcpError(Exception):
    """Base class of every error the kit raises on bad input."""


class ConfigError(IcpError):
    """A client config is missing, malformed or refers to something absent."""


class DataError(IcpError):
    """A data source cannot be read or does not hold what the config says."""


class ModelError(IcpError):
    """A model cannot be fitted, read or applied."""


class IcpWarning(UserWarning):
    """Base class of the kit's warnings."""


class FallbackWarning(IcpWarning):
    """The kit fell back to another method, which changes a result."""
