"""`tcplab stack` IPv6 options: defaults (dual-stack), 'none', and one-line errors."""

from __future__ import annotations

import pytest

from stack.cli import build_parser, main
from stack.daemon import DaemonOptions


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["stack", *argv])


def test_dual_stack_by_default() -> None:
    args = parse()
    assert (args.address6, args.kernel_address6) == ("fd00:0:0:1::2", "fd00:0:0:1::1/64")
    opts = DaemonOptions()
    assert (opts.address6, opts.kernel_address6) == ("fd00:0:0:1::2", "fd00:0:0:1::1/64")


def test_options_are_normalised_and_none_turns_ipv6_off() -> None:
    args = parse("--address6", "FD00:0000:0:1::0002", "--kernel-address6", "fd00:0:0:1:0::1/64")
    assert (args.address6, args.kernel_address6) == ("fd00:0:0:1::2", "fd00:0:0:1::1/64")
    args = parse("--address6", "none", "--kernel-address6", "none")
    assert args.address6 is None and args.kernel_address6 is None


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--address6", "10.0.0.2", "not an IPv6 address"),
    ("--address6", "ff02::1", "multicast"),
    ("--address6", "::", "unspecified"),
    ("--address6", "::1", "loopback"),
    ("--address6", "fe80::2", "link-local"),
    ("--address6", "::ffff:10.0.0.2", "v4-mapped"),
    ("--kernel-address6", "fd00:0:0:1::1", "prefix length"),
    ("--kernel-address6", "fd00:0:0:1::1/129", "prefix length"),
    ("--kernel-address6", "fd00:0:0:1::1/x", "prefix length"),
])
def test_bad_values_give_one_line_and_status_2(option: str, value: str, message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(option, value)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_stack_address_equal_to_the_kernel_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stack", "--address6", "fd00:0:0:1::1"]) == 2
    assert "--address6 equals the kernel's address" in capsys.readouterr().err
