"""Keeps the test tiers honest (see the markers in pyproject.toml).

* A test (or a fixture it sets up) that starts a fresh Python interpreter must be marked
  `subprocess`: `Popen` is watched and unmarked launches are listed at the end of the run
  with the marker to add. (Tests that use files fetched through pip are marked `network`
  by conftest.)
* Unmarked tests that took longer than `SLOW_S` are listed at the end of the run, so the
  fast tier stays fast (a list, not a failure: timings depend on the machine).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SLOW_S = 10.0

_current: list[pytest.Item] = []
_unmarked_slow: list[tuple[str, float]] = []
_unmarked_launches: set[tuple[str, str]] = set()
_original_popen_init = subprocess.Popen.__init__


def _required_marker(args) -> str | None:
    argv = [str(a) for a in ([args] if isinstance(args, (str, bytes)) else list(args))]
    if not argv or argv[0] != sys.executable:
        return None
    # pip is the package's own way to fetch FaceNet's file (offline too, where it fails in
    # seconds): the tests that need what it fetches are marked `network` by their fixtures.
    return None if argv[1:3] == ["-m", "pip"] else "subprocess"


def _watched_popen_init(self, args, *rest, **kwargs):
    marker = _required_marker(args)
    if marker and _current and _current[-1].get_closest_marker(marker) is None:
        _unmarked_launches.add((_current[-1].nodeid, marker))
    _original_popen_init(self, args, *rest, **kwargs)


def install() -> None:
    subprocess.Popen.__init__ = _watched_popen_init


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current.append(item)
    try:
        yield
    finally:
        _current.pop()


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration > SLOW_S:
        keywords = report.keywords
        if "slow" not in keywords:
            _unmarked_slow.append((report.nodeid, report.duration))
    # Launches seen in a worker travel to the controller in the report's sections.
    for name, content in report.sections:
        if name == "unmarked launches":
            _unmarked_launches.update(tuple(line.split(" ", 1)) for line in content.splitlines())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    launches = sorted(m for nodeid, m in _unmarked_launches if nodeid == item.nodeid)
    if launches and call.when == "teardown":
        outcome.get_result().sections.append(
            ("unmarked launches", "\n".join(f"{item.nodeid} {m}" for m in launches)))


def pytest_terminal_summary(terminalreporter):
    if _unmarked_launches:
        terminalreporter.section("tests that start an interpreter without their marker")
        for nodeid, marker in sorted(_unmarked_launches):
            terminalreporter.write_line(f"{nodeid}: add @pytest.mark.{marker}")
    if _unmarked_slow:
        terminalreporter.section(f"tests over {SLOW_S:.0f} s not marked slow")
        for nodeid, seconds in sorted(_unmarked_slow, key=lambda t: -t[1]):
            terminalreporter.write_line(f"{seconds:7.1f} s  {nodeid}")
