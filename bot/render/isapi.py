"""HIKVision ISAPI documents, parsed: bytes in, typed records out (no I/O).

Every ISAPI body is XML, usually in the ``http://www.hikvision.com/ver20/XMLSchema`` namespace;
older firmware says ``http://www.std-cgi.com/ver20/XMLSchema``, the published schema
``http://www.isapi.org/ver20/XMLSchema``, and some answers have none. Elements are therefore
matched by local name only, whatever namespace (or prefix) they carry.

The parser is expat driven directly, and it refuses any document type declaration: no DTD means
no entity definitions, so no entity expansion ("billion laughs"), and no external entities or
DTDs are ever fetched. A camera has no business sending either.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

__all__ = [
    "MAX_XML_BYTES",
    "DeviceInfo",
    "IsapiParseError",
    "ResponseStatus",
    "UserCheck",
    "parse_device_info",
    "parse_response_status",
    "parse_user_check",
    "parse_xml",
]

# deviceInfo is about 1.5 KB on a DS-2CD1321-I; anything this large is not an ISAPI answer.
MAX_XML_BYTES = 256 * 1024
_NS_SEPARATOR = " "  # cannot occur in a namespace URI


class IsapiParseError(ValueError):
    """The body is not the ISAPI document expected (or not acceptable XML at all)."""


def _local(name: str) -> str:
    return name.rsplit(_NS_SEPARATOR, 1)[-1]


def parse_xml(data: bytes) -> ET.Element:
    """Parse ``data`` into an element tree whose tags and attribute names have no namespace."""
    if len(data) > MAX_XML_BYTES:
        raise IsapiParseError(f"the XML is larger than {MAX_XML_BYTES // 1024} KB")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator=_NS_SEPARATOR)
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse_doctype(*_args: object) -> None:
        raise IsapiParseError("the XML has a document type declaration (refused)")

    def refuse_entity(*_args: object) -> int:
        raise IsapiParseError("the XML declares or references an external entity (refused)")

    def start(name: str, attrs: dict[str, str]) -> None:
        builder.start(_local(name), {_local(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        builder.end(_local(name))

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.ExternalEntityRefHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise IsapiParseError(f"not well-formed XML ({exc})") from exc
    root = builder.close()
    if not isinstance(root, ET.Element):  # pragma: no cover - expat rejects empty documents
        raise IsapiParseError("no XML root element")
    return root


def _text(root: ET.Element, name: str) -> str | None:
    value = root.findtext(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _int(root: ET.Element, name: str) -> int | None:
    value = _text(root, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _root(data: bytes, tag: str) -> ET.Element:
    root = parse_xml(data)
    if root.tag != tag:
        raise IsapiParseError(f"expected <{tag}>, got <{root.tag}>")
    return root


@dataclass(frozen=True)
class DeviceInfo:
    """``GET /ISAPI/System/deviceInfo``: what the camera says it is."""

    model: str
    serial: str
    firmware: str
    firmware_release_date: str | None = None
    device_name: str | None = None
    mac: str | None = None
    device_type: str | None = None


def parse_device_info(data: bytes) -> DeviceInfo:
    """``<DeviceInfo>`` in any namespace; model, serial number and firmware are required."""
    root = _root(data, "DeviceInfo")
    model, serial, firmware = (_text(root, n) for n in
                               ("model", "serialNumber", "firmwareVersion"))
    missing = [n for n, v in (("model", model), ("serialNumber", serial),
                              ("firmwareVersion", firmware)) if v is None]
    if model is None or serial is None or firmware is None:
        raise IsapiParseError(f"<DeviceInfo> lacks {', '.join(missing)}")
    return DeviceInfo(
        model=model,
        serial=serial,
        firmware=firmware,
        firmware_release_date=_text(root, "firmwareReleasedDate"),
        device_name=_text(root, "deviceName"),
        mac=_text(root, "macAddress"),
        device_type=_text(root, "deviceType"),
    )


@dataclass(frozen=True)
class UserCheck:
    """``<userCheck>``, the body of a HIKVision 401: the lockout state of the caller's address.

    ``retryLoginTime`` is the number of login attempts left before the lock, ``unlockTime`` the
    seconds until a lock lifts (HIKVision's SDK guide: "remaining locking time, unit: second").
    """

    status_value: int | None
    status_string: str | None
    lock_status: str | None  # "lock" | "unlock" (as sent, lower-cased)
    unlock_seconds: int | None
    retry_login_time: int | None

    @property
    def locked(self) -> bool:
        return self.lock_status == "lock"

    @property
    def attempts_left(self) -> int | None:
        return None if self.locked else self.retry_login_time

    @property
    def locked_minutes(self) -> int | None:
        """Whole minutes until the lock lifts (rounded up), when locked and the camera says."""
        if not self.locked or self.unlock_seconds is None:
            return None
        return max(1, math.ceil(self.unlock_seconds / 60))


def parse_user_check(data: bytes) -> UserCheck | None:
    """The ``<userCheck>`` in a 401 body, or None when the body is something else."""
    if not data.strip():
        return None
    try:
        root = _root(data, "userCheck")
    except IsapiParseError:
        return None
    lock = _text(root, "lockStatus")
    return UserCheck(
        status_value=_int(root, "statusValue"),
        status_string=_text(root, "statusString"),
        lock_status=lock.lower() if lock else None,
        unlock_seconds=_int(root, "unlockTime"),
        retry_login_time=_int(root, "retryLoginTime"),
    )


@dataclass(frozen=True)
class ResponseStatus:
    """``<ResponseStatus>``, ISAPI's error body (``statusCode`` 1-7, ``subStatusCode`` words)."""

    status_code: int | None
    status_string: str | None
    sub_status_code: str | None

    def describe(self) -> str:
        parts = [p for p in (self.status_string, self.sub_status_code) if p]
        return ", ".join(parts)


def parse_response_status(data: bytes) -> ResponseStatus | None:
    """The ``<ResponseStatus>`` of an error answer, or None when the body is something else."""
    if not data.strip():
        return None
    try:
        root = _root(data, "ResponseStatus")
    except IsapiParseError:
        return None
    return ResponseStatus(
        status_code=_int(root, "statusCode"),
        status_string=_text(root, "statusString"),
        sub_status_code=_text(root, "subStatusCode"),
    )
