"""HttpClient against a scripted server on 127.0.0.1: retries, timeouts, 4xx, exception reports."""

from __future__ import annotations

import time

import pytest

from connectors_fakeserver import Reply, ScriptedServer
from iarbre_assets.connectors import FetchError, HttpClient, ServiceExceptionReport
from iarbre_assets.connectors.http import redact_url
from test_connectors_gml import EXCEPTION


def test_503_then_success_is_retried_and_every_attempt_recorded():
    with ScriptedServer([Reply(503, b"busy", "text/plain"), Reply(200, b"payload")]) as server:
        client = HttpClient(timeout_s=2, retries=2, backoff_s=0.01)
        body, final_url, status = client.get(server.url + "/x", {"a": "1"})
    assert (body, status) == (b"payload", 200)
    assert final_url == server.url + "/x?a=1"
    assert [r["status"] for r in client.requests] == [503, 200]
    assert [r["bytes"] for r in client.requests] == [4, 7]
    assert all(r["url"] == server.url + "/x?a=1" and r["elapsed_s"] >= 0 for r in client.requests)
    assert len(server.requests) == 2


def test_persistent_5xx_fails_after_bounded_retries():
    with ScriptedServer([Reply(500, b"boom", "text/plain")] * 3) as server:
        client = HttpClient(timeout_s=2, retries=2, backoff_s=0.01)
        with pytest.raises(FetchError) as info:
            client.get(server.url + "/wfs", {"STARTINDEX": "5"}, source="arbres")
    assert str(info.value).startswith(f"arbres: {server.url}/wfs?STARTINDEX=5: HTTP 500: boom (3 attempts)")
    assert len(server.requests) == 3 and len(client.requests) == 3


def test_timeout_is_bounded_and_fast():
    with ScriptedServer([Reply(200, b"late", delay_s=1.0)] * 2) as server:
        client = HttpClient(timeout_s=0.2, retries=1, backoff_s=0.01)
        start = time.monotonic()
        with pytest.raises(FetchError, match=r"timed out after 0.2 s \(2 attempts\)"):
            client.get(server.url + "/slow")
        elapsed = time.monotonic() - start
    assert elapsed < 1.2  # two 0.2 s attempts, never the server's full second
    assert [r.get("error") for r in client.requests] == ["timeout", "timeout"]


def test_4xx_is_not_retried():
    with ScriptedServer([Reply(404, b"no such layer", "text/plain")]) as server:
        client = HttpClient(timeout_s=2, retries=3, backoff_s=0.01)
        with pytest.raises(FetchError, match="HTTP 404: no such layer"):
            client.get(server.url + "/missing")
    assert len(server.requests) == 1


def test_4xx_exception_report_becomes_service_exception_report():
    with ScriptedServer([Reply(400, EXCEPTION)]) as server:
        client = HttpClient(timeout_s=2, retries=3, backoff_s=0.01)
        with pytest.raises(ServiceExceptionReport) as info:
            client.get(server.url + "/wfs", {"TYPENAMES": "sytral:nope"}, source="arrets")
    message = str(info.value)
    assert message.startswith(f"arrets: {server.url}/wfs?TYPENAMES=sytral%3Anope: HTTP 400")
    assert "exceptionCode=InvalidParameterValue" in message and "locator=typeName" in message
    assert len(server.requests) == 1


def test_truncated_body_is_retried_then_reported():
    with ScriptedServer([Reply(200, b"x" * 1000, truncate_to=10)] * 2) as server:
        client = HttpClient(timeout_s=2, retries=1, backoff_s=0.01)
        with pytest.raises(FetchError, match="connection failed"):
            client.get(server.url + "/cut")
    assert len(server.requests) == 2


def test_connection_refused_is_a_fetch_error():
    with ScriptedServer([]) as server:
        url = server.url
    client = HttpClient(timeout_s=1, retries=1, backoff_s=0.01)
    with pytest.raises(FetchError, match="connection failed"):
        client.get(url + "/gone")
    assert len(client.requests) == 2


