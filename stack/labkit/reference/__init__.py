"""Reference solutions of the swap-in slots that are not part of the stack itself.

``tunread`` (lab 01) and ``echo_c`` (lab 09, C sources as strings, so that they are
installed with the package). The other slots' references are the stack's own modules.
"""
