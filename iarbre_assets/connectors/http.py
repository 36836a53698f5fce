"""A small HTTP GET client: per-request deadline, bounded retries with exponential back-off, every attempt
recorded for the provenance manifest.

Retried: connection errors, timeouts, truncated bodies, 5xx and 429 (rate limiting asks to come back).
A 429 or 503 with `Retry-After` (seconds or an HTTP date) is retried after that long instead of the
back-off, up to `max_retry_after_s` (60 s by default); a server asking for longer is not waited for: the
fetch fails at once saying so, and the source's next poll tries again.
Not retried: other 4xx, whose answer will not change; an OGC ows:ExceptionReport body in a 4xx becomes
ServiceExceptionReport so the service's own explanation reaches the user.

`get` returns (body, final URL, status); `get_response` also gives the response headers, and both accept
extra request `headers` (conditional requests: a 304 Not Modified is an answer, not an error).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from .errors import FetchError, ServiceExceptionReport
from .ows import describe_exceptions, exception_report

SECRET_PARAMS = frozenset(
    {"apikey", "api_key", "api-key", "key", "token", "access_token", "auth", "password", "passwd", "pwd",
     "secret", "client_secret", "signature", "sig"}
)
USER_AGENT = "iarbre-connectors/0.1 (+https://github.com/; plantability platform)"
_CHUNK = 1 << 16


def redact_url(url: str) -> str:
    """The URL with the values of secret-looking query parameters replaced by REDACTED."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k.lower() in SECRET_PARAMS for k, _ in pairs):
        return url
    query = urlencode([(k, "REDACTED" if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe=":,/")
    return urlunsplit(parts._replace(query=query))


def url_with_params(url: str, params: dict | list | None) -> str:
    """The URL a GET with `params` goes to (as requests builds it)."""
    return requests.Request("GET", url, params=params or {}).prepare().url


def without_params(url: str, names: set[str]) -> str:
    """The URL minus the query parameters in `names` (case-insensitive): a stable origin for provenance."""
    parts = urlsplit(url)
    lowered = {n.lower() for n in names}
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in lowered]
    return urlunsplit(parts._replace(query=urlencode(pairs, safe=":,/")))


class _Deadline(Exception):
    pass


@dataclass(frozen=True)
class HttpResponse:
    """A successful (< 400) answer: body, final URL (after redirects), status, headers (case-insensitive)."""

    body: bytes
    url: str
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


class HttpClient:
    """GET with timeouts and retries. `requests` lists every attempt: url, status, bytes, elapsed_s, error."""

    def __init__(self, timeout_s: float = 60, retries: int = 3, backoff_s: float = 1.0,
                 session: requests.Session | None = None, max_retry_after_s: float = 60.0):
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_retry_after_s < 0:
            raise ValueError("timeout_s must be > 0, retries, backoff_s and max_retry_after_s >= 0")
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.requests: list[dict] = []

    def get(self, url: str, params: dict | list | None = None, *, source: str = "http",
            headers: Mapping[str, str] | None = None) -> tuple[bytes, str, int]:
        """Return (body, final URL, status) of a successful (2xx/3xx-followed) GET, or raise.

        FetchError after `retries` extra attempts; ServiceExceptionReport for a 4xx OGC exception body.
        `headers` are sent in addition to the session's (e.g. If-None-Match; a 304 comes back as status 304).
        """
        response = self.get_response(url, params, source=source, headers=headers)
        return response.body, response.url, response.status

    def get_response(self, url: str, params: dict | list | None = None, *, source: str = "http",
                     headers: Mapping[str, str] | None = None) -> HttpResponse:
        """`get`, returning an HttpResponse that also carries the response headers."""
        extra = {"headers": dict(headers)} if headers else {}
        full_url = url_with_params(url, params)
        shown = redact_url(full_url)
        attempts = self.retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            record = {"url": shown, "status": None, "bytes": 0, "elapsed_s": 0.0, "attempt": attempt}
            start = time.monotonic()
            status = None
            try:
                response = self.session.get(url, params=params, timeout=(self.timeout_s, self.timeout_s),
                                            stream=True, **extra)
                status = response.status_code
                record["status"] = status
                try:
                    chunks = []
                    for chunk in response.iter_content(_CHUNK):
                        chunks.append(chunk)
                        if time.monotonic() - start > self.timeout_s:
                            raise _Deadline()
                    body = b"".join(chunks)
                finally:
                    response.close()
                final_url = response.url
            except (_Deadline, requests.Timeout):
                last = f"timed out after {self.timeout_s:g} s"
                record["error"] = "timeout"
            except requests.RequestException as exc:  # connection refused/reset, truncated body, ...
                last = f"connection failed ({type(exc).__name__}: {_short(str(exc))})"
                record["error"] = type(exc).__name__
            else:
                record["bytes"] = len(body)
                record["elapsed_s"] = round(time.monotonic() - start, 4)
                self.requests.append(record)
                if status < 400:
                    return HttpResponse(body, final_url, status, response.headers)
                reason = f"HTTP {status}"
                reports = _exception_reports(body)
                if reports:
                    reason += f": service exception: {describe_exceptions(reports)}"
                elif body:
                    reason += f": {_short(body.decode('utf-8', 'replace'))}"
                if 400 <= status < 500 and status != 429:
                    if reports:
                        raise ServiceExceptionReport(source, shown, reason, exceptions=reports)
                    raise FetchError(source, shown, reason)
                last = reason
                wait = retry_after_s(response.headers.get("Retry-After")) if status in (429, 503) else None
                if wait is not None:
                    record["retry_after_s"] = wait
                    if wait > self.max_retry_after_s:
                        raise FetchError(source, shown, f"{reason}; the server asks to retry after {wait:g} s, "
                                                        f"more than the {self.max_retry_after_s:g} s this client "
                                                        "waits: not retried now, the next poll will")
                self._sleep(attempt, attempts, wait)
                continue
            record["elapsed_s"] = round(time.monotonic() - start, 4)
            self.requests.append(record)
            self._sleep(attempt, attempts)
        raise FetchError(source, shown, f"{last} ({attempts} attempt{'s' if attempts > 1 else ''})")

    def _sleep(self, attempt: int, attempts: int, retry_after: float | None = None) -> None:
        if attempt < attempts:
            time.sleep(retry_after if retry_after is not None else self.backoff_s * (2 ** (attempt - 1)))


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or HTTP date), None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _exception_reports(body: bytes) -> list[dict] | None:
    try:
        return exception_report(body)
    except Exception:  # a broken error body must not hide the HTTP status
        return None
