"""Errors raised by the connectors. Every message names the source, the URL or file, and what is wrong."""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class: `str()` is "<source>: <location>: <reason>"."""

    def __init__(self, source: str, location: str, reason: str):
        self.source = source
        self.location = location
        self.reason = reason
        super().__init__(f"{source}: {location}: {reason}")

    def __reduce__(self):  # picklable across processes (Dagster runs steps in subprocesses)
        return (type(self), (self.source, self.location, self.reason))


class FetchError(ConnectorError):
    """Network failure, HTTP error status or timeout (after the bounded retries), or a missing file."""


class MalformedResponse(ConnectorError):
    """The body cannot be understood: unparsable or truncated XML/JSON, wrong shape, short page, bad counts."""


class ServiceExceptionReport(ConnectorError):
    """The service answered with an OGC ows:ExceptionReport."""

    def __init__(self, source: str, location: str, reason: str, exceptions: list[dict] | None = None):
        super().__init__(source, location, reason)
        self.exceptions = list(exceptions or [])

    def __reduce__(self):
        return (type(self), (self.source, self.location, self.reason, self.exceptions))


class UnsafeInput(ConnectorError):
    """Refused input: zip entry escaping its directory or a symlink; XML with DTD/entity declarations."""


class LimitExceeded(UnsafeInput):
    """A delivery beyond one of its territory's reading limits (archive size, entries, ratio, features,
    vertices): refused before it can exhaust memory or disk."""


class MissingCRS(ConnectorError):
    """The data declares no coordinate reference system and none was configured."""


class UnreadableFile(ConnectorError):
    """Empty file, unknown format, missing or ambiguous layer."""
