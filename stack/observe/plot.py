"""`tcplab plot`: pictures of one TCP connection from the event log (and the pcap).

    tcplab plot EVENTS [--pcap FILE] [--conn ID] [--zoom T0:T1] [--ladder] [--out DIR]
    tcplab plot A.jsonl B.jsonl [--pcap A.pcap --pcap B.pcap] [--conn A --conn B]
                                                                (also compares cwnd)

For the chosen connection (``--conn 10.0.0.2:80-10.1.0.2:40000``; a lab's check prints
the one it judged; else the one with the most events, which is often not the one you
mean) it writes PNG files and prints their names:

* ``...-tseq.png``: the time-sequence graph. With ``--pcap``: every data segment the
  sender sent (a vertical bar from its first to its last sequence number, relative to the
  ISN), the receiver's cumulative ACKs, the SACK blocks it reported (RFC 2018; purple
  bars above the ACK line), the receive window's right edge (ACK + advertised window, a
  dashed staircase) and the retransmissions the event log reports, one marker per
  reason: rack (RACK found the loss by time, RFC 8985 6), tlp (tail loss probe, 7), rto
  (the timer), and fast, sack, partial_ack, probe, pmtu. Without a pcap only the
  retransmissions.
* ``...-cwnd.png``: cwnd and ssthresh over time (``cwnd`` events), losses marked, and
  during recovery the PRR sending limit, pipe + sndcnt (``prr`` events, RFC 6937); for a
  connection on which the stack only received, ``...-rwnd.png`` instead: the window the
  stack advertised, which is what changed there.
* ``...-rtt.png``: RTT samples, SRTT and the RTO the timer used, doubling at every
  timeout (RFC 6298 5.5) until the next sample.
* ``...-states.png``: the RFC 9293 state diagram with the path the connection took
  (stack/observe/state_diagram.py).
* with ``--ladder`` (needs ``--pcap``): ``...-ladder.png`` and ``...-ladder.svg``, the
  ladder diagram of its segments (stack/observe/ladder.py).

``--zoom T0:T1`` (seconds, as on the time axes) draws only that stretch: the sequence
axis then spans what happened in it. Legends sit beside the graphs, never on the data.

Time is seconds since the connection's first event. The pcap has wall-clock times and
the event log seconds since the daemon started; the two are lined up on the
connection's SYN (the ``state`` event to SYN-RECEIVED or SYN-SENT and the SYN in the
capture), else on the first retransmission, else on the first packet.

matplotlib (the ``plot`` extra: ``pip install -e '.[plot]'``) draws with the Agg backend,
so no display is needed. :func:`collect` computes the series without matplotlib.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack.labkit.analysis import rto_backoff_points
from stack.labkit.capture import Packet, PcapError, parse_conn_id, read_pcap, tcp_packets
from stack.observe.events import read_events

Point = tuple[float, float]
INFINITE = 1 << 30  # ssthresh at or above this is "infinite" (not drawn)
RETRANSMIT_STYLE = {
    "rack": ("o", "green"),
    "rto": ("x", "red"),
    "fast": ("x", "darkorange"),
    "sack": ("x", "purple"),
    "partial_ack": ("x", "brown"),
    "probe": ("d", "black"),
    "tlp": ("^", "teal"),
    "pmtu": ("x", "olive"),
}


class PlotError(Exception):
    """A problem with the input, explained in one line."""


@dataclass
class Series:
    """The numbers behind the pictures of one connection."""

    conn: str
    sender: str  # whose data the time-sequence graph shows
    # tseq: data segments as (t, first seq, last seq + 1), relative to the sender's ISN
    segments: list[tuple[float, int, int]] = field(default_factory=list)
    acks: list[Point] = field(default_factory=list)
    window: list[Point] = field(default_factory=list)  # right edge: ack + scaled window
    retransmits: dict[str, list[Point]] = field(default_factory=dict)  # reason -> (t, rel seq)
    cwnd: list[Point] = field(default_factory=list)
    ssthresh: list[Point] = field(default_factory=list)
    losses: list[Point] = field(default_factory=list)  # (t, cwnd after the reduction)
    prr_limit: list[Point] = field(default_factory=list)  # (t, pipe + sndcnt) in recovery
    bdp: list[Point] = field(default_factory=list)  # BBR's model: (t, BtlBw * RTprop)
    rtt_sample: list[Point] = field(default_factory=list)
    srtt: list[Point] = field(default_factory=list)
    rto: list[Point] = field(default_factory=list)
    rto_waits: list[Point] = field(default_factory=list)  # backed-off RTOs that expired
    sacks: list[tuple[float, int, int]] = field(default_factory=list)  # (t, left, right) rel
    rwnd: list[Point] = field(default_factory=list)  # the window the stack advertised
    receive_only: bool = False  # the stack sent no data on this connection
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, dict[str, list[Any]]]:
        """Everything plotted, by graph and line name (what the tests look at)."""
        return {
            "tseq": {
                "data": [(t, s) for t, s, _ in self.segments],
                "data_end": [(t, e) for t, _, e in self.segments],
                "acks": list(self.acks),
                "window": list(self.window),
                "sack": [(t, a) for t, a, _ in self.sacks],
                "sack_end": [(t, b) for t, _, b in self.sacks],
                **{f"retransmit_{k}": list(v) for k, v in self.retransmits.items()},
            },
            "rwnd": {"rwnd": list(self.rwnd)},
            "cwnd": {"cwnd": list(self.cwnd), "ssthresh": list(self.ssthresh),
                     "losses": list(self.losses), "prr_limit": list(self.prr_limit),
                     "bdp": list(self.bdp)},
            "rtt": {"sample": list(self.rtt_sample), "srtt": list(self.srtt),
                    "rto": list(self.rto), "rto_waits": list(self.rto_waits)},
        }  # fmt: skip


@dataclass
class PlotResult:
    conn: str
    files: list[Path]
    series: Series


# --- reading --------------------------------------------------------------------------------
def load_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise PlotError(f"{p}: no such file")
    if p.is_dir():
        raise PlotError(f"{p} is a folder; give the event log (events.jsonl)")
    try:
        events = read_events(p)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlotError(f"{p}: not a JSON-lines event log ({exc})") from None
    if not events:
        raise PlotError(f"{p} is empty: no events (was the stack started with --events {p.name}?)")
    return events


def pick_connection(events: list[dict[str, Any]], conn: str | None) -> str:
    counts = Counter(e["conn"] for e in events if isinstance(e.get("conn"), str) and "-" in e["conn"])
    if not counts:
        raise PlotError("the event log names no TCP connection")
    if conn is not None:
        if conn not in counts:
            known = ", ".join(c for c, _ in counts.most_common(8))
            raise PlotError(f"no events for connection {conn}; the busiest are: {known}")
        return conn
    return counts.most_common(1)[0][0]


def _offset(events: list[dict[str, Any]], packets: list[Packet], local: str) -> tuple[float, str]:
    """pcap time minus event time, and how it was found."""
    syns = [p for p in packets if p.tcp is not None and p.tcp.syn]
    opens = [e for e in events if e.get("type") == "state"
             and e.get("to") in ("SYN-RECEIVED", "SYN-SENT")]
    if syns and opens:
        return syns[0].ts - float(opens[0]["t"]), "the SYN"
    rtx = [e for e in events if e.get("type") == "retransmit"]
    if rtx:
        seq = rtx[0].get("seq")
        sent = [p for p in packets if p.src == local and p.tcp is not None and p.tcp.seq == seq]
        if len(sent) >= 2:
            return sent[1].ts - float(rtx[0]["t"]), "the first retransmission"
    if packets and events:
        return packets[0].ts - float(events[0]["t"]), "the first packet (rough)"
    return 0.0, "nothing"


def collect(events: list[dict[str, Any]], packets: list[Packet] | None, conn: str) -> Series:
    """Compute every series for connection ``conn`` (no matplotlib needed)."""
    local, lport, remote, rport = parse_conn_id(conn)
    mine = [e for e in events if e.get("conn") == conn]
    t0 = float(mine[0]["t"]) if mine else 0.0
    series = Series(conn=conn, sender=local)

    rto: float | None = None
    for e in mine:
        t = float(e["t"]) - t0
        kind = e.get("type")
        if kind == "retransmit" and e.get("reason") == "rto" and rto is not None:
            # RFC 6298 5.5: the timer fired, the RTO doubles (up to 60 s) until a sample
            rto = min(rto * 2, 60.0)
            series.rto.append((t, rto))
        if kind == "cwnd":
            series.cwnd.append((t, float(e["cwnd"])))
            if float(e["ssthresh"]) < INFINITE:
                series.ssthresh.append((t, float(e["ssthresh"])))
            if e.get("reason") in ("fast_retransmit", "rto"):
                series.losses.append((t, float(e["cwnd"])))
            if e.get("btlbw") and e.get("rtprop"):  # BBR (congestion/bbr.py): its path model
                series.bdp.append((t, float(e["btlbw"]) * float(e["rtprop"])))
        elif kind == "prr":
            series.prr_limit.append((t, float(e["pipe"]) + float(e["sndcnt"])))
        elif kind == "rtt":
            series.rtt_sample.append((t, float(e["sample"])))
            series.srtt.append((t, float(e["srtt"])))
            rto = float(e["rto"])
            series.rto.append((t, rto))
    series.rto_waits = [(t - t0, wait) for t, wait in rto_backoff_points(events, conn)]

    rtx = [e for e in mine if e.get("type") == "retransmit"]
    if packets is None:
        if rtx:
            base = min(int(e["seq"]) for e in rtx)
            for e in rtx:
                series.retransmits.setdefault(str(e.get("reason")), []).append(
                    (float(e["t"]) - t0, float((int(e["seq"]) - base) & 0xFFFFFFFF)))
            series.notes.append("no --pcap: the time-sequence graph shows only retransmissions "
                                "(sequence numbers relative to the first one)")
        return series

    pkts = tcp_packets(packets, conn)
    if not pkts:
        series.notes.append(f"the pcap has no packets of {conn}")
        return series
    offset, how = _offset(mine, pkts, local)
    series.notes.append(f"pcap and event times lined up on {how}")

    def data_from(src: str, sport: int) -> list[Packet]:
        return [p for p in pkts if p.src == src and p.tcp is not None and p.tcp.sport == sport
                and p.tcp.payload_len > 0]

    sender, sport, receiver = local, lport, remote
    if not data_from(local, lport) and data_from(remote, rport):
        sender, sport, receiver = remote, rport, local
        series.receive_only = True
        series.notes.append(f"the stack sent no data on this connection; showing {remote}'s data "
                            "and the window the stack advertised (-rwnd.png)")
    series.sender = sender

    isn: int | None = None
    recv_wscale = 0
    send_wscale: int | None = None
    for p in pkts:
        tcp = p.tcp
        assert tcp is not None
        if tcp.syn and p.src == sender and isn is None:
            isn = tcp.seq
        if tcp.syn and p.src == receiver and tcp.wscale is not None:
            recv_wscale = tcp.wscale
        if tcp.syn and p.src == sender and tcp.wscale is not None:
            send_wscale = tcp.wscale
    if isn is None:
        sent = data_from(sender, sport)
        isn = ((sent[0].tcp.seq if sent and sent[0].tcp else 0) - 1) & 0xFFFFFFFF
        series.notes.append("no SYN in the pcap: sequence numbers relative to the first segment")
    sender_syn_seen = any(p.tcp is not None and p.tcp.syn and p.src == receiver for p in pkts)

    def rel(seq: int) -> int:
        return (seq - isn) & 0xFFFFFFFF

    for p in pkts:
        tcp = p.tcp
        assert tcp is not None
        t = p.ts - offset - t0
        if p.src == sender and tcp.payload_len:
            start = rel(tcp.seq)
            series.segments.append((t, start, start + tcp.payload_len))
        if p.src == receiver and tcp.has_ack and not tcp.syn:
            ack = rel(tcp.ack)
            series.acks.append((t, float(ack)))
            scale = recv_wscale if sender_syn_seen and send_wscale is not None else 0
            series.window.append((t, float(ack + (tcp.window << scale))))
            for left, right in tcp.sack_blocks:
                series.sacks.append((t, rel(left), rel(right)))
            if receiver == local:
                series.rwnd.append((t, float(tcp.window << scale)))
    if sender == local:
        for e in rtx:
            series.retransmits.setdefault(str(e.get("reason")), []).append(
                (float(e["t"]) - t0, float(rel(int(e["seq"])))))
    return series


# --- drawing --------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotError("matplotlib is not installed: pip install -e '.[plot]' "
                        "(or apt install python3-matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _xy(points: list[Point], scale: float = 1.0) -> tuple[list[float], list[float]]:
    return [p[0] for p in points], [p[1] * scale for p in points]


Zoom = tuple[float, float]


def _zoom_tag(zoom: Zoom) -> str:
    """In the file names of a zoomed plot, so that it does not replace the whole one."""
    return f"-{zoom[0]:g}s-{zoom[1]:g}s".replace(".", "_")


def _in(points: list[Point], zoom: Zoom | None) -> list[Point]:
    return points if zoom is None else [p for p in points if zoom[0] <= p[0] <= zoom[1]]


def _finish(ax: Any, fig: Any, path: Path, zoom: Zoom | None) -> Path:
    """Legend beside the axes (never on the data), the zoom, and save."""
    if zoom is not None:
        ax.set_xlim(*zoom)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def draw(series: Series, out_dir: Path, stem: str, zoom: Zoom | None = None) -> list[Path]:
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    base = f"{stem}-{_safe(series.conn)}" + (_zoom_tag(zoom) if zoom else "")
    title = series.conn + (f" ({zoom[0]:g} to {zoom[1]:g} s)" if zoom else "")

    segments = [s for s in series.segments if zoom is None or zoom[0] <= s[0] <= zoom[1]]
    sacks = [s for s in series.sacks if zoom is None or zoom[0] <= s[0] <= zoom[1]]
    if segments or any(series.retransmits.values()):
        fig, ax = plt.subplots(figsize=(12, 6))
        if segments:
            ax.vlines([s[0] for s in segments], [s[1] for s in segments],
                      [s[2] for s in segments], colors="tab:blue", linewidth=2, zorder=2,
                      label=f"data sent by {series.sender}")
        if series.acks:
            ax.step(*_xy(series.acks), where="post", color="tab:green", linewidth=0.9,
                    zorder=1, label="cumulative ACK")
        if sacks:
            ax.vlines([s[0] for s in sacks], [s[1] for s in sacks], [s[2] for s in sacks],
                      colors="tab:purple", linewidth=3, alpha=0.8, zorder=2,
                      label=f"SACK blocks x{len(sacks)} (RFC 2018)")
        if series.window:
            ax.step(*_xy(series.window), where="post", color="tab:olive", linewidth=0.9,
                    linestyle="--", label="receive window: ACK + advertised window")
        for reason, points in sorted(series.retransmits.items()):
            marker, color = RETRANSMIT_STYLE.get(reason, ("x", "gray"))
            shown = _in(points, zoom)
            if shown:
                ax.scatter(*_xy(shown), marker=marker, color=color, s=45, zorder=3,
                           label=f"retransmit ({reason}) x{len(shown)}")
        if zoom is not None:
            # the stretch's own numbers; the window's edge only where it is near them (far
            # above, it would squeeze the data into a line; it then runs off the top)
            ys = [v for s in segments for v in (s[1], s[2])] + \
                [y for _, y in _in(series.acks, zoom)] + [v for s in sacks for v in (s[1], s[2])]
            ys += [y for pts in series.retransmits.values() for _, y in _in(pts, zoom)]
            if ys:
                low, high = min(ys), max(ys)
                span = max(high - low, 1.0)
                near = [y for _, y in _in(series.window, zoom) if y <= high + span]
                high = max([high, *near])
                pad = max(1.0, (high - low) * 0.05)
                ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("sequence number (bytes, relative to the ISN)")
        ax.set_title(f"time-sequence graph: {title}")
        ax.grid(True, alpha=0.3)
        files.append(_finish(ax, fig, out_dir / f"{base}-tseq.png", zoom))
        plt.close(fig)

    if series.receive_only and series.rwnd:
        fig, ax = plt.subplots(figsize=(12, 5))
        ax.step(*_xy(series.rwnd), where="post", color="tab:olive",
                label="window the stack advertised (bytes, scaled)")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("bytes")
        ax.set_ylim(bottom=0)
        ax.set_title(f"receive window: {title} (the stack only received here)")
        ax.grid(True, alpha=0.3)
        files.append(_finish(ax, fig, out_dir / f"{base}-rwnd.png", zoom))
        plt.close(fig)
    elif series.cwnd:
        fig, ax = plt.subplots(figsize=(12, 5))
        ax.step(*_xy(series.cwnd), where="post", color="tab:blue", label="cwnd")
        if series.ssthresh:
            ax.step(*_xy(series.ssthresh), where="post", color="tab:red", linestyle="--",
                    label="ssthresh")
        if series.prr_limit:
            ax.plot(*_xy(series.prr_limit), ".", color="tab:green", markersize=3,
                    label="PRR sending limit: pipe + sndcnt (RFC 6937)")
        if series.bdp:
            ax.step(*_xy(series.bdp), where="post", color="tab:purple", linestyle=":",
                    label="BBR's model: BtlBw x RTprop (the path's BDP)")
        if series.losses:
            ax.scatter(*_xy(series.losses), marker="v", color="black", zorder=3,
                       label=f"loss response x{len(series.losses)}")
        if zoom is not None:
            ys = [y for _, y in _in(series.cwnd, zoom)] + [y for _, y in _in(series.ssthresh, zoom)]
            if ys:
                ax.set_ylim(0, max(ys) * 1.1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("bytes")
        ax.set_title(f"congestion window: {title}")
        ax.grid(True, alpha=0.3)
        files.append(_finish(ax, fig, out_dir / f"{base}-cwnd.png", zoom))
        plt.close(fig)

    if series.rtt_sample or series.rto_waits:
        fig, ax = plt.subplots(figsize=(12, 5))
        ax.plot(*_xy(series.rtt_sample, 1000), ".", color="tab:gray", markersize=3,
                label="RTT sample")
        ax.step(*_xy(series.srtt, 1000), where="post", color="tab:blue", label="SRTT")
        ax.step(*_xy(series.rto, 1000), where="post", color="tab:red",
                label="RTO (doubles at each timeout)")
        if series.rto_waits:
            ax.scatter(*_xy(series.rto_waits, 1000), marker="^", color="darkred", zorder=3,
                       label="backed-off RTO that expired\n(time since the previous timeout)")
        if zoom is not None:
            ys = [y for _, y in _in(series.rto, zoom) + _in(series.rtt_sample, zoom)
                  + _in(series.rto_waits, zoom)]
            if ys:
                ax.set_ylim(top=max(ys) * 1000 * 1.3)
        values = [y for _, y in _in(series.rto, zoom) + _in(series.rtt_sample, zoom) if y > 0]
        samples = sorted(y for _, y in _in(series.rtt_sample, zoom) if y > 0)
        log = bool(values and samples) and max(values) / samples[len(samples) // 2] > 30
        if log:  # RTTs of a millisecond under an RTO of seconds: both visible
            ax.set_yscale("log")
            ax.set_ylim(bottom=min(values) * 1000 * 0.7)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("milliseconds" + (" (log scale)" if log else ""))
        ax.set_title(f"round-trip time and RTO: {title}")
        ax.grid(True, alpha=0.3)
        files.append(_finish(ax, fig, out_dir / f"{base}-rtt.png", zoom))
        plt.close(fig)
    return files


def draw_comparison(runs: list[tuple[str, Series]], out_dir: Path) -> Path | None:
    """One cwnd graph with a line per event log (lab 08: NewReno against CUBIC)."""
    runs = [(name, s) for name, s in runs if s.cwnd]
    if len(runs) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 5))
    for name, s in runs:
        ax.step(*_xy(s.cwnd), where="post", label=f"cwnd: {name}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("bytes")
    ax.set_title("congestion window compared")
    ax.grid(True, alpha=0.3)
    path = _finish(ax, fig, out_dir / ("compare-" + "-".join(_safe(n) for n, _ in runs)
                                       + "-cwnd.png"), None)
    plt.close(fig)
    return path


def make_plots(events_path: str | os.PathLike[str], pcap_path: str | os.PathLike[str] | None = None,
               conn: str | None = None, out_dir: str | os.PathLike[str] | None = None,
               zoom: Zoom | None = None, ladder: bool = False) -> PlotResult:
    """Read, compute and draw; raises PlotError with a message for the user."""
    events = load_events(events_path)
    chosen = pick_connection(events, conn)
    packets = None
    if pcap_path is not None:
        try:
            packets = read_pcap(pcap_path)
        except PcapError as exc:
            raise PlotError(str(exc)) from None
    elif ladder:
        raise PlotError("--ladder needs the capture: add --pcap FILE")
    series = collect(events, packets, chosen)
    folder = Path(out_dir) if out_dir is not None else Path(events_path).resolve().parent
    stem = Path(events_path).stem
    files = draw(series, folder, stem, zoom)
    base = folder / (f"{stem}-{_safe(chosen)}" + (_zoom_tag(zoom) if zoom else ""))
    if any(e.get("conn") == chosen and e.get("type") == "state" for e in events):
        from stack.observe.state_diagram import draw_state_diagram

        files.append(draw_state_diagram(events, chosen, Path(f"{base}-states.png")))
    if ladder and packets is not None:
        from stack.observe.ladder import draw_ladder, ladder_rows

        rows = ladder_rows(packets, chosen, events, zoom)
        series.notes.extend(rows.notes)
        if rows.rows:
            files.extend(draw_ladder(rows, Path(f"{base}-ladder.png"), Path(f"{base}-ladder.svg")))
    if not files:
        raise PlotError(f"nothing to plot for {chosen}: no cwnd, rtt or retransmit events"
                        + ("" if pcap_path else " (add --pcap for the time-sequence graph)"))
    return PlotResult(chosen, files, series)


def _zoom(text: str) -> Zoom:
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not T0:T1 in seconds: {text!r}") from None
    if hi <= lo:
        raise argparse.ArgumentTypeError(f"T1 must be after T0: {text!r}")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tcplab plot",
        description="PNG plots of one TCP connection from the stack's event log (and pcap).")
    p.add_argument("events", nargs="+", metavar="EVENTS",
                   help="event log(s) written by tcplab stack --events; with several, also "
                        "a cwnd comparison")
    p.add_argument("--pcap", action="append", metavar="FILE",
                   help="the matching capture (tcplab stack --pcap), for the time-sequence "
                        "graph; once per EVENTS file, in the same order")
    p.add_argument("--conn", action="append", metavar="ID",
                   help="connection as in the event log, e.g. 10.0.0.2:80-10.1.0.2:40000 "
                        "(a lab's check prints the one it judged; default: the one with the "
                        "most events); once per EVENTS file, in the same order")
    p.add_argument("--zoom", type=_zoom, metavar="T0:T1",
                   help="only the stretch from T0 to T1 seconds (the graphs' time axis)")
    p.add_argument("--ladder", action="store_true",
                   help="also the ladder (sequence) diagram, PNG and SVG (needs --pcap)")
    p.add_argument("--out", metavar="DIR", help="folder for the PNG files (default: beside EVENTS)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    pcaps: list[str | None] = list(args.pcap or [])
    if pcaps and len(pcaps) != len(args.events):
        print("tcplab plot: error: give --pcap once for every EVENTS file, or not at all",
              file=sys.stderr)
        return 2
    conns: list[str | None] = list(args.conn or [])
    if conns and len(conns) != len(args.events):
        print("tcplab plot: error: give --conn once for every EVENTS file, or not at all",
              file=sys.stderr)
        return 2
    if not pcaps:
        pcaps = [None] * len(args.events)
    if not conns:
        conns = [None] * len(args.events)
    runs: list[tuple[str, Series]] = []
    try:
        for events_path, pcap_path, conn in zip(args.events, pcaps, conns, strict=True):
            result = make_plots(events_path, pcap_path, conn, args.out, args.zoom, args.ladder)
            print(f"{events_path}: connection {result.conn}")
            for note in result.series.notes:
                print(f"  ({note})")
            for path in result.files:
                print(path)
            runs.append((Path(events_path).stem, result.series))
        if len(runs) > 1:
            folder = Path(args.out) if args.out else Path(args.events[0]).resolve().parent
            compared = draw_comparison(runs, folder)
            if compared is not None:
                print(compared)
    except PlotError as exc:
        print(f"tcplab plot: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
