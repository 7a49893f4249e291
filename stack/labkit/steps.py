"""Step-by-step tests: every test is a short story of calls on your code.

A scenario does one thing after another to the object under test, and each step is
recorded. When a step goes wrong the runner prints the steps that ran before it and
the failing step with what was expected and what came back, so you can replay the
story by hand in ``python3``::

    FAIL  a hole is filled by a later segment
          steps that ran:
            ok    r = Reassembler(capacity=100)
            ok    r.insert(3, b'def') returns b''
            FAIL  r.insert(0, b'abc') returns b'abcdef'
                  got b'abc'
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


class StepFailed(Exception):
    def __init__(self, step: str, problem: str, where: str = "") -> None:
        super().__init__(f"{step}: {problem}")
        self.step = step
        self.problem = problem
        self.where = where


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 9:
        text = f"{value} (0x{value & 0xFFFFFFFFFFFFFFFF:x})" if value >= 0 else text
    if len(text) > limit:
        text = text[: limit - 20] + " ... " + text[-12:]
    if isinstance(value, bytes | bytearray) and len(value) > 40:
        text += f" ({len(value)} bytes)"
    return text


def _learner_frame(exc: BaseException) -> str:
    """The last traceback line outside this package: where the learner's code broke."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if "/stack/labkit/" not in frame.filename.replace("\\", "/"):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    return ""


class Steps:
    """Runs and records the steps of one scenario."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def _call(self, text: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except StepFailed:
            raise
        except NotImplementedError:
            raise StepFailed(text, "not implemented yet (NotImplementedError)") from None
        except AssertionError as exc:
            raise StepFailed(text, str(exc) or "assertion failed") from None
        except Exception as exc:
            raise StepFailed(text, f"raised {type(exc).__name__}: {exc}",
                             _learner_frame(exc)) from None

    def do(self, text: str, fn: Callable[[], T]) -> T:
        """A step whose result is not checked here (creating an object, say)."""
        result = self._call(text, fn)
        self.done.append(text)
        return result

    def expect(self, text: str, fn: Callable[[], Any], expected: Any, *,
               rel: float | None = None, abs_tol: float = 0.0, convert: Callable[[Any], Any] | None = None) -> Any:
        """A step that must give ``expected`` (floats: within ``rel``/``abs_tol``)."""
        label = f"{text} -> {_short(expected)}"
        got = self._call(label, fn)
        value = convert(got) if convert is not None else got
        if rel is not None or abs_tol:
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isclose(value, expected, rel_tol=rel or 0.0, abs_tol=abs_tol))
        elif isinstance(expected, bool):
            ok = value is expected
        else:
            ok = value == expected
        if not ok:
            raise StepFailed(label, f"got {_short(got)}")
        self.done.append(label)
        return got

    def check(self, text: str, fn: Callable[[], Any], predicate: Callable[[Any], bool],
              want: str) -> Any:
        """A step whose result must satisfy ``predicate`` (``want`` says how)."""
        label = f"{text}: {want}"
        got = self._call(label, fn)
        ok = self._call(label, lambda: predicate(got))
        if not ok:
            raise StepFailed(label, f"got {_short(got)}")
        self.done.append(label)
        return got

    def raises(self, text: str, fn: Callable[[], Any], exc_type: type[BaseException]) -> None:
        label = f"{text} raises {exc_type.__name__}"
        try:
            fn()
        except exc_type:
            self.done.append(label)
            return
        except NotImplementedError:
            raise StepFailed(label, "not implemented yet (NotImplementedError)") from None
        except Exception as exc:
            raise StepFailed(label, f"raised {type(exc).__name__}: {exc} instead") from None
        raise StepFailed(label, "nothing was raised")

    def note(self, text: str) -> None:
        """A line in the story that is not a call (e.g. 'the 2**32 wrap')."""
        self.done.append(f"-- {text}")


Scenario = Callable[[Steps, Any], None]


@dataclass
class Suite:
    """The scenarios of one slot, in order."""

    slot: str
    scenarios: list[tuple[str, Scenario]] = field(default_factory=list)

    def scenario(self, title: str) -> Callable[[Scenario], Scenario]:
        def register(fn: Scenario) -> Scenario:
            self.scenarios.append((title, fn))
            return fn

        return register


@dataclass
class Outcome:
    title: str
    passed: bool
    steps: list[str]
    failed_step: str = ""
    problem: str = ""
    where: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    slot: str
    outcomes: list[Outcome]

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.passed

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and self.failed == 0


def run_suite(suite: Suite, target: Any, out: TextIO | None = sys.stdout,
              first_failure_only: bool = False, verbose: bool = False) -> Report:
    outcomes = []
    for title, fn in suite.scenarios:
        steps = Steps()
        started = time.monotonic()
        try:
            fn(steps, target)
        except StepFailed as exc:
            outcome = Outcome(title, False, list(steps.done), exc.step, exc.problem, exc.where)
        else:
            outcome = Outcome(title, True, list(steps.done))
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
        if out is not None:
            _print_outcome(outcome, out, verbose)
        if first_failure_only and not outcome.passed:
            break
    report = Report(suite.slot, outcomes)
    if out is not None:
        total = len(suite.scenarios)
        ran = len(outcomes)
        print(f"{report.passed} of {total} scenarios passed"
              + (f" ({total - ran} not run: stopped at the first failure)" if ran < total else ""),
              file=out)
    return report


def _print_outcome(o: Outcome, out: TextIO, verbose: bool) -> None:
    if o.passed:
        print(f"  PASS  {o.title}", file=out)
        if verbose:
            for line in o.steps:
                print(f"          ok    {line}", file=out)
        return
    print(f"  FAIL  {o.title}", file=out)
    print("        steps that ran:", file=out)
    for line in o.steps:
        print(f"          ok    {line}", file=out)
    print(f"          FAIL  {o.failed_step}", file=out)
    print(f"                {o.problem}", file=out)
    if o.where:
        print(f"                at {o.where}", file=out)
