"""IPv6 in the pcap reader the labs and plots use (stack/labkit/capture.py)."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from stack.labkit.capture import (
    checksum_state,
    conn_id,
    connections,
    decode_ip,
    parse_conn_id,
    read_pcap,
    stream_bytes,
    tcp_packets,
)
from stack.observe.pcap import PcapWriter

STACK = "fd00:0:0:1::2"
PEER = "fd00:0:0:2::2"


def test_conn_ids_bracket_ipv6_and_parse_both_ways() -> None:
    cid = conn_id(STACK, 80, PEER, 40000)
    assert cid == "[fd00:0:0:1::2]:80-[fd00:0:0:2::2]:40000"
    assert parse_conn_id(cid) == (STACK, 80, PEER, 40000)
    assert parse_conn_id("fd00:0:0:1::2:80-fd00:0:0:2::2:40000") == (STACK, 80, PEER, 40000)
    assert conn_id("10.0.0.2", 80, "10.1.0.2", 1) == "10.0.0.2:80-10.1.0.2:1"


def test_decode_ipv6_through_extension_headers() -> None:
    raw = bytes(IPv6(src=PEER, dst=STACK, hlim=63) / IPv6ExtHdrDestOpt() / TCP(sport=40000, dport=80, flags="S", seq=7,
                                                                              options=[("MSS", 1440)]))
    pkt = decode_ip(raw)
    assert pkt is not None and pkt.version == 6
    assert (pkt.src, pkt.dst, pkt.proto, pkt.ttl, pkt.header_len) == (PEER, STACK, 6, 63, 48)
    assert pkt.tcp is not None and pkt.tcp.syn and pkt.tcp.mss == 1440 and pkt.tcp.seq == 7
    assert checksum_state(pkt) == "ok"
    assert "fd00:0:0:2::2:40000 > fd00:0:0:1::2:80 [S]" in pkt.summary()
    bad = bytearray(raw)
    bad[-1] ^= 1
    assert checksum_state(decode_ip(bytes(bad))) == "bad"  # type: ignore[arg-type]


def test_fragments_icmpv6_and_udp_zero_checksum() -> None:
    later = decode_ip(bytes(IPv6(src=PEER, dst=STACK) / IPv6ExtHdrFragment(offset=3, m=1, id=9) / bytes(16)))
    assert later is not None and later.is_fragment and later.frag_offset == 24 and later.ident == 9
    assert later.tcp is None and checksum_state(later) is None
    echo = decode_ip(bytes(IPv6(src=PEER, dst=STACK) / ICMPv6EchoRequest(id=5, seq=6)))
    assert echo is not None and echo.icmp is not None
    assert (echo.icmp.type, echo.icmp.ident, echo.icmp.seq) == (128, 5, 6)
    assert checksum_state(echo) == "ok" and "ICMPv6" in echo.summary()
    zero = decode_ip(bytes(IPv6(src=PEER, dst=STACK) / UDP(chksum=0) / b"x"))
    assert zero is not None and checksum_state(zero) == "bad"  # RFC 8200 8.1: not optional


def test_stack_pcap_with_ipv6_connection(tmp_path: Path) -> None:
    path = tmp_path / "six.pcap"
    writer = PcapWriter(str(path))
    packets = [
        IPv6(src=PEER, dst=STACK) / TCP(sport=40000, dport=7, flags="S", seq=100),
        IPv6(src=STACK, dst=PEER) / TCP(sport=7, dport=40000, flags="SA", seq=500, ack=101),
        IPv6(src=PEER, dst=STACK) / TCP(sport=40000, dport=7, flags="PA", seq=101, ack=501) / b"hello",
    ]
    for p in packets:
        writer.write(None, [bytes(p)])
    writer.close()
    got = read_pcap(path)
    assert [p.version for p in got] == [6, 6, 6]
    cid = conn_id(STACK, 7, PEER, 40000)
    assert len(tcp_packets(got, cid)) == 3
    assert list(connections(got, STACK)) == [cid]
    assert stream_bytes(got, PEER, 40000) == (b"hello", True)


def test_ethernet_capture_with_ipv6(tmp_path: Path) -> None:
    path = tmp_path / "eth.pcap"
    wrpcap(str(path), [Ether() / IPv6(src=PEER, dst=STACK) / UDP(sport=1, dport=7) / b"x"])
    (pkt,) = read_pcap(path)
    assert pkt.version == 6 and pkt.udp is not None and pkt.udp.dport == 7


def test_plot_an_ipv6_connection(tmp_path: Path) -> None:
    """`tcplab plot` on an IPv6 connection: its bracketed id from the event log, its
    packets from the pcap, a time-sequence graph of its data."""
    import json

    import pytest

    pytest.importorskip("matplotlib")
    from stack.observe import plot

    cid = conn_id(STACK, 80, PEER, 40000)
    events = tmp_path / "events.jsonl"
    rows = [{"t": 1.0, "type": "state", "conn": cid, "from": "LISTEN", "to": "SYN-RECEIVED"},
            {"t": 1.001, "type": "cwnd", "conn": cid, "cwnd": 14400, "ssthresh": 2**31, "reason": "init"},
            {"t": 1.02, "type": "rtt", "conn": cid, "sample": 0.01, "srtt": 0.01, "rttvar": 0.005,
             "rto": 0.2}]
    events.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pcap = tmp_path / "stack.pcap"
    writer = PcapWriter(str(pcap))
    writer.write(None, [bytes(IPv6(src=PEER, dst=STACK) / TCP(sport=40000, dport=80, flags="S", seq=9))])
    writer.write(None, [bytes(IPv6(src=STACK, dst=PEER) / TCP(sport=80, dport=40000, flags="SA", seq=500, ack=10))])
    for i in range(3):
        writer.write(None, [bytes(IPv6(src=STACK, dst=PEER) / TCP(sport=80, dport=40000, flags="A",
                                                                  seq=501 + 1000 * i, ack=10) / bytes(1000))])
    writer.close()
    result = plot.make_plots(events, pcap, out_dir=tmp_path / "png")
    assert result.conn == cid
    data = result.series.as_dict()["tseq"]["data"]
    assert [s for _, s in data] == [1, 1001, 2001]
