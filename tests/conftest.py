"""Settings shared by every test directory.

In CI (the environment variable CI is set) hypothesis runs derandomized: the same
examples every run, so a submission's result does not depend on luck. Locally it
explores new examples each run, which is how rare bugs are found; a failure prints
the example to add as a fixed regression case.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