def test_secret_query_values_are_redacted_from_records_and_errors():
    assert redact_url("http://h/p?apikey=s3cr3t&x=1&TOKEN=abc") == "http://h/p?apikey=REDACTED&x=1&TOKEN=REDACTED"
    with ScriptedServer([Reply(403, b"denied", "text/plain")]) as server:
        client = HttpClient(timeout_s=2, retries=0, backoff_s=0.01)
        with pytest.raises(FetchError) as info:
            client.get(server.url + "/p", {"apikey": "s3cr3t"})
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in client.requests[0]["url"]
    assert server.requests[0][1] == {"apikey": "s3cr3t"}  # the server did get the key


def test_429_rate_limit_is_retried():
    with ScriptedServer([Reply(429, b"slow down", "text/plain"), Reply(200, b"ok")]) as server:
        client = HttpClient(timeout_s=2, retries=1, backoff_s=0.01)
        assert client.get(server.url + "/x")[0] == b"ok"
    assert [r["status"] for r in client.requests] == [429, 200]


def test_retry_after_is_honoured_within_its_cap():
    with ScriptedServer([Reply(429, b"slow down", "text/plain", headers={"Retry-After": "1"}), Reply(200, b"ok")]
                        ) as server:
        client = HttpClient(timeout_s=2, retries=3, backoff_s=0.01)
        start = time.monotonic()
        assert client.get(server.url + "/x")[0] == b"ok"
        waited = time.monotonic() - start
    assert [r["status"] for r in client.requests] == [429, 200] and client.requests[0]["retry_after_s"] == 1.0
    assert waited >= 1.0  # the back-off alone would have waited 0.01 s


def test_retry_after_beyond_the_cap_fails_at_once_saying_so():
    with ScriptedServer([Reply(503, b"maintenance", "text/plain", headers={"Retry-After": "3600"}), Reply(200, b"ok")]
                        ) as server:
        client = HttpClient(timeout_s=2, retries=3, backoff_s=0.01, max_retry_after_s=30)
        with pytest.raises(FetchError, match="HTTP 503.*retry after 3600 s, more than the 30 s"):
            client.get(server.url + "/x")
    assert len(server.requests) == 1


def test_retry_after_reads_seconds_and_http_dates():
    from datetime import datetime, timezone

    from iarbre_assets.connectors.http import retry_after_s

    now = datetime(2026, 12, 4, 10, 0, 0, tzinfo=timezone.utc)
    assert retry_after_s("8") == 8.0
    assert retry_after_s("Fri, 04 Dec 2026 10:00:08 GMT", now=now) == 8.0
    assert retry_after_s("Fri, 04 Dec 2026 09:00:00 GMT", now=now) == 0.0  # already past
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("") is None


def test_extra_headers_are_sent_and_response_headers_exposed():
    with ScriptedServer([Reply(200, b"body", headers={"ETag": '"v1"', "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT"})]
                        ) as server:
        client = HttpClient(timeout_s=2, retries=0, backoff_s=0.01)
        response = client.get_response(server.url + "/x", {"a": "1"}, headers={"If-None-Match": '"v0"'})
    assert (response.body, response.status, response.url) == (b"body", 200, server.url + "/x?a=1")
    assert response.headers["etag"] == '"v1"' and response.headers["Last-Modified"].startswith("Wed, 01 Jan 2025")
    assert server.request_headers[0]["If-None-Match"] == '"v0"'
    assert "User-Agent" in server.request_headers[0]  # the session's headers are still sent


def test_304_not_modified_is_an_answer_not_an_error():
    with ScriptedServer([Reply(304, b"", headers={"ETag": '"v1"'})]) as server:
        client = HttpClient(timeout_s=2, retries=3, backoff_s=0.01)
        body, _url, status = client.get(server.url + "/x", headers={"If-None-Match": '"v1"'})
    assert (body, status) == (b"", 304)
    assert [r["status"] for r in client.requests] == [304] and len(server.requests) == 1
