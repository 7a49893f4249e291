"""The TCP state diagram of RFC 9293 (section 3.3.2, figure 5) with the path one
connection took, from the ``state`` events of the event log.

Every state and the standard transitions are drawn in gray, each labelled with its
event and action as in the RFC ("rcv SYN / snd SYN,ACK"); the states the connection
visited are filled and the transitions it took drawn in red and numbered in order.
A transition the figure does not have (a reset: ESTABLISHED -> CLOSED) is drawn dashed.
CLOSED appears twice, at the top (before) and at the bottom (after), as in most books.

:func:`taken_path` computes the path without matplotlib (the tests use it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (x, y) of every state; CLOSED* is the CLOSED a connection ends in
POSITIONS: dict[str, tuple[float, float]] = {
    "CLOSED": (2.0, 10.0),
    "LISTEN": (2.0, 8.5),
    "SYN-RECEIVED": (0.4, 7.0),
    "SYN-SENT": (3.6, 7.0),
    "ESTABLISHED": (2.0, 5.5),
    "FIN-WAIT-1": (0.4, 4.0),
    "CLOSE-WAIT": (3.6, 4.0),
    "FIN-WAIT-2": (0.4, 2.5),
    "CLOSING": (2.0, 2.5),
    "LAST-ACK": (3.6, 2.5),
    "TIME-WAIT": (1.2, 1.0),
    "CLOSED*": (2.8, -0.2),
}

# RFC 9293 figure 5: (from, to): "event / action"
TRANSITIONS: dict[tuple[str, str], str] = {
    ("CLOSED", "LISTEN"): "passive OPEN",
    ("CLOSED", "SYN-SENT"): "active OPEN / snd SYN",
    ("LISTEN", "SYN-RECEIVED"): "rcv SYN / snd SYN,ACK",
    ("LISTEN", "SYN-SENT"): "SEND / snd SYN",
    ("LISTEN", "CLOSED"): "CLOSE",
    ("SYN-SENT", "SYN-RECEIVED"): "rcv SYN / snd ACK",
    ("SYN-SENT", "ESTABLISHED"): "rcv SYN,ACK / snd ACK",
    ("SYN-SENT", "CLOSED"): "CLOSE",
    ("SYN-RECEIVED", "ESTABLISHED"): "rcv ACK of SYN",
    ("SYN-RECEIVED", "FIN-WAIT-1"): "CLOSE / snd FIN",
    ("ESTABLISHED", "FIN-WAIT-1"): "CLOSE / snd FIN",
    ("ESTABLISHED", "CLOSE-WAIT"): "rcv FIN / snd ACK",
    ("FIN-WAIT-1", "FIN-WAIT-2"): "rcv ACK of FIN",
    ("FIN-WAIT-1", "CLOSING"): "rcv FIN / snd ACK",
    ("FIN-WAIT-2", "TIME-WAIT"): "rcv FIN / snd ACK",
    ("CLOSING", "TIME-WAIT"): "rcv ACK of FIN",
    ("CLOSE-WAIT", "LAST-ACK"): "CLOSE / snd FIN",
    ("LAST-ACK", "CLOSED*"): "rcv ACK of FIN",
    ("TIME-WAIT", "CLOSED*"): "timeout = 2 MSL",
}


# where two labels would meet: CLOSED <-> LISTEN run side by side
LABEL_AT: dict[tuple[str, str], tuple[float, float]] = {
    ("CLOSED", "LISTEN"): (2.42, 9.25),
    ("LISTEN", "CLOSED"): (1.5, 9.25),
    ("SYN-SENT", "CLOSED"): (3.45, 9.2),
}


def _node(state: str, ended: bool) -> str:
    """Which box a state event means: CLOSED after the connection existed is CLOSED*."""
    return "CLOSED*" if state == "CLOSED" and ended else state


def taken_path(events: list[dict[str, Any]], conn: str) -> list[tuple[str, str]]:
    """The transitions of ``conn`` in order, as (from box, to box)."""
    path: list[tuple[str, str]] = []
    for e in events:
        if e.get("conn") != conn or e.get("type") != "state":
            continue
        a, b = str(e.get("from")), str(e.get("to"))
        path.append((_node(a, bool(path)), _node(b, True)))
    return path


def draw_state_diagram(events: list[dict[str, Any]], conn: str, png: Path) -> Path:
    from stack.observe.plot import _pyplot

    plt = _pyplot()
    path = taken_path(events, conn)
    visited = {s for edge in path for s in edge}
    order: dict[tuple[str, str], list[int]] = {}
    for i, edge in enumerate(path, 1):
        order.setdefault(edge, []).append(i)

    fig, ax = plt.subplots(figsize=(11, 10))
    ax.set_xlim(-0.9, 4.9)
    ax.set_ylim(-1.0, 10.8)
    ax.axis("off")
    ax.set_title("placeholder\n", fontsize=10)
    fig.tight_layout()  # the axes' final place first: the arcs' labels are placed in it

    def arrow(a: str, b: str, colour: str, width: float, style: str, label: str,
             rad: float) -> None:
        (x1, y1), (x2, y2) = POSITIONS[a], POSITIONS[b]
        ax.annotate("", xy=(x2, y2), xytext=(x1, y1),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": width,
                                "linestyle": style, "shrinkA": 16, "shrinkB": 16,
                                "connectionstyle": f"arc3,rad={rad}"})
        # the label on the arc's middle: arc3 bends in display coordinates, so compute
        # there (the middle of the quadratic Bezier is mid + rad/2 * (dy, -dx))
        (px1, py1), (px2, py2) = ax.transData.transform([(x1, y1), (x2, y2)])
        dx, dy = px2 - px1, py2 - py1
        mid = ((px1 + px2) / 2 + rad * dy / 2, (py1 + py2) / 2 - rad * dx / 2)
        mx, my = ax.transData.inverted().transform([mid])[0]
        mx, my = LABEL_AT.get((a, b), (mx, my))
        ax.text(mx, my, label, ha="center", va="center", fontsize=7.5, color=colour, zorder=5,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.4})

    curved = {("LISTEN", "CLOSED"): -0.5, ("SYN-SENT", "CLOSED"): 0.25,
              ("LISTEN", "SYN-SENT"): 0.15, ("SYN-RECEIVED", "FIN-WAIT-1"): -0.25,
              ("TIME-WAIT", "CLOSED*"): 0.1, ("LAST-ACK", "CLOSED*"): 0.0}
    for (a, b), label in TRANSITIONS.items():
        if (a, b) in order:
            continue
        arrow(a, b, "silver", 1.0, "solid", label, curved.get((a, b), 0.0))
    for (a, b), numbers in order.items():
        known = (a, b) in TRANSITIONS
        if a not in POSITIONS or b not in POSITIONS:
            continue
        label = (TRANSITIONS[(a, b)] if known else "reset / abort") + "  (" + \
            ", ".join(str(n) for n in numbers) + ")"
        arrow(a, b, "red", 2.6, "solid" if known else "dashed", label,
             curved.get((a, b), 0.0 if known else -0.3))
    for state, (x, y) in POSITIONS.items():
        name = "CLOSED" if state == "CLOSED*" else state
        on = state in visited
        ax.text(x, y, name, ha="center", va="center", fontsize=10,
                fontweight="bold" if on else "normal", color="white" if on else "black",
                bbox={"boxstyle": "round,pad=0.45", "facecolor": "firebrick" if on else "white",
                      "edgecolor": "firebrick" if on else "gray", "linewidth": 1.5})
    steps = " -> ".join([path[0][0].rstrip("*")] + [b.rstrip("*") for _, b in path]) \
        if path else "no state events for this connection"
    ax.set_title(f"TCP states (RFC 9293 figure 5): {conn}\n{steps}", fontsize=10)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
