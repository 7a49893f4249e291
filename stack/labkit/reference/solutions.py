"""A learner's files, written by the reference: what a learner who solved every lab has.

``write_solutions(dest, labs)`` writes, for every swap-in slot, the file(s) the lab asks
for under ``dest/labs/NN-topic/`` (the same names as the skeletons in ``labs``), filled in
with the stack's own reference. The container tests' scripted learner follows the
READMEs with these in place of the learner's files (it never touches ``labs/``), and a
teacher can use them to try a lab's steps before the class does.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from stack.labkit.reference.echo_c import write_sources
from stack.labkit.swap import SLOTS, Slot, reference_module

# Lab 08 asks for an algorithm of your own; the reference's is NewReno under another name,
# so that its curves can be told apart from the lab's NewReno run in a plot.
CONGESTION = '''"""Lab 08, solved by the reference: NewReno under the name "mine"."""

from stack.tcp.congestion.newreno import NewReno


class Mine(NewReno):
    name = "mine"


ALGORITHM = Mine
'''


# Lab 11's slot is one function of stack/wire/ipv6.py: the reference's own text, with the
# names it uses from that module imported (the whole module would bring its own
# ParameterProblem class, which the stack would not recognise).
OPTIONS_HEAD = '''"""Lab 11, solved by the reference: stack/wire/ipv6.py's process_options."""

from __future__ import annotations

from stack.wire.errors import WireError
from stack.wire.ipv6 import (
    MAX_OPTIONS_PER_HEADER,
    MAX_PADDING_RUN,
    PP_BAD_HEADER_FIELD,
    PP_UNKNOWN_OPTION,
    ParameterProblem,
)

_OPT_PAD1 = 0
_OPT_PADN = 1


'''


def solution_text(slot: Slot) -> str:
    """The text of a Python slot's solution file."""
    if slot.name == "congestion":
        return CONGESTION
    if slot.name == "options":
        from stack.wire.ipv6 import process_options

        return OPTIONS_HEAD + inspect.getsource(process_options)
    return inspect.getsource(reference_module(slot))


def write_solutions(dest: Path, labs: Path) -> Path:
    """Write every slot's solution under ``dest/labs/<the folder of its lab in labs>/``;
    returns ``dest``."""
    for slot in SLOTS.values():
        folders = sorted(labs.glob(f"{slot.lab}-*"))
        if not folders:
            continue
        target = dest / "labs" / folders[0].name
        target.mkdir(parents=True, exist_ok=True)
        if slot.name == "echo":
            write_sources(target)
            continue
        (target / slot.files[0]).write_text(solution_text(slot))
    return dest
