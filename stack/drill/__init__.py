"""`tcplab drill`: a runner for packetdrill scripts (.pkt) against the sans-IO stack.

The pieces, each in its own module:

- `model`: what a script is once parsed (events with their timing, packets, calls);
- `parser`: text -> model (the `#ifdef` preprocessor, `--option=value` lines, events);
- `packets`: the wire side: build the script's inbound IPv4 or IPv6 packets (and
  ICMP/ICMPv6 errors), decode what the stack sends, print both the way packetdrill does;
- `matcher`: compare an expected outbound packet with the actual one, with the
  documented relaxation rules (`matcher.RELAXATIONS`);
- `adapter`: the only module that touches the stack (Host + the sockets layer) on a
  virtual clock;
- `syscalls`: the script's system calls on top of the adapter;
- `runner`: runs one script, or many, and reports passed/failed/skipped.

What is not supported is listed in docs/drill.md ("Not supported"); a script using any of it
is reported "skipped: not supported: <construct>".
"""
