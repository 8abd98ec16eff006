"""Strict Host and Origin matching for the DNS-rebinding defence: parse each header whole, then compare exactly.

A value is accepted only if it parses as `host[:port]` (Host) or `scheme://host[:port]` (Origin) and nothing else,
with an IPv6 address in brackets, and equals an allowed value. The allowed values keep the SDK's notation:
`name`, `name:port` and `name:*` (any explicit port), and the same after `scheme://` for origins.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: One DNS label or IPv4 octet group: letters, digits, '-' and '_' (service names), not starting or ending with '-'.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")
_SCHEMES = frozenset({"http", "https"})
#: `port` of a pattern that accepts any explicit port.
ANY_PORT = -1


@dataclass(frozen=True)
class Authority:
    """A parsed `host[:port]`: the host lower-cased (an IPv6 address normalised, in brackets), the port or None."""

    host: str
    port: int | None


def _host(text: str) -> str | None:
    if text.startswith("["):
        literal = text[1:-1] if text.endswith("]") else ""
        if not literal or "%" in literal:  # no zone ids: they name a local interface, never a server
            return None
        try:
            return f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:
            return None
    if len(text) > 253 or not _NAME.fullmatch(text):
        return None
    return text.lower()


def parse_authority(text: str, *, allow_any_port: bool = False) -> Authority | None:
    """`host[:port]` parsed strictly (RFC 3986 with DNS names), or None if the text is anything else."""
    if text.startswith("["):
        end = text.find("]") + 1
        if end == 0:
            return None
        host_text, rest = text[:end], text[end:]
    else:
        host_text, colon, port_text = text.partition(":")
        rest = colon + port_text
    host = _host(host_text)
    if host is None:
        return None
    if not rest:
        return Authority(host, None)
    if allow_any_port and rest == ":*":
        return Authority(host, ANY_PORT)
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]):
        return None
    port = int(rest[1:])
    return Authority(host, port) if 0 < port <= 65535 else None


def parse_origin(text: str, *, allow_any_port: bool = False) -> tuple[str, Authority] | None:
    """`scheme://host[:port]` (http or https, nothing after the port), or None if the text is anything else."""
    scheme, separator, authority_text = text.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in _SCHEMES:
        return None
    authority = parse_authority(authority_text, allow_any_port=allow_any_port)
    return None if authority is None else (scheme, authority)


def _matches(value: Authority, allowed: Authority) -> bool:
    if value.host != allowed.host:
        return False
    return value.port is not None if allowed.port == ANY_PORT else value.port == allowed.port


class HostOriginPolicy:
    """The Host and Origin values a server accepts, checked by parsing and exact comparison."""

    def __init__(self, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> None:
        self._hosts: list[Authority] = []
        self._origins: list[tuple[str, Authority]] = []
        for pattern in allowed_hosts:
            host = parse_authority(pattern, allow_any_port=True)
            if host is None:
                raise ValueError(f"not a host[:port] or host:* value: {pattern[:100]!r}")
            self._hosts.append(host)
        for pattern in allowed_origins:
            origin = parse_origin(pattern, allow_any_port=True)
            if origin is None:
                raise ValueError(f"not a scheme://host[:port] origin: {pattern[:100]!r}")
            self._origins.append(origin)

    def host_allowed(self, value: str) -> bool:
        """Whether a Host header value is exactly one of the allowed hosts."""
        host = parse_authority(value)
        return host is not None and any(_matches(host, allowed) for allowed in self._hosts)

    def origin_allowed(self, value: str) -> bool:
        """Whether an Origin header value is exactly one of the allowed origins."""
        origin = parse_origin(value)
        if origin is None:
            return False
        scheme, authority = origin
        return any(scheme == allowed[0] and _matches(authority, allowed[1]) for allowed in self._origins)
