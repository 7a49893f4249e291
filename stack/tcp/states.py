"""TCP connection states and the transitions between them (RFC 9293 section 3.3.2).

Owns: the `State` enum, the named sets of states the rest of the TCP code tests
against (synchronized, may send, may receive, ...), and `TRANSITIONS`, the table of
every (from, to) pair a connection may take. `Connection.set_state` checks each
change against the table and raises `IllegalTransition` for any other pair, so a
new code path cannot invent an edge the RFC does not have.

The table is RFC 9293's figure 5 ("TCP Connection State Diagram"), plus the edges
the text adds beside the figure:

* simultaneous open, SYN-SENT -> SYN-RECEIVED (section 3.5, figure 8);
* simultaneous close, FIN-WAIT-1 -> CLOSING -> TIME-WAIT (section 3.6, figure 13);
* FIN-WAIT-1 -> TIME-WAIT when one segment carries the peer's FIN and the ACK of
  ours (section 3.10.7.4, "eighth");
* SYN-RECEIVED -> CLOSE-WAIT: the FIN processing of section 3.10.7.4 lists it;
* "enter CLOSED" from every other state: ABORT (3.10.5), a reset (3.10.7.4
  "second"), a user timeout or too many retransmissions (3.8.3, RFC 1122 4.2.3.5),
  CLOSE in SYN-SENT (3.10.4), the TIME-WAIT timeout (3.10.8).

LISTEN is a listener's state (stack/host.py `Listener`); a `Connection` made for a
SYN starts there and leaves it at once (3.10.7.2).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """RFC 9293 section 3.3.2 connection states."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


# States in which the connection is synchronized (RFC 9293 section 3.5.2).
SYNCHRONIZED = frozenset(
    {
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)
# States in which we may still send data (RFC 9293 section 3.10.2).
CAN_SEND = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
# States in which the sender sends data or a FIN (and a loss probe may be sent).
CAN_OUTPUT = CAN_SEND | {State.FIN_WAIT_1, State.LAST_ACK, State.CLOSING}
# States in which arriving data is delivered (RFC 9293 3.10.7.4, "seventh").
CAN_RECEIVE = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
# RFC 9293 3.10.5: the states in which ABORT sends a reset.
RESET_ON_ABORT = frozenset(
    {State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT}
)

_S = State
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        # Figure 5, opening.
        (_S.CLOSED, _S.LISTEN),  # passive OPEN
        (_S.CLOSED, _S.SYN_SENT),  # active OPEN, snd SYN
        (_S.LISTEN, _S.SYN_RECEIVED),  # rcv SYN, snd SYN,ACK
        (_S.LISTEN, _S.SYN_SENT),  # SEND, snd SYN
        (_S.SYN_SENT, _S.SYN_RECEIVED),  # rcv SYN (simultaneous open, figure 8)
        (_S.SYN_SENT, _S.ESTABLISHED),  # rcv SYN,ACK, snd ACK
        (_S.SYN_RECEIVED, _S.LISTEN),  # rcv RST (passive)
        (_S.SYN_RECEIVED, _S.ESTABLISHED),  # rcv ACK of SYN
        # Figure 5, closing.
        (_S.SYN_RECEIVED, _S.FIN_WAIT_1),  # CLOSE, snd FIN
        (_S.ESTABLISHED, _S.FIN_WAIT_1),  # CLOSE, snd FIN
        (_S.ESTABLISHED, _S.CLOSE_WAIT),  # rcv FIN, snd ACK
        (_S.FIN_WAIT_1, _S.FIN_WAIT_2),  # rcv ACK of FIN
        (_S.FIN_WAIT_1, _S.CLOSING),  # rcv FIN, snd ACK (simultaneous close)
        (_S.FIN_WAIT_2, _S.TIME_WAIT),  # rcv FIN, snd ACK
        (_S.CLOSING, _S.TIME_WAIT),  # rcv ACK of FIN
        (_S.CLOSE_WAIT, _S.LAST_ACK),  # CLOSE, snd FIN
        (_S.LAST_ACK, _S.CLOSED),  # rcv ACK of FIN
        (_S.TIME_WAIT, _S.CLOSED),  # timeout = 2 MSL
        # Section 3.10.7.4 beside the figure.
        (_S.FIN_WAIT_1, _S.TIME_WAIT),  # FIN and the ACK of our FIN in one segment
        (_S.SYN_RECEIVED, _S.CLOSE_WAIT),  # "eighth": SYN-RECEIVED, ESTABLISHED -> CLOSE-WAIT
    }
    # ABORT, reset, timeout: "delete the TCB, enter the CLOSED state".
    | {(s, _S.CLOSED) for s in State if s != _S.CLOSED}
)


class IllegalTransition(RuntimeError):
    """A state change that is not in `TRANSITIONS`: a bug in the TCP code."""


def check_transition(old: State, new: State) -> None:
    """Raise `IllegalTransition` unless ``old -> new`` is an edge of the table."""
    if (old, new) not in TRANSITIONS:
        raise IllegalTransition(f"TCP state change {old} -> {new} is not in RFC 9293's diagram")
