"""Which upstream addresses an instance endpoint may point at.

http and https only; never link-local or cloud-metadata addresses (the classic
SSRF targets); loopback and private networks stay allowed because self-hosted
models live there. INSTANCE_MANAGER_ENDPOINT_ALLOWLIST (hostnames, *.suffixes,
IPs or CIDRs) restricts further when set.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
}
_METADATA_HOSTNAMES = {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"}


def _forbidden_reason(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in _METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if address.is_link_local:
        return "is a link-local address"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "is not a unicast host address"
    return None


def _resolve(host: str) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _allowed_by_list(host: str, addresses: Iterable[IPAddress], allowlist: list[str]) -> bool:
    for entry in allowlist:
        entry = entry.lower()
        if entry.startswith("*.") and (host.endswith(entry[1:]) or host == entry[2:]):
            return True
        if entry == host:
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if any(address in network for address in addresses):
            return True
    return False


def validate_endpoint_url(url: str) -> str:
    """Return the normalised URL (no trailing slash) or raise ValidationError."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http and https endpoints are allowed.", code="scheme")
    if not parts.hostname:
        raise ValidationError("The endpoint URL has no host.", code="host")
    if parts.username or parts.password:
        raise ValidationError("Credentials in the URL are not allowed; use api_key.", code="credentials")
    if parts.query or parts.fragment:
        raise ValidationError("The endpoint URL must not carry a query or fragment.", code="query")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValidationError("The endpoint URL has an invalid port.", code="port") from None

    host = parts.hostname.lower().rstrip(".")
    if host in _METADATA_HOSTNAMES:
        raise ValidationError(f"{host} is a cloud metadata host.", code="forbidden_host")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        # A name: check what it resolves to now. Unresolvable names are let
        # through; health checks will report them unreachable.
        addresses = _resolve(host)
    for address in addresses:
        reason = _forbidden_reason(address)
        if reason:
            raise ValidationError(f"{host} {reason} ({address}).", code="forbidden_host")

    allowlist = settings.ENDPOINT_ALLOWLIST
    if allowlist and not _allowed_by_list(host, addresses, allowlist):
        raise ValidationError(
            f"{host} is not in INSTANCE_MANAGER_ENDPOINT_ALLOWLIST.", code="not_allowlisted"
        )
    return url.rstrip("/")
