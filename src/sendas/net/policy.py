"""The outbound policy: which addresses an alias or IMAP account may make sendas connect to.

Loopback, private (RFC 1918, ULA, CGNAT), link-local, cloud-metadata, unspecified, multicast
and reserved addresses are refused unless ``SENDAS_OUTBOUND_ALLOW`` lists them (CIDRs) or the
host name they were reached by. The check takes the *resolved* address, so that no spelling
of a host (``0x7f000001``, ``127.1``, ``[::ffff:127.0.0.1]``, a DNS name) gets around it;
IPv6 forms that carry an IPv4 address (mapped, compatible, 6to4, NAT64) are judged by that
IPv4 address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from sendas.errors import OutboundRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "SENDAS_OUTBOUND_ALLOW"

# Instance metadata services (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS ECS task
# metadata 169.254.170.2; AWS over IPv6 fd00:ec2::254; Alibaba Cloud 100.100.100.200).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_PRIVATE: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
)
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?)+$")


def parse_address(text: str) -> IPAddress:
    """An address as ``getaddrinfo`` returns it (an IPv6 zone id such as ``%eth0`` is
    dropped). Raises ``ValueError`` when ``text`` is not an IP address."""
    return ipaddress.ip_address(text.partition("%")[0])


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, IPv4-compatible, 6to4,
    NAT64), or None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64) or (
        address in _IPV4_COMPATIBLE and int(address) > 1  # not :: nor ::1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify(address: IPAddress) -> str | None:
    """What kind of non-public address this is (``"loopback"``, ``"private"``, ...), or
    None for a public internet address."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    inner = embedded_ipv4(address)
    if inner is not None:
        return classify(inner)
    if address.is_unspecified or (
        isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK
    ):
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT)"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in _PRIVATE):  # RFC 1918, ULA, old site-local
        return "private"
    if not address.is_global or address.is_reserved:
        return "reserved"
    return None


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


@dataclass(frozen=True)
class OutboundPolicy:
    """Refuses non-public addresses except the networks and host names allowed (the
    default, empty, allows none)."""

    networks: tuple[IPNetwork, ...] = ()
    host_names: frozenset[str] = frozenset()

    @classmethod
    def from_setting(cls, text: str) -> OutboundPolicy:
        """Parse ``SENDAS_OUTBOUND_ALLOW``: comma-separated CIDRs (or single addresses) and
        host names. Raises ``ValueError`` naming the first bad entry."""
        networks: list[IPNetwork] = []
        names: set[str] = set()
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = normalize_host(entry)
            if not _HOST_NAME.match(name) or name.replace(".", "").isdigit():
                raise ValueError(f"{SETTING}: {entry!r} is neither a CIDR nor a host name")
            names.add(name)
        return cls(tuple(networks), frozenset(names))

    def allows_host(self, host: str) -> bool:
        """True when the host name itself is listed: all its addresses are then allowed."""
        return normalize_host(host) in self.host_names

    def refusal(self, host: str, address: str) -> str | None:
        """Why connecting to ``address`` (resolved from ``host``) is refused, or None."""
        if self.allows_host(host):
            return None
        ip = parse_address(address)
        kind = classify(ip)
        if kind is None:
            return None
        inner = embedded_ipv4(ip)
        if any(a in net for net in self.networks for a in (ip, inner) if a is not None):
            return None
        shown = str(ip) if inner is None else f"{ip} (IPv4 {inner})"
        what = f"{_article(kind)} {kind} address"
        said = (
            f"{shown} is {what}"
            if _same_address(host, ip)
            else (f"{host} resolves to {shown}, {what}")
        )
        return (
            f"{said}; sendas does not connect to loopback, private or link-local addresses "
            f"unless {SETTING} allows it"
        )

    def check(self, host: str, addresses: list[str], *, step: str) -> list[str]:
        """The addresses that may be tried, in order. Raises :class:`OutboundRefused` when
        none may (naming the first refused address and the setting)."""
        allowed = [a for a in addresses if self.refusal(host, a) is None]
        if allowed or not addresses:
            return allowed
        reason = self.refusal(host, addresses[0]) or ""
        raise OutboundRefused(
            reason,
            step=step,
            address=str(parse_address(addresses[0])),
            hint=f"The administrator can allow a trusted internal server with {SETTING} "
            "(comma-separated CIDRs and host names); otherwise use the provider's public "
            "server name.",
        )


def _same_address(host: str, ip: IPAddress) -> bool:
    """True when the host was typed as this very address (in its usual spelling)."""
    try:
        return parse_address(normalize_host(host)) == ip
    except ValueError:
        return False


def normalize_host(host: str) -> str:
    """The host as compared with the allow list: lower case, no brackets, no final dot."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")
