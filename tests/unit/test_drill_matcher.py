"""Matching expected against actual segments, and the relaxation rules (stack/drill/matcher.py)."""

from __future__ import annotations

from stack.drill.matcher import RELAXATIONS, compare
from stack.drill.model import PacketEvent, TcpOpt, TcpPacket
from stack.drill.packets import Decoded, flags_value
from stack.drill.parser import parse_event


def expected(text: str) -> TcpPacket:
    body = parse_event("+0 > " + text, 1).body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, TcpPacket)
    return body.packet


def actual(flags: str, seq: int, ack: int, win: int, length: int = 0, opts: str = "") -> Decoded:
    options = expected(f"S 0:0(0) <{opts}>").options if opts else []
    return Decoded(0.0, flags_value(flags), seq, ack, win, length, list(options or []))


SYNACK = "S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,eol,eol>"


def test_identical_segments_match_without_relaxing() -> None:
    used: set[str] = set()
    assert compare(expected(SYNACK), actual("S.", 0, 1, 65535, opts="mss 1460,sackOK,eol,eol"), used=used) == []
    assert used == set()


def test_option_layout_is_relaxed_but_not_in_strict_mode() -> None:
    act = actual("S.", 0, 1, 65535, opts="mss 1460,nop,nop,sackOK")
    used: set[str] = set()
    assert compare(expected(SYNACK), act, used=used) == []
    assert used == {"option-layout"}
    diffs = compare(expected(SYNACK), act, strict=True)
    assert diffs and diffs[0].startswith("options layout")


def test_a_missing_or_extra_option_is_never_relaxed() -> None:
    diffs = compare(expected(SYNACK), actual("S.", 0, 1, 65535, opts="mss 1460"))
    assert diffs == ["option sackOK: expected, but missing"]
    diffs = compare(expected(SYNACK), actual("S.", 0, 1, 65535, opts="mss 1460,sackOK,TS val 1 ecr 0"))
    assert diffs == ["option TS val 1 ecr 0: not expected"]


def test_mss_value_is_exact() -> None:
    diffs = compare(expected(SYNACK), actual("S.", 0, 1, 65535, opts="mss 1400,sackOK"))
    assert diffs == ["option mss: expected mss 1460, actual mss 1400"]


def test_wscale_value_any_valid_shift() -> None:
    exp = expected("S 0:0(0) win 65535 <mss 1460,nop,wscale 6>")
    used: set[str] = set()
    assert compare(exp, actual("S", 0, 0, 65535, opts="mss 1460,nop,wscale 1"), used=used) == []
    assert "wscale-value" in used
    assert compare(exp, actual("S", 0, 0, 65535, opts="mss 1460,nop,wscale 1"), strict=True)


def test_window_zero_versus_nonzero_is_kept() -> None:
    used: set[str] = set()
    assert compare(expected(". 1:1(0) ack 1 win 65535"), actual(".", 1, 1, 1027), used=used) == []
    assert used == {"window-value"}
    assert compare(expected(". 1:1(0) ack 1 win 0"), actual(".", 1, 1, 1027)) == [
        "win: expected 0, actual 1027"]
    assert compare(expected(". 1:1(0) ack 1 win 65535"), actual(".", 1, 1, 0))


def test_flags_seq_ack_length_are_exact() -> None:
    exp = expected("F. 1:1(0) ack 2 win 65535")
    diffs = compare(exp, actual(".", 2, 2, 65535))
    assert diffs == ["flags: expected F., actual .", "seq: expected 1, actual 2"]
    assert compare(expected(". 1:1(0) ack 5 win 1"), actual(".", 1, 4, 1)) == ["ack: expected 5, actual 4"]
    assert compare(expected("P. 1:11(10) ack 1 win 1"), actual("P.", 1, 1, 1, length=9)) == [
        "length: expected 10, actual 9"]


def test_psh_relaxed_on_data_only() -> None:
    used: set[str] = set()
    assert compare(expected("P. 1:11(10) ack 1 win 1"), actual(".", 1, 1, 1, length=10), used=used) == []
    assert used == {"psh-flag"}
    assert compare(expected("P. 1:1(0) ack 1 win 1"), actual(".", 1, 1, 1))


def test_sack_blocks_keep_their_order() -> None:
    exp = expected(". 1:1(0) ack 100 win 1 <nop,nop,sack 400:500 200:300>")
    assert compare(exp, actual(".", 1, 100, 1, opts="nop,nop,sack 400:500 200:300")) == []
    diffs = compare(exp, actual(".", 1, 100, 1, opts="nop,nop,sack 200:300 400:500"))
    assert diffs and diffs[0].startswith("option sack")


def test_timestamps_ecr_exact_val_relaxed() -> None:
    exp = expected(". 1:1(0) ack 1 win 1 <nop,nop,TS val 100 ecr 7>")
    used: set[str] = set()
    assert compare(exp, actual(".", 1, 1, 1, opts="nop,nop,TS val 160 ecr 7"), used=used) == []
    assert used == {"ts-value"}
    assert compare(exp, actual(".", 1, 1, 1, opts="nop,nop,TS val 100 ecr 8")) == [
        "option TS ecr: expected 7, actual 8"]


def test_any_options() -> None:
    assert compare(expected("S 0:0(0) win 1 <...>"), actual("S", 0, 0, 1, opts="mss 5,sackOK")) == []


def test_every_rule_names_an_rfc() -> None:
    for rule in RELAXATIONS.values():
        assert "RFC" in rule.rfc, rule.name
    assert str(TcpOpt("sack", [(1, 2)])) == "sack 1:2"
