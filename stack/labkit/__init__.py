"""Helpers for the numbered labs in ``labs/`` (not used by the stack itself).

* ``capture``  -- a small pcap reader and IPv4/TCP/UDP/ICMP decoder (stdlib only), used
  by the labs' ``check`` scripts and by ``tcplab plot``;
* ``checks``   -- what every ``labs/NN-*/check`` shares: finding the pcap and event log,
  printing PASS/FAIL lines;
* ``steps``    -- the step-by-step test runner behind ``python -m stack.labkit test NN``;
* ``suites``   -- the step tests of every swap-in slot;
* ``swap``     -- loading a learner's file in place of a stack component, for the tests
  and for a running daemon (``python -m stack.labkit stack --swap SLOT=PATH ...`` or
  ``TCPLAB_SWAP=SLOT=PATH`` read by :func:`stack.labkit.swap.install_from_env`);
* ``reference``-- reference solutions of the two slots that are not part of the stack
  (the lab 01 TUN reader and the lab 09 C echo client and server).

Nothing here needs more than the standard library.
"""
