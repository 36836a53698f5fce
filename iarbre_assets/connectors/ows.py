"""OGC exception reports (ows:ExceptionReport, WFS 1.0 ServiceExceptionReport): read and describe them.

Used by the HTTP client (an exception body in a 4xx becomes ServiceExceptionReport) and by the GML parser
(a 200 answer that is an exception report). The body is parsed with defusedxml and `forbid_dtd=True`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

__all__ = ["OWS_NAMESPACES", "describe_exceptions", "exception_report"]

OWS_NAMESPACES = frozenset({"http://www.opengis.net/ows/1.1", "http://www.opengis.net/ows/2.0",
                            "http://www.opengis.net/ows", "http://www.opengis.net/ogc"})


def _split(tag: str) -> tuple[str | None, str]:
    """(namespace, local name) of an ElementTree tag."""
    if tag[:1] == "{":
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


def exception_report(data: bytes) -> list[dict] | None:
    """The exceptions of an ows:ExceptionReport (or WFS 1.0 ServiceExceptionReport) body, else None."""
    head = data[:4096]
    if b"ExceptionReport" not in head:
        return None
    try:
        root = DET.fromstring(data, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException):
        return None
    namespace, local = _split(root.tag)
    if local not in {"ExceptionReport", "ServiceExceptionReport"}:
        return None
    reports = []
    for child in root:
        child_local = _split(child.tag)[1]
        if child_local == "Exception":
            texts = [" ".join((t.text or "").split()) for t in child if _split(t.tag)[1] == "ExceptionText"]
            reports.append({"exceptionCode": child.get("exceptionCode"), "locator": child.get("locator"),
                            "text": " | ".join(t for t in texts if t)})
        elif child_local == "ServiceException":
            reports.append({"exceptionCode": child.get("code"), "locator": child.get("locator"),
                            "text": " ".join((child.text or "").split())})
    return reports or [{"exceptionCode": None, "locator": None, "text": ""}]


def describe_exceptions(reports: list[dict]) -> str:
    parts = []
    for report in reports:
        text = f"exceptionCode={report.get('exceptionCode') or '?'}"
        if report.get("locator"):
            text += f", locator={report['locator']}"
        if report.get("text"):
            text += f", text={report['text']!r}"
        parts.append(text)
    return "; ".join(parts)

