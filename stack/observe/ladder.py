"""The ladder (sequence) diagram of one TCP connection, from the stack's capture.

Two vertical lines, the stack and its peer; one arrow per segment, in the order the
stack saw them (the capture is taken at the stack, so the arrows are evenly spaced in
that order, with the time beside each). On each arrow: the flags, the sequence and
acknowledgment numbers relative to each side's ISN (as Wireshark shows them), the
length and the advertised window (scaled, RFC 7323 section 2.3). Marked in colour:
retransmissions (a segment whose sequence space was sent before; named by the event
log's reason where it has one, e.g. ``tlp``, ``rto``), challenge ACKs (RFC 5961: the
stack's ACK right after an RST or SYN it did not accept), resets, SYNs and FINs.

Long runs are folded: consecutive segments from one side with the same flags and no
answer in between (a bulk transfer, 8192 guessed RSTs) become one row "x N", and past
``MAX_ROWS`` rows the middle of the conversation is left out (say so, and use
``tcplab plot --zoom``).

:func:`ladder_rows` computes the rows without matplotlib (tests use it);
:func:`draw_ladder` writes the PNG and the SVG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack.labkit.capture import Packet, parse_conn_id

MAX_ROWS = 90
HEAD_ROWS = 60  # rows kept at the start when there are too many; the rest at the end

COLOURS = {
    "syn": "tab:green",
    "fin": "tab:purple",
    "rst": "tab:red",
    "data": "tab:blue",
    "ack": "black",
    "retransmission": "orangered",
    "challenge": "darkorange",
}


@dataclass
class Row:
    """One arrow (or a folded run of alike arrows)."""

    t: float  # seconds since the first packet of the connection
    outgoing: bool  # from the stack to the peer
    flags: str  # tcpdump-style letters: S, F, R, P, . (ACK)
    seq: int  # relative to the sender's ISN
    ack: int | None  # relative to the receiver's ISN; None without the ACK flag
    length: int
    window: int  # scaled
    kind: str  # syn, fin, rst, data, ack (for the colour)
    marks: list[str] = field(default_factory=list)  # "retransmission (tlp)", "challenge ACK"
    count: int = 1  # > 1: a folded run
    last_seq: int = 0  # the run's last seq (folded rows)
    options: str = ""

    def label(self) -> str:
        parts = [f"[{self.flags}]", f"seq={self.seq}"]
        if self.count > 1 and self.last_seq != self.seq:
            parts[-1] = f"seq={self.seq}..{self.last_seq}"
        if self.ack is not None:
            parts.append(f"ack={self.ack}")
        parts.append(f"win={self.window}")
        if self.length:
            parts.append(f"len={self.length}")
        text = " ".join(parts)
        if self.options:
            text += f"  <{self.options}>"
        if self.count > 1:
            text = f"{self.count} x  " + text
        return text


@dataclass
class Ladder:
    conn: str
    local: str  # "10.0.0.2:80"
    remote: str
    rows: list[Row]
    omitted: tuple[int, int] | None = None  # (index in rows where the gap is, rows left out)
    notes: list[str] = field(default_factory=list)


def _flags(p: Packet) -> str:
    t = p.tcp
    assert t is not None
    text = ("S" if t.syn else "") + ("F" if t.fin else "") + ("R" if t.rst else "")
    text += "P" if t.flags & 0x08 else ""
    return text + ("." if t.has_ack else "")


def _options(p: Packet, their_isn: int) -> str:
    """The SYN options, and SACK blocks relative to the other side's ISN (they name
    bytes of its stream, RFC 2018 section 3)."""
    t = p.tcp
    assert t is not None
    parts = []
    if t.mss is not None:
        parts.append(f"mss {t.mss}")
    if t.wscale is not None:
        parts.append(f"wscale {t.wscale}")
    if t.sack_permitted:
        parts.append("sackOK")
    if t.sack_blocks:
        parts.append("sack " + " ".join(f"{(a - their_isn) & 0xFFFFFFFF}-"
                                        f"{(b - their_isn) & 0xFFFFFFFF}"
                                        for a, b in t.sack_blocks))
    return ", ".join(parts)


def ladder_rows(packets: list[Packet], conn: str, events: list[dict[str, Any]] | None = None,
                zoom: tuple[float, float] | None = None, max_rows: int = MAX_ROWS) -> Ladder:
    """The rows of the ladder of ``conn`` (its packets, both ways, in capture order).

    ``zoom`` (seconds since the connection's first packet) keeps only that stretch."""
    local, lport, remote, rport = parse_conn_id(conn)
    pkts = [p for p in packets if p.tcp is not None and (
        (p.src, p.tcp.sport, p.dst, p.tcp.dport) in ((local, lport, remote, rport),
                                                     (remote, rport, local, lport)))]
    ladder = Ladder(conn, f"{local}:{lport}", f"{remote}:{rport}", [])
    if not pkts:
        ladder.notes.append(f"the capture has no packets of {conn}")
        return ladder
    t0 = pkts[0].ts
    isn: dict[str, int] = {}
    wscale: dict[str, int] = {}
    syn_seen: dict[str, bool] = {}
    for p in pkts:
        tcp = p.tcp
        assert tcp is not None
        if tcp.syn and p.src not in isn:
            isn[p.src] = tcp.seq
            syn_seen[p.src] = True
            if tcp.wscale is not None:
                wscale[p.src] = tcp.wscale
    for side in (local, remote):
        if side not in isn:
            first = next((p.tcp.seq for p in pkts if p.src == side and p.tcp), 0)
            isn[side] = (first - 1) & 0xFFFFFFFF
            ladder.notes.append(f"no SYN from {side}: its numbers are relative to its first "
                                "segment")
    both_scale = local in wscale and remote in wscale

    # the event log's reasons for the stack's retransmissions, by sequence number
    reasons: dict[int, list[str]] = {}
    for e in events or []:
        if e.get("conn") == conn and e.get("type") == "retransmit" and "seq" in e:
            reasons.setdefault(int(e["seq"]), []).append(str(e.get("reason")))
    challenges = sum(1 for e in events or [] if e.get("conn") == conn
                     and e.get("type") == "challenge_ack")

    rows: list[Row] = []
    highest: dict[str, int] = {local: -1, remote: -1}  # highest relative seq end sent
    previous: Packet | None = None
    stack_syn_sent = False
    for p in pkts:
        tcp = p.tcp
        assert tcp is not None
        out = p.src == local
        other = remote if out else local
        rel_seq = (tcp.seq - isn[p.src]) & 0xFFFFFFFF
        rel_ack = (tcp.ack - isn[other]) & 0xFFFFFFFF if tcp.has_ack else None
        scale = wscale.get(p.src, 0) if both_scale and not tcp.syn else 0
        kind = ("rst" if tcp.rst else "syn" if tcp.syn else "fin" if tcp.fin
                else "data" if tcp.payload_len else "ack")
        row = Row(t=p.ts - t0, outgoing=out, flags=_flags(p), seq=rel_seq, ack=rel_ack,
                  length=tcp.payload_len, window=tcp.window << scale, kind=kind,
                  options=_options(p, isn[other]), last_seq=rel_seq)
        end = rel_seq + tcp.seg_len
        if tcp.seg_len and not tcp.rst and end <= highest[p.src] + 1 and rel_seq <= highest[p.src]:
            why = reasons.get(tcp.seq, [])
            row.marks.append("retransmission" + (f" ({why.pop(0)})" if why else ""))
        if tcp.seg_len and not tcp.rst:
            highest[p.src] = max(highest[p.src], end - 1)
        # RFC 5961 3.2 and 4.2: an RST (or a SYN) the stack did not accept gets an ACK
        # with the connection's current numbers, right away
        prev = previous.tcp if previous is not None and previous.src == remote else None
        if (out and kind == "ack" and challenges and prev is not None
                and (prev.rst or (prev.syn and not prev.has_ack and stack_syn_sent))):
            row.marks.append("challenge ACK (RFC 5961)")
        if out and tcp.syn:
            stack_syn_sent = True
        previous = p
        if zoom is None or zoom[0] <= row.t <= zoom[1]:
            rows.append(row)

    # fold runs of alike rows: same direction, flags and kind, no marks
    folded: list[Row] = []
    for row in rows:
        last = folded[-1] if folded else None
        if (last is not None and not row.marks and not last.marks
                and row.outgoing == last.outgoing and row.flags == last.flags
                and row.kind == last.kind and row.kind in ("rst", "data", "ack")
                and not row.options.startswith("mss")
                # a pure ACK that changes the window is news (a window update, lab 07)
                and (row.kind != "ack" or row.window == last.window)):
            last.count += 1
            last.last_seq = row.seq
            last.length = max(last.length, row.length)
            last.ack, last.window = row.ack, row.window
            continue
        folded.append(row)
    if len(folded) > max_rows:
        head = min(HEAD_ROWS, max_rows - 10)
        tail = max_rows - head
        ladder.omitted = (head, len(folded) - head - tail)
        folded = folded[:head] + folded[-tail:]
        ladder.notes.append(f"{ladder.omitted[1]} rows in the middle are left out; "
                            "tcplab plot --zoom T0:T1 shows a stretch in full")
    ladder.rows = folded
    return ladder


def draw_ladder(ladder: Ladder, png: Path, svg: Path | None = None) -> list[Path]:
    """Draw the ladder to ``png`` (and ``svg``, its text kept as text)."""
    from stack.observe.plot import _pyplot

    plt = _pyplot()
    import matplotlib

    n = len(ladder.rows) + (1 if ladder.omitted else 0)
    height = max(4.0, 1.6 + 0.34 * n)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig, ax = plt.subplots(figsize=(12, height))
        left, right = 0.0, 1.0
        ax.set_xlim(-0.3, 1.1)
        ax.set_ylim(n + 0.5, -1.6)
        ax.axis("off")
        for x, name, who in ((left, ladder.local, "the stack"), (right, ladder.remote, "peer")):
            ax.plot([x, x], [-0.5, n + 0.2], color="gray", linewidth=1.5)
            ax.text(x, -0.8, f"{name}\n({who})", ha="center", va="bottom", fontsize=10,
                    fontweight="bold")
        y = 0
        for i, row in enumerate(ladder.rows):
            if ladder.omitted and i == ladder.omitted[0]:
                ax.text(0.5, y + 0.4, f"... {ladder.omitted[1]} rows left out ...",
                        ha="center", va="center", fontsize=9, style="italic", color="gray")
                y += 1
            colour = COLOURS["retransmission"] if any(m.startswith("retrans") for m in row.marks) \
                else COLOURS["challenge"] if row.marks else COLOURS[row.kind]
            start, end = (left, right) if row.outgoing else (right, left)
            ax.annotate("", xy=(end, y + 0.75), xytext=(start, y),
                        arrowprops={"arrowstyle": "-|>", "color": colour,
                                    "linewidth": 2.2 if row.count > 1 else 1.3})
            label = row.label() + ("   " + "; ".join(row.marks) if row.marks else "")
            ax.text(0.5, y + 0.3, label, ha="center", va="bottom", fontsize=7.5, color=colour,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})
            ax.text(-0.03, y, f"{row.t:.4f} s", ha="right", va="center", fontsize=7.5,
                    color="dimgray")
            y += 1
        fig.suptitle(f"ladder diagram: {ladder.conn}\n(seq and ack relative to each side's "
                     "ISN, win scaled; time as the stack saw each segment)", fontsize=10)
        handles = [matplotlib.lines.Line2D([], [], color=c, linewidth=2, label=k)
                   for k, c in (("SYN", COLOURS["syn"]), ("data", COLOURS["data"]),
                                ("ACK", COLOURS["ack"]), ("FIN", COLOURS["fin"]),
                                ("RST", COLOURS["rst"]),
                                ("retransmission", COLOURS["retransmission"]),
                                ("challenge ACK", COLOURS["challenge"]))]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=7,
                  fontsize=8, frameon=False)
        # Keep the two-line title (about 0.7 inch) clear of the end-point names below it.
        fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.7 / height))
        fig.savefig(png, dpi=100)
        files = [png]
        if svg is not None:
            fig.savefig(svg)
            files.append(svg)
        plt.close(fig)
    return files
