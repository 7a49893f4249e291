"""`tcplab plot` (stack/observe/plot.py, ladder.py, state_diagram.py): the series it plots
and the pictures it writes. Every picture is decoded (PNG: matplotlib.image.imread; SVG:
its XML) and must be non-trivial: enough drawn pixels and colours, the expected text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from stack.labkit.capture import read_pcap  # noqa: E402
from stack.observe import plot  # noqa: E402
from stack.observe.pcap import PcapWriter  # noqa: E402
from stack.wire.ipv4 import IPPROTO_TCP, build_ipv4_header  # noqa: E402
from stack.wire.tcp import ACK, SYN, TCPOptions, TCPSegment, build_tcp  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STACK, PEER = "10.0.0.2", "10.1.0.2"
CONN = f"{STACK}:80-{PEER}:40000"
OTHER = f"{STACK}:7-{PEER}:40001"
ISN, PEER_ISN = 5000, 90000
WALL = 1000.0  # the pcap's wall clock when the event log says 1.0


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
        window: int = 1000, payload: bytes = b"", options: TCPOptions | None = None) -> bytes:
    seg = TCPSegment(sport, dport, seq, ack, flags, window, 0, options or TCPOptions(), payload)
    body = build_tcp(seg, src, dst)
    return build_ipv4_header(src, dst, IPPROTO_TCP, len(body), 1) + body


def write_events(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, Path]:
    """A download of 10 segments with one fast retransmission, and a second, quieter
    connection; the pcap's times are the event times + 999 s."""
    events: list[dict[str, Any]] = [
        {"t": 0.5, "type": "drop", "conn": None, "reason": "bad_ip_version"},
        {"t": 1.0, "type": "state", "conn": CONN, "from": "LISTEN", "to": "SYN-RECEIVED"},
        {"t": 1.001, "type": "state", "conn": CONN, "from": "SYN-RECEIVED", "to": "ESTABLISHED"},
        {"t": 1.001, "type": "cwnd", "conn": CONN, "cwnd": 14600, "ssthresh": 2**31,
         "reason": "init"},
        {"t": 1.02, "type": "rtt", "conn": CONN, "sample": 0.01, "srtt": 0.01, "rttvar": 0.005,
         "rto": 0.2},
        {"t": 1.03, "type": "cwnd", "conn": CONN, "cwnd": 16000, "ssthresh": 2**31,
         "reason": "ack"},
        {"t": 1.05, "type": "cwnd", "conn": CONN, "cwnd": 8000, "ssthresh": 8000,
         "reason": "fast_retransmit"},
        {"t": 1.05, "type": "retransmit", "conn": CONN, "seq": ISN + 1 + 3000, "len": 1000,
         "reason": "fast"},
        {"t": 1.07, "type": "rtt", "conn": CONN, "sample": 0.02, "srtt": 0.01125,
         "rttvar": 0.00625, "rto": 0.2},
        {"t": 1.08, "type": "cwnd", "conn": CONN, "cwnd": 9000, "ssthresh": 8000,
         "reason": "recovery_exit"},
        {"t": 2.0, "type": "state", "conn": OTHER, "from": "LISTEN", "to": "SYN-RECEIVED"},
    ]
    events_path = tmp_path / "events.jsonl"
    write_events(events_path, events)
    pcap_path = tmp_path / "stack.pcap"
    with PcapWriter(pcap_path) as pcap:
        def put(t: float, packet: bytes) -> None:
            pcap.write(WALL + t - 1.0, [packet])

        put(1.0, tcp(PEER, STACK, 40000, 80, PEER_ISN, 0, SYN, 64240,
                     options=TCPOptions(mss=1460, wscale=2)))
        put(1.0005, tcp(STACK, PEER, 80, 40000, ISN, PEER_ISN + 1, SYN | ACK, 65535,
                        options=TCPOptions(mss=1460, wscale=5)))
        put(1.001, tcp(PEER, STACK, 40000, 80, PEER_ISN + 1, ISN + 1, ACK, 500))
        for i in range(10):
            put(1.01 + i * 0.001, tcp(STACK, PEER, 80, 40000, ISN + 1 + i * 1000, PEER_ISN + 1,
                                      ACK, 1000, bytes(1000)))
        put(1.03, tcp(PEER, STACK, 40000, 80, PEER_ISN + 1, ISN + 1 + 3000, ACK, 500))
        put(1.05, tcp(STACK, PEER, 80, 40000, ISN + 1 + 3000, PEER_ISN + 1, ACK, 1000,
                      bytes(1000)))
        put(1.07, tcp(PEER, STACK, 40000, 80, PEER_ISN + 1, ISN + 1 + 10000, ACK, 600))
        put(2.0, tcp(PEER, STACK, 40001, 7, 1, 0, SYN, 64240))
    return events_path, pcap_path


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1000


