"""`tcplab bench --loss` (stack/tools/benchloss.py): the parts that need no namespaces:
argument parsing, medians with failed runs, the table."""

from __future__ import annotations

import argparse

import pytest

from stack.tools import benchloss
from stack.tools.benchloss import (
    Row,
    Sample,
    build_parser,
    format_table,
    parse_directions,
    parse_losses,
    parse_sizes,
    stack_cc_for,
    summarize,
)


def test_losses_and_sizes() -> None:
    assert parse_losses("1,5,20") == [1.0, 5.0, 20.0]
    assert parse_losses("0.5") == [0.5]
    assert parse_sizes("1M,10M,500K,1234") == [1_000_000, 10_000_000, 500_000, 1234]
    for bad in ("x", "100", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_losses(bad)
    for bad in ("0", "1G", "M", "200M"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_sizes(bad)


def test_directions_and_kernel_cc() -> None:
    assert parse_directions("sends") == ["sends"]
    assert parse_directions("sends,receives") == ["sends", "receives"]
    for bad in ("", "send", "sends,both"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_directions(bad)
    args = build_parser().parse_args(["--loss", "20"])
    assert args.directions == ["sends", "receives"] and args.kernel_cc is None
    args = build_parser().parse_args(["--loss", "20", "--directions", "sends", "--kernel-cc", "cubic"])
    assert args.directions == ["sends"] and args.kernel_cc == "cubic"


def test_stack_cc_follows_the_kernel_by_default() -> None:
    """The yardstick runs the same kind of controller: the default `--cc same` takes
    the kernel's algorithm when the stack has it (reno is newreno), else newreno."""
    assert build_parser().parse_args(["--loss", "20"]).cc == "same"
    assert stack_cc_for("same", "bbr") == "bbr"
    assert stack_cc_for("same", "cubic") == "cubic"
    assert stack_cc_for("same", "reno") == "newreno"
    assert stack_cc_for("same", "vegas") == "newreno"
    assert stack_cc_for("cubic", "bbr") == "cubic"


def test_failed_runs_count_at_the_timeout() -> None:
    row = Row(20.0, 1_000_000, "stack sends",
              stack=[Sample(2.0, 10, 0.5), Sample(None, None, None, error="timeout"),
                     Sample(4.0, 12, 1.5)],
              kernel=[Sample(1.0, 9, 0.2), Sample(2.0, 11, 0.3), Sample(3.0, 10, 0.1)])
    s = summarize(row, timeout=120.0)
    assert s["stack_s"] == 4.0 and s["kernel_s"] == 2.0 and s["ratio"] == 2.0
    assert s["stack_failed"] == 1 and s["kernel_failed"] == 0
    assert s["stack_max_stall"] == 120.0  # the failed run: no progress seen to the end
    assert s["stack_retrans"] == 11 and s["kernel_retrans"] == 10
    table = format_table([s])
    assert "20%" in table and "1 MB" in table and "2.00" in table and "1/0" in table


def test_body_is_the_stacks_bytes_body() -> None:
    """Both servers send the same bytes: the stack's /bytes/N body."""
    from stack.services import bytes_body

    assert benchloss.body(100_000) == b"".join(bytes_body(100_000))
