"""The tunables of one TCP connection, and the components it is built from.

Owns: `TcpConfig`, the per-connection settings (defaults follow Linux where the RFCs
leave a choice) and the factories of the swappable components -- the reassembler,
the RTO estimator, the send buffer and the congestion control algorithms. A
connection builds its parts from its config and from nothing else, so a lab's
learner component gets in by construction: the lab kit (stack/labkit/swap.py)
returns a config whose factory is the learner's class. No module global is patched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from stack.tcp.congestion import FACTORIES as CC_FACTORIES
from stack.tcp.congestion import CongestionControl
from stack.tcp.reassembler import Reassembler
from stack.tcp.rto import RTOEstimator
from stack.tcp.sendbuf import SendBuffer


@dataclass
class TcpConfig:
    """Tunables of one connection. Defaults follow Linux where the RFCs leave a choice."""

    mss: int = 1460  # what we advertise: MTU - 40 (RFC 9293 3.7.1; MTU - 60 over IPv6)
    # RFC 9293 3.7.1: the send MSS to assume when the peer's SYN has no MSS option,
    # 536 over IPv4 and 1220 over IPv6 (the host sets it per connection's family).
    default_peer_mss: int = 536
    send_buffer: int = 1 << 20
    recv_buffer: int = 1 << 20
    window_scaling: bool = True  # RFC 7323 section 2
    timestamps: bool = True  # RFC 7323 section 3
    sack: bool = True  # RFC 2018
    # Loss detection with SACK: RACK-TLP (RFC 8985) with PRR (RFC 6937), as Linux;
    # False: RFC 6675's DupThresh rules (Linux: net.ipv4.tcp_recovery=0).
    rack: bool = True
    dsack: bool = True  # report duplicate segments (RFC 2883), as Linux's tcp_dsack
    nodelay: bool = False  # TCP_NODELAY turns Nagle off (RFC 1122 4.2.3.4)
    cc: str = "newreno"
    min_rto: float = 0.2  # RFC 6298 2.4 says 1 s; Linux uses 200 ms
    max_rto: float = 60.0
    initial_rto: float = 1.0  # RFC 6298 section 2.1
    delayed_ack: float = 0.04  # RFC 1122 4.2.3.2: < 0.5 s; Linux uses 40 ms
    msl: float = 30.0  # TIME-WAIT lasts 2*MSL (RFC 9293 3.4.2); Linux waits 60 s
    fin_wait_2_timeout: float = 60.0  # for connections the user has closed (like Linux)
    # RFC 1122 4.2.3.5: a SYN is retransmitted for at least 3 minutes (R2): 7 retries,
    # the last at 123 s, give up at 183 s (RTOs 1, 2, 4 ... capped at max_rto). Linux's
    # 6 end at 127 s. The SYN-ACK's may be fewer: RFC 4987 3.2 (SYN-RECEIVED timer).
    syn_retries: int = 7
    # A time limit on the handshake, seconds (0: none; syn_retries/synack_retries bound
    # it). RFC 1122 4.2.3.5: the application may give up on an open attempt sooner than
    # R2. FreeBSD's TCP_KEEPINIT; Linux has none (TCP_SYNCNT counts retries instead).
    connect_timeout: float = 0.0
    synack_retries: int = 5
    max_retries: int = 15  # RFC 1122 4.2.3.5 "R2": at least 100 s
    keepalive: bool = False
    keepalive_idle: float = 7200.0  # RFC 1122 4.2.3.6: no less than two hours by default
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    tso_max: int = 0  # > MSS: may emit segments up to this size (the host segments them)
    linger_zero: bool = False  # SO_LINGER with l_linger 0: close() resets
    # The IP header fields of the connection's segments (Linux ip(7), ipv6(7)): IP_TOS's
    # DSCP bits (the ECN bits are TCP's, RFC 3168 5) and IP_TTL, IPV6_TCLASS and
    # IPV6_UNICAST_HOPS; a TTL / hop limit of 0 is the host's default.
    tos: int = 0
    ttl: int = 0
    tclass: int = 0
    hop_limit: int = 0
    # RFC 5961's blind-attack mitigations. RFC 9293 3.10.7.4 gives both rules: these
    # for stacks that implement RFC 5961, RFC 793's otherwise. Off only for teaching
    # (`tcplab stack --insecure-rst`, lab 10) and for the FreeBSD suite's scripts with
    # net.inet.tcp.insecure_rst=1 / insecure_syn=1:
    rfc5961_rst: bool = True  # 3.2: an RST resets only at SEG.SEQ == RCV.NXT, else a
    #                           challenge ACK; off: any in-window RST resets (RFC 793)
    rfc5961_syn: bool = True  # 4.2: any SYN draws a challenge ACK; off: a SYN in the
    #                           window resets the connection (RFC 793 p. 71)
    # Host-wide (read from the host's defaults): drop every segment with SYN and FIN
    # both set, FreeBSD's net.inet.tcp.drop_synfin, a fingerprinting defence (no RFC
    # asks for it; RFC 9293 3.10.7 processes such a SYN). Off by default.
    drop_synfin: bool = False
    # RFC 3168 ECN, as Linux's net.ipv4.tcp_ecn: 0 off, 1 request and accept, 2 accept
    # only (Linux's default). See stack/tcp/ecn.py.
    ecn: int = 2
    # The components, by construction (the lab kit's swap-in slots, stack/labkit/swap.py).
    reassembler: Callable[[int], Reassembler] = Reassembler  # (capacity)
    rto_estimator: Callable[..., RTOEstimator] = RTOEstimator  # (min_rto=, max_rto=, initial_rto=)
    send_buffer_factory: Callable[[int], SendBuffer] = SendBuffer  # (capacity)
    # Congestion control algorithms by name (`cc` picks one): each a class of mss.
    cc_factories: Mapping[str, Callable[[int], CongestionControl]] = field(
        default_factory=lambda: MappingProxyType(CC_FACTORIES)
    )

    def make_congestion_control(self, mss: int) -> CongestionControl:
        """The `cc` algorithm for a sender with this MSS; ValueError for an unknown name."""
        try:
            factory = self.cc_factories[self.cc]
        except KeyError:
            raise ValueError(
                f"unknown congestion control {self.cc!r}; choose one of "
                f"{', '.join(self.cc_factories)}"
            ) from None
        return factory(mss)