def test_three_pngs_with_the_expected_series(capture: tuple[Path, Path], tmp_path: Path) -> None:
    events, pcap = capture
    result = plot.make_plots(events, pcap, out_dir=tmp_path / "png")
    assert result.conn == CONN  # the busiest connection
    names = sorted(p.name for p in result.files)
    assert [n.rsplit("-", 1)[1] for n in names] == ["cwnd.png", "rtt.png", "states.png",
                                                    "tseq.png"]
    assert all(is_png(p) for p in result.files)
    series = result.series.as_dict()

    # time-sequence: 10 segments + 1 retransmission, relative to the ISN, time from the SYN
    data = series["tseq"]["data"]
    assert len(data) == 11
    assert [s for _, s in data[:10]] == [1 + i * 1000 for i in range(10)]
    assert data[0][0] == pytest.approx(0.01, abs=1e-4)
    assert series["tseq"]["data_end"][0][1] == 1001
    assert data[10] == (pytest.approx(0.05, abs=1e-4), 3001)
    assert series["tseq"]["retransmit_fast"] == [(pytest.approx(0.05), 3001.0)]
    acks = series["tseq"]["acks"]
    assert [a for _, a in acks] == [1.0, 3001.0, 10001.0]
    # the window's right edge: ack + window << the peer's window scale (2)
    assert [w for _, w in series["tseq"]["window"]] == [1.0 + 2000, 3001.0 + 2000, 10001.0 + 2400]

    # cwnd: "infinite" ssthresh is not drawn; the loss is marked
    assert [c for _, c in series["cwnd"]["cwnd"]] == [14600, 16000, 8000, 9000]
    assert [s for _, s in series["cwnd"]["ssthresh"]] == [8000, 8000]
    assert series["cwnd"]["losses"] == [(pytest.approx(0.05), 8000.0)]

    # rtt
    assert [s for _, s in series["rtt"]["sample"]] == [0.01, 0.02]
    assert [s for _, s in series["rtt"]["srtt"]] == [0.01, 0.01125]
    assert [s for _, s in series["rtt"]["rto"]] == [0.2, 0.2]


