"""The shim protocol against the shared vectors (docs/shim-vectors.json), which the C
shim's tests (shim/tests/test_protocol.c) read too."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.ipc import protocol as p

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "shim-vectors.json").read_text()
)


def _addr(obj: dict[str, Any] | None) -> p.Addr | None:
    if obj is None:
        return None
    return p.Addr(obj["family"], obj["ip"], obj["port"], obj.get("flowinfo", 0),
                  obj.get("scope_id", 0))


def _request(vec: dict[str, Any]) -> p.Request:
    f = vec["fields"]
    return p.Request(
        p.Op[vec["op"]], vec["seq"], kind=f.get("kind", 0), family=f.get("family", p.AF_INET),
        addr=_addr(f.get("addr")),
        backlog=f.get("backlog", 0), how=f.get("how", 0), level=f.get("level", 0),
        name=f.get("name", 0), optlen=f.get("optlen", 0),
        value=bytes.fromhex(f.get("value", "")), msg_flags=f.get("msg_flags", 0),
        payload=bytes.fromhex(f.get("payload", "")), src=_addr(f.get("src")) or p.NO_ADDR,
    )  # fmt: skip


def _reply(vec: dict[str, Any]) -> p.Reply:
    f = vec["fields"]
    return p.Reply(
        p.Op[vec["op"]], vec["seq"], vec["status"], vec["flags"], addr=_addr(f.get("addr")),
        local=_addr(f.get("local")), peer=_addr(f.get("peer")),
        value=bytes.fromhex(f.get("value", "")), sent=f.get("sent", 0),
        options=[(o["level"], o["name"], bytes.fromhex(o["value"])) for o in f.get("options", [])],
        data=bytes.fromhex(f.get("data", "")), src=_addr(f.get("src")), dst=_addr(f.get("dst")),
        ifindex=f.get("ifindex", 0), want=f.get("want", 0),
    )  # fmt: skip


MESSAGES = VECTORS["messages"]
INVALID = VECTORS["invalid"]


def test_constants_match_vectors() -> None:
    assert VECTORS["version"] == p.VERSION
    assert VECTORS["magic"] == p.MAGIC
    assert VECTORS["header_size"] == p.HEADER_SIZE
    assert VECTORS["max_message"] == p.MAX_MESSAGE
    assert VECTORS["ops"] == {op.name: int(op) for op in p.Op}
    assert len(MESSAGES) >= 30 and len(INVALID) >= 30


@pytest.mark.parametrize("vec", MESSAGES, ids=[v["name"] for v in MESSAGES])
def test_encode_matches_vector(vec: dict[str, Any]) -> None:
    if vec["direction"] == "request":
        assert p.encode_request(_request(vec)).hex() == vec["hex"]
    else:
        assert p.encode_reply(_reply(vec)).hex() == vec["hex"]


@pytest.mark.parametrize("vec", MESSAGES, ids=[v["name"] for v in MESSAGES])
def test_decode_matches_vector(vec: dict[str, Any]) -> None:
    raw = bytes.fromhex(vec["hex"])
    if vec["direction"] == "request":
        assert p.decode_request(raw, vec["fds"]) == _request(vec)
    else:
        assert p.decode_reply(raw, vec["fds"]) == _reply(vec)


@pytest.mark.parametrize("vec", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_rejected(vec: dict[str, Any]) -> None:
    raw = bytes.fromhex(vec["hex"])
    decode = p.decode_request if vec["direction"] == "request" else p.decode_reply
    with pytest.raises(p.ProtocolError) as info:
        decode(raw, vec["fds"])
    assert info.value.reason == vec["error"]


def test_every_op_has_vectors_both_ways() -> None:
    requests = {v["op"] for v in MESSAGES if v["direction"] == "request"}
    replies = {v["op"] for v in MESSAGES if v["direction"] == "reply"}
    assert requests == {op.name for op in p.Op} - {op.name for op in p.NOT_A_REQUEST}
    # replies with a body of their own, plus the error form
    assert {"SOCKET", "ACCEPT", "CONNECT", "GETSOCKNAME", "GETSOCKOPT", "SENDTO", "DETACH",
            "LIST"} <= replies


def test_largest_sendto_fits_and_one_more_byte_does_not() -> None:
    req = p.Request(p.Op.SENDTO, 1, addr=p.Addr(2, "10.0.0.1", 9), payload=b"x" * p.MAX_PAYLOAD)
    raw = p.encode_request(req)
    assert len(raw) == p.MAX_MESSAGE
    assert p.decode_request(raw, 1).payload == req.payload
    with pytest.raises(ValueError):
        p.encode_request(p.Request(p.Op.SENDTO, 1, addr=p.Addr(), payload=b"x" * (p.MAX_PAYLOAD + 1)))
    with pytest.raises(p.ProtocolError):
        p.decode_request(raw + b"x", 1)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 3))
def test_garbage_only_ever_raises_protocol_error(data: bytes, nfds: int) -> None:
    for decode in (p.decode_request, p.decode_reply):
        with contextlib.suppress(p.ProtocolError):
            decode(data, nfds)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MESSAGES), st.integers(0, 200), st.integers(0, 255))
def test_mutated_vectors_decode_or_raise_protocol_error(vec: dict[str, Any], pos: int,
                                                        byte: int) -> None:
    raw = bytearray.fromhex(vec["hex"])
    raw[pos % len(raw)] = byte
    decode = p.decode_request if vec["direction"] == "request" else p.decode_reply
    for data in (bytes(raw), bytes(raw[: pos % len(raw)])):
        with contextlib.suppress(p.ProtocolError):
            decode(data, vec["fds"])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 65535), st.ip_addresses(v=4),
       st.binary(max_size=300))
def test_roundtrip(seq: int, port: int, ip: Any, payload: bytes) -> None:
    addr = p.Addr(p.AF_INET, str(ip), port)
    req = p.Request(p.Op.SENDTO, seq, addr=addr, msg_flags=0x4000, payload=payload)
    assert p.decode_request(p.encode_request(req), 1) == req
    rep = p.Reply(p.Op.ACCEPT, seq, local=addr, peer=p.Addr(p.AF_INET, "10.0.0.2", 1))
    assert p.decode_reply(p.encode_reply(rep), 1) == rep


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 65535), st.ip_addresses(v=6),
       st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_roundtrip_ipv6(seq: int, port: int, ip: Any, flowinfo: int, scope_id: int) -> None:
    text = socket.inet_ntop(socket.AF_INET6, ip.packed)  # the daemon's form (inet_ntop)
    addr = p.Addr(p.AF_INET6, text, port, flowinfo, scope_id)
    raw = addr.pack()
    assert len(raw) == p.ADDR_SIZE == 28
    assert raw[8:24] == ip.packed  # the address bytes as sin6_addr has them
    rep = p.Reply(p.Op.ACCEPT, seq, local=addr, peer=p.Addr(p.AF_INET, "10.0.0.2", 1))
    assert p.decode_reply(p.encode_reply(rep), 1) == rep
    req = p.Request(p.Op.CONNECT, seq, addr=addr)
    assert p.decode_request(p.encode_request(req), 1) == req


def test_addr_of_picks_the_family() -> None:
    assert p.Addr.of("10.0.0.2", 80) == p.Addr(p.AF_INET, "10.0.0.2", 80)
    assert p.Addr.of("fd00:0:0:1::2", 80) == p.Addr(p.AF_INET6, "fd00:0:0:1::2", 80)
