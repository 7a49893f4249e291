"""TCP over UDP encapsulation, FreeBSD's way (sans-IO rules; the host applies them).

FreeBSD (tcp(4): `net.inet.tcp.udp_tunneling_port`, `udp_tunneling_overhead`, the
TCP_REMOTE_UDP_ENCAPS_PORT socket option) carries TCP segments in UDP datagrams, so a
connection can cross middleboxes that pass only UDP. No RFC specifies it for TCP; it
follows RFC 6951, SCTP's UDP encapsulation, and the FreeBSD tcp-testsuite's
tcp-over-udp/ scripts pin the behaviour down. The rules, each where it is applied:

* One host-wide tunneling port (`port`, 0 = off, the default): a UDP datagram to it,
  IPv4 or IPv6, carries one TCP segment right after the UDP header (RFC 6951 5.1 for
  SCTP); its source port is the peer's *remote encapsulation port*. With the port off,
  such a datagram is plain UDP. (`decapsulate`, `carries_tcp`)
* A connection's encapsulation is fixed when it is made: TCP_REMOTE_UDP_ENCAPS_PORT,
  set on a closed socket before connect(), for an active open; the UDP source port of
  the SYN for a passive one. Its segments all go out in UDP from the tunneling port to
  that port (RFC 6951 5.3: to the port the peer's packets came from). (`encapsulate`,
  `remote_port_settable`)
* A segment for a connection that arrives another way (plain TCP for an encapsulated
  connection, an encapsulated one for a plain connection, or from another UDP port) is
  not the connection's: FreeBSD's tcp_input answers it as a segment for no connection,
  a reset sent back the way it came (none for an RST, RFC 9293 3.10.7.1), in every
  state, TIME-WAIT too, except a SYN that may reopen a TIME-WAIT pair (RFC 9293 3.6.1),
  which starts a new connection with its own encapsulation. (`same_path`)
* The MSS of an encapsulated connection is `overhead` octets smaller (the 8-octet UDP
  header, RFC 768), in the MSS option it sends and in what a path MTU allows
  (RFC 9293 3.7.1: the MSS is what fits after all the headers). (`mss`)
* Checksums: the UDP checksum covers the whole segment; FreeBSD sends the TCP checksum
  as zero and does not check it on encapsulated input. tcplab sends the same, and on
  input checks a non-zero TCP checksum as usual; a zero one is taken only when the UDP
  checksum covers it (over IPv4 a UDP checksum may be absent, RFC 768; over IPv6 it
  never is, RFC 8200 8.1). A segment with neither is malformed. (`decapsulate`)
* An ICMP error about an encapsulated segment quotes the UDP header: believed only
  if it is from the tunneling port to the connection's remote port (FreeBSD's
  tcp_ctlinput_viaudp), then as any ICMP error about TCP (RFC 5927). (`quoted`)

Malformed encapsulated datagrams raise WireError like any wire parser; the host counts
the reason and drops the packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.checksum import BytesLike, ones_complement_sum, pseudo_header_sum
from stack.wire.errors import WireError
from stack.wire.ipv4 import IPPROTO_UDP
from stack.wire.udp import UDP_HEADER_LEN, UDPDatagram

__all__ = ["DEFAULT_OVERHEAD", "PLAIN", "TcpOverUdp", "remote_port_settable", "same_path"]

PLAIN = 0  # a connection's remote encapsulation port when it is plain TCP
DEFAULT_OVERHEAD = UDP_HEADER_LEN  # FreeBSD's udp_tunneling_overhead default (8)
OVERHEAD_RANGE = range(UDP_HEADER_LEN, 1025)  # FreeBSD accepts 8 to 1024
_TCP_CHECKSUM = slice(16, 18)  # RFC 9293 3.1: the checksum field of the TCP header
_UDP_HDR = struct.Struct("!HHHH")


def remote_port_settable(value: int, tunneling_port: int, closed: bool) -> bool:
    """Whether TCP_REMOTE_UDP_ENCAPS_PORT may be set to ``value`` (else EINVAL), as
    FreeBSD: a port number (0-65535; 0 is plain TCP), non-zero only while the host's
    tunneling port is on, and only on a closed socket (not listening, not connected:
    the encapsulation of a connection never changes)."""
    if not 0 <= value <= 0xFFFF:
        return False
    if value and not tunneling_port:
        return False
    return closed


def same_path(connection_port: int, segment_port: int) -> bool:
    """Whether a segment that came with encapsulation ``segment_port`` (PLAIN or its
    UDP source port) is the connection's, whose encapsulation is ``connection_port``.
    FreeBSD's tcp_input: ``tp->t_port != port`` in a state past LISTEN goes to
    dropwithreset (the reset goes back the segment's way, ``segment_port``)."""
    return connection_port == segment_port


@dataclass
class TcpOverUdp:
    """The host-wide setting: the tunneling port (0 = off) and the MSS overhead."""

    port: int = 0  # net.inet.tcp.udp_tunneling_port; `tcplab stack --tcp-udp-port`
    overhead: int = DEFAULT_OVERHEAD  # net.inet.tcp.udp_tunneling_overhead

    @property
    def enabled(self) -> bool:
        return self.port != 0

    def carries_tcp(self, dst_port: int) -> bool:
        """A UDP datagram to ``dst_port`` carries a TCP segment (the tunnel is on and
        that is its port)."""
        return self.port != 0 and dst_port == self.port

    def mss(self, mss: int, remote_port: int) -> int:
        """The MSS of a connection whose encapsulation is ``remote_port`` (PLAIN or a
        UDP port), from the one plain TCP would have."""
        return mss - self.overhead if remote_port != PLAIN else mss

    def header_overhead(self, remote_port: int) -> int:
        """The octets encapsulation adds to each segment's headers (for the MSS a path
        MTU allows)."""
        return self.overhead if remote_port != PLAIN else 0

    def decapsulate(self, dgram: UDPDatagram) -> tuple[int, bool]:
        """The remote encapsulation port of a datagram to the tunneling port (its
        ``payload`` is the TCP segment, already checked by the UDP checksum if it had
        one), and whether the TCP checksum is to be verified too. Raises WireError for
        a datagram that cannot carry a connection's segment."""
        if dgram.src_port == 0:
            # RFC 768: source port 0 is "no port"; no reply could reach the sender.
            raise WireError("tcp_udp_zero_port", "UDP source port 0")
        tcp = dgram.payload
        tcp_checksum = bytes(tcp[_TCP_CHECKSUM])
        if tcp_checksum == b"\0\0" and len(tcp_checksum) == 2:
            if dgram.checksum == 0:
                # Neither the UDP nor the TCP checksum covers the segment.
                raise WireError("tcp_udp_no_checksum", "zero UDP and TCP checksums")
            return dgram.src_port, False
        return dgram.src_port, True

    def encapsulate(self, src: str, dst: str, remote_port: int, tcp: list[BytesLike]) -> bytes:
        """The UDP datagram (RFC 768) carrying a TCP segment (its parts, header with a
        zero checksum and payload) from the tunneling port to ``remote_port``; the UDP
        checksum covers it over the family's pseudo-header (RFC 8200 8.1 for IPv6)."""
        length = UDP_HEADER_LEN + sum(len(p) for p in tcp)
        header = _UDP_HDR.pack(self.port, remote_port, length, 0)
        total = ones_complement_sum(header, pseudo_header_sum(src, dst, IPPROTO_UDP, length))
        odd = False
        for part in tcp:
            if odd:  # keep the 16-bit alignment across parts of odd length
                raise ValueError("only the last part may have an odd length")
            total = ones_complement_sum(part, total)
            odd = len(part) % 2 == 1
        checksum = (~total & 0xFFFF) or 0xFFFF  # RFC 768: a computed zero goes as all ones
        return _UDP_HDR.pack(self.port, remote_port, length, checksum) + b"".join(bytes(p) for p in tcp)

    def quoted(self, udp: bytes | memoryview) -> tuple[int, memoryview] | None:
        """For an ICMP error quoting a UDP header (and what follows it): the remote
        encapsulation port and the quoted TCP header, if the quote is of one of our
        encapsulated segments (from the tunneling port); None otherwise."""
        if self.port == 0 or len(udp) < UDP_HEADER_LEN + 8:
            return None
        sport, dport, _, _ = _UDP_HDR.unpack_from(bytes(udp[:UDP_HEADER_LEN]))
        if sport != self.port:
            return None
        return dport, memoryview(udp)[UDP_HEADER_LEN:]
