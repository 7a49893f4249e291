"""stack.observe.pcap: classic pcap, LINKTYPE_RAW, read back by scapy and tshark."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from stack.observe.pcap import LINKTYPE_RAW, PcapWriter


def _ipv4_udp(src: bytes, dst: bytes, payload: bytes, ident: int) -> bytes:
    udp = struct.pack("!HHHH", 40000, 7, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, 64, 17, 0, src, dst)
    s = sum(struct.unpack("!10H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]
    return hdr + udp


SRC = bytes([10, 0, 0, 2])
DST = bytes([10, 1, 0, 2])


def _packets() -> list[bytes]:
    return [_ipv4_udp(SRC, DST, bytes([i]) * (i * 37 % 1400), i) for i in range(20)]


def test_global_header(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    PcapWriter(path).close()
    raw = path.read_bytes()
    assert len(raw) == 24
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack("=IHHiIII", raw)
    assert (magic, major, minor, zone, sigfigs) == (0xA1B2C3D4, 2, 4, 0, 0)
    assert snaplen == 262144 and linktype == LINKTYPE_RAW == 101


def test_records_and_scapy(tmp_path: Path) -> None:
    scapy_utils = pytest.importorskip("scapy.utils")
    path = tmp_path / "x.pcap"
    pkts = _packets()
    base = 1_700_000_000.25
    with PcapWriter(path) as w:
        for i, p in enumerate(pkts):
            # split into parts, including a memoryview, to check concatenation
            w.write(base + i * 0.001, [p[:20], memoryview(p)[20:28], p[28:]])
        assert w.packets == len(pkts)
    read = scapy_utils.rdpcap(str(path))
    assert len(read) == len(pkts)
    for i, (got, want) in enumerate(zip(read, pkts, strict=True)):
        assert bytes(got) == want
        assert abs(float(got.time) - (base + i * 0.001)) < 2e-6


def test_usec_rounding_carries(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with PcapWriter(path) as w:
        w.write(10.9999997, [b"\x45" + bytes(19)])
    sec, usec, incl, orig = struct.unpack_from("=IIII", path.read_bytes(), 24)
    assert (sec, usec, incl, orig) == (11, 0, 20, 20)


def test_snaplen_truncates(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with PcapWriter(path, snaplen=30) as w:
        w.write(1.0, [bytes(20), bytes(range(20))])
    raw = path.read_bytes()
    sec, usec, incl, orig = struct.unpack_from("=IIII", raw, 24)
    assert (incl, orig) == (30, 40)
    assert raw[40:] == bytes(20) + bytes(range(10))


def test_write_after_close(tmp_path: Path) -> None:
    w = PcapWriter(tmp_path / "x.pcap")
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.write(1.0, [b"x"])


def test_flush_makes_records_visible(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    w = PcapWriter(path)
    w.write(None, [_packets()[3]])
    w.flush()
    assert len(path.read_bytes()) == 24 + 16 + len(_packets()[3])
    w.close()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    pkts = _packets()
    with PcapWriter(path) as w:
        for i, p in enumerate(pkts):
            w.write(1_700_000_000 + i, [p])
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields",
         "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e", "frame.len"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()
    assert len(out) == len(pkts), out
    for line, p in zip(out, pkts, strict=True):
        assert line.split("\t") == ["10.0.0.2", "10.1.0.2", "7", str(len(p))]


def test_max_bytes_bounds_the_file_and_reports_once(tmp_path: Path) -> None:
    full: list[int] = []
    path = tmp_path / "bounded.pcap"
    with PcapWriter(path, max_bytes=24 + 3 * (16 + 100), on_full=lambda w: full.append(w.packets)) as w:
        for i in range(10):
            w.write(1.0 + i, [bytes([i]) * 100])
    assert path.stat().st_size == 24 + 3 * (16 + 100)  # exactly three records fit
    assert full == [3]  # called once, when the fourth did not fit
    assert w.packets == 3 and w.skipped == 7
    raw = path.read_bytes()[24:]
    records = [raw[i * 116 + 16 : (i + 1) * 116] for i in range(3)]
    assert records == [bytes([i]) * 100 for i in range(3)]
    assert [struct.unpack("<IIII", raw[i * 116 : i * 116 + 16])[2] for i in range(3)] == [100] * 3
