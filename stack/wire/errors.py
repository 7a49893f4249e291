"""Errors raised by the wire-format parsers.

Every malformed packet is reported as a :class:`WireError` whose ``reason`` is a
short snake_case string (``"bad_ip_checksum"``, ``"truncated_tcp_header"``,
``"bad_tcp_option"``, ...).  The host counts the reason in its statistics and
drops the packet, so reasons must be stable identifiers, not prose.

Reasons used by ``stack.wire``:

* IPv4: ``truncated_ip_header``, ``bad_ip_version``, ``bad_ip_ihl``,
  ``bad_ip_checksum``, ``bad_ip_total_length``, ``truncated_ip_packet``
* TCP: ``truncated_tcp_header``, ``bad_tcp_data_offset``, ``bad_tcp_checksum``,
  ``bad_tcp_option``
* UDP: ``truncated_udp_header``, ``bad_udp_length``, ``truncated_udp_datagram``,
  ``bad_udp_checksum``, ``zero_udp_checksum`` (over IPv6)
* ICMP: ``truncated_icmp``, ``bad_icmp_checksum``
* IPv6 (``stack/wire/ipv6.py``): ``truncated_ipv6_header``, ``bad_ipv6_version``,
  ``truncated_ipv6_packet``; from the extension header walk, with an ICMPv6
  Parameter Problem (:class:`stack.wire.ipv6.ParameterProblem`):
  ``truncated_ipv6_extension_header``, ``ipv6_misplaced_hop_by_hop``,
  ``bad_ipv6_option``, ``ipv6_unknown_option``, ``ipv6_routing_type_N``; silently:
  ``ipv6_unknown_option_discard``, ``ipv6_option_limit``,
  ``ipv6_extension_header_limit``
* ICMPv6: ``truncated_icmpv6``, ``bad_icmpv6_checksum``

Builders reject bad *arguments* (a caller bug, not a bad packet) with a plain
:class:`ValueError`.
"""

from __future__ import annotations

__all__ = ["WireError"]


class WireError(ValueError):
    """A packet could not be parsed.

    ``reason`` is a stable snake_case identifier; ``detail`` is optional
    human-readable context (offsets, values) and is only part of ``str(err)``.
    """

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[WireError], tuple[str, str]]:
        # Keep ``reason`` intact across pickling (e.g. multiprocessing).
        return (type(self), (self.reason, self.detail))
