"""Lab 11: the options of a Hop-by-Hop or Destination Options header (RFC 8200 section 4.2).

The stack calls your function for every such header it meets while it walks a packet's
extension headers (stack/wire/ipv6.py, walk_headers). Test it step by step, then run a
stack with it:

    python3 -m stack.labkit test 11                     # the step-by-step tests
    python3 -m stack.labkit test 11 --reference         # ... on the stack's own code

The options are TLVs: an 8-bit Option Type, an 8-bit Opt Data Len (octets of data, not
counting these two), then the data. Two are special: Pad1 (type 0) is one single octet
with no length and no data, PadN (type 1) is an ordinary TLV whose data is ignored.
This stack knows no other option. What to do with an option you do not know is written
in the two high-order bits of its type:

    00  skip over it, go on with the next option
    01  discard the packet (silently)
    10  discard the packet and send ICMPv6 Parameter Problem, code 2, pointing at the
        option's type octet -- even when the packet went to a multicast address
    11  the same, but only when the packet did not go to a multicast address (else
        discard silently)

(The third bit says whether the option's data may change on the way; it does not
matter here.) The first option that discards the packet decides; nothing after it
counts.

An option that does not fit in the header (its length octet or its data would lie at or
beyond ``end``) is an erroneous header field: Parameter Problem code 0, pointing at the
octet that cannot be right -- its length octet, or its type when there is no room for a
length at all.

Like Linux, the stack bounds the work a packet can make it do (RFC 8504 section 5.3):
more than MAX_OPTIONS_PER_HEADER (8) options other than padding, or more than
MAX_PADDING_RUN (7) octets of padding in a row (Pad1 and PadN together), and the packet
is discarded silently.

How to say it:

* return None: the packet goes on;
* ``raise WireError(reason, detail)``: discard it silently (``reason`` is a short word
  for the event log's ``drop`` event, e.g. "ipv6_unknown_option_discard");
* ``raise ParameterProblem(reason, code, pointer, to_multicast)``: discard it and send a
  Parameter Problem (``to_multicast=True`` only for the bits 10, which may answer a
  multicast packet; the stack sends it, rate-limited, RFC 4443 section 2.4).

``view`` is the whole packet from its IPv6 header on; the options are ``view[i:end]``
(``i`` is just after the header's Next Header and Hdr Ext Len octets). Offsets in
``view`` are offsets from the IPv6 header, so a pointer is simply the index of the
octet in ``view``.
"""

from __future__ import annotations

from stack.wire.errors import WireError
from stack.wire.ipv6 import (
    MAX_OPTIONS_PER_HEADER,
    PP_BAD_HEADER_FIELD,
    PP_UNKNOWN_OPTION,
    ParameterProblem,
)

MAX_PADDING_RUN = 7
PAD1 = 0
PADN = 1

__all__ = ["MAX_OPTIONS_PER_HEADER", "PP_BAD_HEADER_FIELD", "PP_UNKNOWN_OPTION",
           "ParameterProblem", "WireError", "process_options"]


def process_options(view: memoryview, i: int, end: int, to_multicast: bool) -> None:
    """Judge the options in ``view[i:end]``; see above."""
    raise NotImplementedError