def test_main_prints_the_files_and_defaults_to_the_events_folder(
        capture: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    events, pcap = capture
    assert plot.main([str(events), "--pcap", str(pcap)]) == 0
    out = capsys.readouterr().out
    files = [Path(line) for line in out.splitlines() if line.endswith(".png")]
    assert len(files) == 4
    assert all(f.parent == events.parent and is_png(f) for f in files)
    assert f"connection {CONN}" in out


def test_conn_option_and_unknown_connection(capture: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    events, pcap = capture
    only_states = plot.make_plots(events, None, conn=OTHER, out_dir=tmp_path)
    assert [p.name.rsplit("-", 1)[1] for p in only_states.files] == ["states.png"]
    assert plot.main([str(events), "--conn", "10.0.0.2:1-10.1.0.2:2"]) == 1
    err = capsys.readouterr().err
    assert "no events for connection 10.0.0.2:1-10.1.0.2:2" in err and CONN in err


def test_without_a_pcap_only_retransmissions(capture: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = capture
    result = plot.make_plots(events, None, out_dir=tmp_path)
    series = result.series.as_dict()
    assert series["tseq"]["data"] == []
    assert series["tseq"]["retransmit_fast"] == [(pytest.approx(0.05), 0.0)]
    assert any("no --pcap" in n for n in result.series.notes)
    assert len(result.files) == 4


def test_missing_and_empty_logs_are_clear_errors(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert plot.main([str(tmp_path / "nope.jsonl")]) == 1
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert plot.main([str(empty)]) == 1
    assert "is empty: no events" in capsys.readouterr().err
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("this is not json\n")
    assert plot.main([str(garbage)]) == 1
    assert "not a JSON-lines event log" in capsys.readouterr().err
    no_conn = tmp_path / "noconn.jsonl"
    write_events(no_conn, [{"t": 0.1, "type": "drop", "conn": None, "reason": "x"}])
    assert plot.main([str(no_conn)]) == 1
    assert "names no TCP connection" in capsys.readouterr().err


def test_bad_pcaps(capture: tuple[Path, Path], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    events, _ = capture
    pcapng = tmp_path / "x.pcapng"
    pcapng.write_bytes(bytes.fromhex("0a0d0d0a") + bytes(40))
    assert plot.main([str(events), "--pcap", str(pcapng)]) == 1
    assert "pcapng is not supported" in capsys.readouterr().err
    assert plot.main([str(events), "--pcap", str(tmp_path / "missing.pcap")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_rto_backoff_is_plotted(tmp_path: Path) -> None:
    events = [
        {"t": 0.0, "type": "state", "conn": CONN, "from": "LISTEN", "to": "SYN-RECEIVED"},
        {"t": 0.1, "type": "rtt", "conn": CONN, "sample": 0.01, "srtt": 0.01, "rttvar": 0.005,
         "rto": 0.2},
        {"t": 0.3, "type": "retransmit", "conn": CONN, "seq": 7, "len": 100, "reason": "rto"},
        {"t": 0.7, "type": "retransmit", "conn": CONN, "seq": 7, "len": 100, "reason": "rto"},
        {"t": 1.5, "type": "retransmit", "conn": CONN, "seq": 7, "len": 100, "reason": "rto"},
    ]
    path = tmp_path / "e.jsonl"
    write_events(path, events)
    result = plot.make_plots(path, None, out_dir=tmp_path)
    waits = result.series.as_dict()["rtt"]["rto_waits"]
    assert waits == [(pytest.approx(0.7), pytest.approx(0.4)), (pytest.approx(1.5), pytest.approx(0.8))]
    assert any(f.name.endswith("-rtt.png") for f in result.files)
    # the RTO line doubles at each timeout (RFC 6298 5.5)
    rto = result.series.as_dict()["rtt"]["rto"]
    assert [r for _, r in rto] == [0.2, 0.4, 0.8, 1.6]
    assert [t for t, _ in rto] == [pytest.approx(x) for x in (0.1, 0.3, 0.7, 1.5)]


def test_two_logs_are_compared(capture: tuple[Path, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    events, _ = capture
    second = tmp_path / "cubic.jsonl"
    second.write_text(events.read_text())
    out_dir = tmp_path / "cmp"
    assert plot.main([str(events), str(second), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    compare = [Path(line) for line in out.splitlines() if "compare-" in line]
    assert len(compare) == 1 and is_png(compare[0])
    assert plot.main([str(events), str(second), "--pcap", "a.pcap"]) == 2


def test_pcap_reader_decodes_the_capture(capture: tuple[Path, Path]) -> None:
    _, pcap = capture
    packets = read_pcap(pcap)
    assert len(packets) == 17
    syn = packets[0]
    assert syn.tcp is not None and syn.tcp.syn and syn.tcp.mss == 1460 and syn.tcp.wscale == 2
    assert packets[3].tcp is not None and packets[3].tcp.payload_len == 1000
    assert all(p.ip_checksum_ok for p in packets)


def test_rack_tlp_and_rto_retransmissions_and_the_prr_limit(tmp_path: Path) -> None:
    """RACK (RFC 8985 6), TLP (7) and RTO retransmissions are separate series with
    their own markers; the PRR sending limit (RFC 6937: pipe + sndcnt) is drawn in the
    cwnd graph."""
    events = [
        {"t": 0.0, "type": "state", "conn": CONN, "from": "LISTEN", "to": "SYN-RECEIVED"},
        {"t": 0.1, "type": "cwnd", "conn": CONN, "cwnd": 14600, "ssthresh": 1 << 31, "reason": "ack"},
        {"t": 0.2, "type": "retransmit", "conn": CONN, "seq": 1001, "len": 1000, "reason": "rack"},
        {"t": 0.2, "type": "prr", "conn": CONN, "sndcnt": 1000, "pipe": 6000, "prr_delivered": 3000,
         "prr_out": 0, "recover_fs": 10000, "ssthresh": 5000},
        {"t": 0.3, "type": "retransmit", "conn": CONN, "seq": 9001, "len": 1000, "reason": "tlp"},
        {"t": 0.6, "type": "retransmit", "conn": CONN, "seq": 1001, "len": 1000, "reason": "rto"},
    ]
    path = tmp_path / "e.jsonl"
    write_events(path, events)
    result = plot.make_plots(path, None, out_dir=tmp_path)
    tseq = result.series.as_dict()["tseq"]
    assert {k for k in tseq if k.startswith("retransmit_")} == {
        "retransmit_rack", "retransmit_tlp", "retransmit_rto"}
    assert plot.RETRANSMIT_STYLE["rack"] != plot.RETRANSMIT_STYLE["rto"] != plot.RETRANSMIT_STYLE["tlp"]
    assert result.series.as_dict()["cwnd"]["prr_limit"] == [(pytest.approx(0.2), 7000.0)]
    assert any(f.name.endswith("-cwnd.png") for f in result.files)


def test_bbr_model_is_drawn_in_the_cwnd_graph(tmp_path: Path) -> None:
    """BBR's rate-sample events carry its model (congestion/bbr.py snapshot): the cwnd
    graph draws BtlBw x RTprop, the path's BDP as BBR sees it; BBR's infinite ssthresh
    is not drawn."""
    events = [
        {"t": 0.0, "type": "state", "conn": CONN, "from": "LISTEN", "to": "SYN-RECEIVED"},
        {"t": 0.1, "type": "cwnd", "conn": CONN, "reason": "rate", "rate": 1000000,
         "cwnd": 20000.0, "ssthresh": float(1 << 31), "btlbw": 1000000.0, "rtprop": 0.01},
        {"t": 0.2, "type": "cwnd", "conn": CONN, "reason": "rate", "rate": 2000000,
         "cwnd": 30000.0, "ssthresh": float(1 << 31), "btlbw": 2000000.0, "rtprop": 0.01},
        {"t": 0.3, "type": "cwnd", "conn": CONN, "cwnd": 30000, "ssthresh": 1 << 31, "reason": "ack"},
    ]
    path = tmp_path / "e.jsonl"
    write_events(path, events)
    result = plot.make_plots(path, None, out_dir=tmp_path)
    cwnd = result.series.as_dict()["cwnd"]
    assert cwnd["bdp"] == [(pytest.approx(0.1), pytest.approx(10000.0)),
                           (pytest.approx(0.2), pytest.approx(20000.0))]
    assert cwnd["ssthresh"] == []
    assert any(f.name.endswith("-cwnd.png") for f in result.files)


# --- the pictures, decoded --------------------------------------------------------------------
def picture(path: Path) -> tuple[int, float, int]:
    """(distinct colours, share of non-white pixels, width) of a PNG."""
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(str(path))[:, :, :3]
    flat = (pixels.reshape(-1, 3) * 255).round().astype(int)
    colours = len({tuple(c) for c in flat[:: max(1, len(flat) // 200_000)]})
    drawn = float(np.mean(np.any(pixels < 0.9, axis=2)))
    return colours, drawn, pixels.shape[1]


def has_colour(path: Path, rgb: tuple[float, float, float], tol: float = 0.08,
               region: tuple[float, float] = (0.0, 1.0)) -> int:
    """How many pixels of about that colour (within the columns ``region``, 0..1)."""
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(str(path))[:, :, :3]
    w = pixels.shape[1]
    part = pixels[:, int(region[0] * w): int(region[1] * w)]
    return int(np.sum(np.all(np.abs(part - np.array(rgb)) < tol, axis=2)))


def svg_texts(path: Path) -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    return ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")]


def test_every_png_is_a_real_picture(capture: tuple[Path, Path], tmp_path: Path) -> None:
    events, pcap = capture
    result = plot.make_plots(events, pcap, out_dir=tmp_path, ladder=True)
    for path in result.files:
        if path.suffix != ".png":
            continue
        colours, drawn, _ = picture(path)
        assert colours >= 20 and 0.01 < drawn < 0.9, (path.name, colours, drawn)


def test_ladder_png_and_svg(capture: tuple[Path, Path], tmp_path: Path) -> None:
    from stack.observe.ladder import ladder_rows

    events, pcap = capture
    result = plot.make_plots(events, pcap, out_dir=tmp_path, ladder=True)
    png = next(p for p in result.files if p.name.endswith("-ladder.png"))
    svg = next(p for p in result.files if p.name.endswith("-ladder.svg"))
    colours, drawn, _ = picture(png)
    assert colours >= 20 and drawn > 0.02
    texts = svg_texts(svg)
    joined = "\n".join(texts)
    # both ends, flags, relative numbers, scaled window, options, the retransmission
    assert "10.0.0.2:80" in joined and "10.1.0.2:40000" in joined
    assert "[S] seq=0 win=64240" in joined and "mss 1460, wscale 2" in joined
    assert "[S.] seq=0 ack=1 win=65535" in joined
    assert "10 x  [.] seq=1..9001 ack=1 win=32000 len=1000" in joined  # 1000 << 5, folded
    assert "retransmission (fast)" in joined
    # the rows themselves
    ladder = ladder_rows(read_pcap(pcap), CONN, plot.load_events(events))
    kinds = [(r.outgoing, r.flags, r.count) for r in ladder.rows]
    assert kinds[:3] == [(False, "S", 1), (True, "S.", 1), (False, ".", 1)]
    assert [r.marks for r in ladder.rows if r.marks] == [["retransmission (fast)"]]
    assert has_colour(png, (1.0, 0.27, 0.0)) > 50  # orangered: the retransmission arrow


def test_ladder_marks_challenge_acks_and_folds_guessed_rsts(tmp_path: Path) -> None:
    from stack.observe.ladder import ladder_rows

    events = [{"t": 1.0, "type": "state", "conn": CONN, "from": "LISTEN", "to": "SYN-RECEIVED"},
              {"t": 1.2, "type": "challenge_ack", "conn": CONN}]
    pcap_path = tmp_path / "c.pcap"
    with PcapWriter(pcap_path) as pcap:
        t = WALL
        for packet in (tcp(PEER, STACK, 40000, 80, PEER_ISN, 0, SYN, 64240),
                       tcp(STACK, PEER, 80, 40000, ISN, PEER_ISN + 1, SYN | ACK, 65535),
                       tcp(PEER, STACK, 40000, 80, PEER_ISN + 1, ISN + 1, ACK, 500)):
            t += 0.001
            pcap.write(t, [packet])
        for i in range(50):  # guessed RSTs, out of the window: dropped
            t += 0.001
            pcap.write(t, [tcp(PEER, STACK, 40000, 80, i * 524288 + 7, 0, 0x04, 0)])
        t += 0.001
        pcap.write(t, [tcp(PEER, STACK, 40000, 80, PEER_ISN + 100, 0, 0x04, 0)])  # in window
        t += 0.001
        pcap.write(t, [tcp(STACK, PEER, 80, 40000, ISN + 1, PEER_ISN + 1, ACK, 65535)])
    ladder = ladder_rows(read_pcap(pcap_path), CONN, events)
    rsts = [r for r in ladder.rows if r.kind == "rst"]
    assert rsts[0].count == 51  # folded into one row
    assert ladder.rows[-1].marks == ["challenge ACK (RFC 5961)"]
    files = plot.make_plots(_events_file(tmp_path, events), pcap_path, out_dir=tmp_path,
                            ladder=True).files
    svg = next(p for p in files if p.suffix == ".svg")
    joined = "\n".join(svg_texts(svg))
    assert "51 x  [R]" in joined and "challenge ACK (RFC 5961)" in joined


def _events_file(tmp_path: Path, events: list[dict[str, Any]]) -> Path:
    path = tmp_path / "ev.jsonl"
    write_events(path, events)
    return path


def test_state_diagram_highlights_the_path(capture: tuple[Path, Path], tmp_path: Path) -> None:
    from stack.observe.state_diagram import taken_path

    events_path, pcap = capture
    events = plot.load_events(events_path)
    assert taken_path(events, CONN) == [("LISTEN", "SYN-RECEIVED"),
                                        ("SYN-RECEIVED", "ESTABLISHED")]
    closing = [*events,
               {"t": 3.0, "type": "state", "conn": CONN, "from": "ESTABLISHED", "to": "CLOSED"}]
    assert taken_path(closing, CONN)[-1] == ("ESTABLISHED", "CLOSED*")  # a reset: dashed
    result = plot.make_plots(events_path, pcap, out_dir=tmp_path)
    png = next(p for p in result.files if p.name.endswith("-states.png"))
    colours, drawn, _ = picture(png)
    assert colours >= 20 and drawn > 0.02
    assert has_colour(png, (0.698, 0.133, 0.133)) > 500  # firebrick: the visited states
    assert has_colour(png, (1.0, 0.0, 0.0)) > 100  # red: the transitions taken


def test_sack_blocks_and_the_receive_window_on_the_tseq(tmp_path: Path) -> None:
    from stack.wire.tcp import TCPOptions as Opts

    events = [{"t": 1.0, "type": "state", "conn": CONN, "from": "LISTEN", "to": "SYN-RECEIVED"},
              {"t": 1.001, "type": "cwnd", "conn": CONN, "cwnd": 14600, "ssthresh": 2**31,
               "reason": "init"}]
    pcap_path = tmp_path / "s.pcap"
    with PcapWriter(pcap_path) as pcap:
        put = [tcp(PEER, STACK, 40000, 80, PEER_ISN, 0, SYN, 64240),
               tcp(STACK, PEER, 80, 40000, ISN, PEER_ISN + 1, SYN | ACK, 65535),
               tcp(PEER, STACK, 40000, 80, PEER_ISN + 1, ISN + 1, ACK, 60000)]
        for i in range(6):
            put.append(tcp(STACK, PEER, 80, 40000, ISN + 1 + i * 1000, PEER_ISN + 1, ACK, 1000,
                           bytes(1000)))
        # segment 2 lost: the peer SACKs 3001-6001
        put.append(tcp(PEER, STACK, 40000, 80, PEER_ISN + 1, ISN + 1 + 2000, ACK, 60000,
                       options=Opts(sack_blocks=[(ISN + 1 + 3000, ISN + 1 + 6000)])))
        for i, packet in enumerate(put):
            pcap.write(WALL + i * 0.001, [packet])
    result = plot.make_plots(_events_file(tmp_path, events), pcap_path, out_dir=tmp_path)
    series = result.series.as_dict()["tseq"]
    assert series["sack"] == [(pytest.approx(0.009, abs=1e-4), 3001)]
    assert series["sack_end"][0][1] == 6001
    assert series["window"][-1][1] == 2001 + 60000
    tseq = next(p for p in result.files if p.name.endswith("-tseq.png"))
    assert has_colour(tseq, (0.66, 0.52, 0.79), tol=0.1) > 30  # tab:purple (alpha 0.8): SACK bars


def test_a_receive_only_connection_gets_a_receive_window_plot(tmp_path: Path) -> None:
    events = [{"t": 1.0, "type": "state", "conn": CONN, "from": "SYN-SENT", "to": "ESTABLISHED"},
              {"t": 1.001, "type": "cwnd", "conn": CONN, "cwnd": 14600, "ssthresh": 2**31,
               "reason": "init"}]
    pcap_path = tmp_path / "r.pcap"
    with PcapWriter(pcap_path) as pcap:
        put = [tcp(STACK, PEER, 80, 40000, ISN, 0, SYN, 65535, options=TCPOptions(wscale=3)),
               tcp(PEER, STACK, 40000, 80, PEER_ISN, ISN + 1, SYN | ACK, 64240,
                   options=TCPOptions(wscale=2)),
               tcp(STACK, PEER, 80, 40000, ISN + 1, PEER_ISN + 1, ACK, 8000)]
        for i in range(8):
            put.append(tcp(PEER, STACK, 40000, 80, PEER_ISN + 1 + i * 1000, ISN + 1, ACK, 500,
                           bytes(1000)))
            put.append(tcp(STACK, PEER, 80, 40000, ISN + 1, PEER_ISN + 1001 + i * 1000, ACK,
                           8000 - 1000 * i))
        for i, packet in enumerate(put):
            pcap.write(WALL + i * 0.001, [packet])
    result = plot.make_plots(_events_file(tmp_path, events), pcap_path, out_dir=tmp_path)
    names = [p.name.rsplit("-", 1)[1] for p in result.files]
    assert "rwnd.png" in names and "cwnd.png" not in names
    assert result.series.receive_only
    assert [w for _, w in result.series.rwnd] == [64000] + [(8000 - 1000 * i) << 3 for i in range(8)]
    rwnd = next(p for p in result.files if p.name.endswith("-rwnd.png"))
    colours, drawn, _ = picture(rwnd)
    assert colours >= 20 and drawn > 0.01


def test_legends_sit_beside_the_data(capture: tuple[Path, Path], tmp_path: Path) -> None:
    """The legend is outside the axes: the right part of each graph holds the legend's
    text, and the plot area's top-left corner (where the old legend covered the RTT
    samples) is free of it."""
    events, pcap = capture
    result = plot.make_plots(events, pcap, out_dir=tmp_path)
    rtt = next(p for p in result.files if p.name.endswith("-rtt.png"))
    assert has_colour(rtt, (0.0, 0.0, 0.0), tol=0.3, region=(0.8, 1.0)) > 100  # legend text
    # the legend's box (white, with a gray frame) is not drawn in the plot's upper left
    assert has_colour(rtt, (0.8, 0.8, 0.8), tol=0.03, region=(0.08, 0.3)) < 400


def test_zoom_keeps_a_stretch(capture: tuple[Path, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from stack.observe.ladder import ladder_rows

    events, pcap = capture
    rows = ladder_rows(read_pcap(pcap), CONN, plot.load_events(events), zoom=(0.04, 0.08))
    assert [r.flags for r in rows.rows] == [".", "."] and rows.rows[0].marks
    assert plot.main([str(events), "--pcap", str(pcap), "--conn", CONN, "--zoom", "0.04:0.08",
                      "--ladder", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "-ladder.svg" in out and "-tseq.png" in out
    with pytest.raises(SystemExit):
        plot.main([str(events), "--zoom", "2:1"])
