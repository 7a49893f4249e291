"""Congestion control against the kernel: CUBIC selectable with --cc, and the
built-in impairment (--impair) driving both algorithms into loss recovery."""

from __future__ import annotations

from typing import Any

import pytest
from netns import STACK_ADDR, StackDaemon, Topology, run_peer_client, wait_until

pytestmark = pytest.mark.root

CHARGEN = 19
MB = 1_000_000


def _cwnd_events(stack: StackDaemon) -> list[dict[str, Any]]:
    return [e for e in stack.events() if e["type"] == "cwnd" and e["conn"].startswith(f"{STACK_ADDR}:{CHARGEN}-")]


@pytest.mark.stack_args("--cc", "cubic")
def test_cubic_download_is_byte_exact_and_reported(topology: Topology, stack: StackDaemon) -> None:
    result = run_peer_client(topology, "recv", STACK_ADDR, CHARGEN, 20 * MB, timeout=120)
    assert result["matches_pattern"] and result["bytes"] == 20 * MB
    assert "cc cubic" in stack.stderr
    events = wait_until(lambda: _cwnd_events(stack) or None, 10, what="cwnd events")
    assert events[0]["reason"] == "init"


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_loss_recovery_under_impairment(topology: Topology, cc: str, tmp_path: Any) -> None:
    daemon = StackDaemon.start(topology, ["--cc", cc, "--impair", "loss=3%,seed=7", "--min-rto", "0.2"],
                               tmp_path)
    try:
        result = run_peer_client(topology, "recv", STACK_ADDR, CHARGEN, 2 * MB, timeout=180)
        assert result["matches_pattern"] and result["bytes"] == 2 * MB

        def recovered() -> list[dict[str, Any]] | None:
            reasons = {e["reason"] for e in _cwnd_events(daemon)}
            return _cwnd_events(daemon) if {"fast_retransmit", "recovery_exit"} <= reasons else None

        events = wait_until(recovered, 10, what="fast retransmit and recovery in the event log")
        # Multiplicative decrease: NewReno halves (RFC 5681 eq. 4), CUBIC keeps 0.7 (RFC 9438 4.6).
        drops = [e for e in events if e["reason"] == "fast_retransmit"]
        assert all(e["ssthresh"] >= 2 * 1448 for e in drops)
        retrans = [e for e in daemon.events() if e["type"] == "retransmit"]
        assert retrans and all(e["reason"] in {"rack", "fast", "sack", "rto", "partial_ack", "probe",
                                               "tlp", "pmtu"} for e in retrans)
        # With SACK the losses are found by RACK (RFC 8985) and recovery is paced by PRR.
        assert any(e["reason"] == "rack" for e in retrans)
        assert any(e["type"] == "prr" for e in daemon.events())
    finally:
        daemon.stop()
