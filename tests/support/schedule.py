"""The order of the test run on several workers (`pytest -n 2 --dist loadgroup
--no-loadscope-reorder`, as `make test` runs it).

Two cores and a suite of long tests: the wall time is set by how the work is shared. xdist
hands out work units (here: a module, or one test of a module listed in `SPREAD`) in
collection order, so the units start longest first, from the per-test times in
`durations.json` (measured here by `tools/record_test_durations.py`; a test missing from it counts
as `UNKNOWN_S`), summed over the tests selected. A stale table only makes the order worse,
never a test wrong.

A module runs on one worker, so that its module and session fixtures are built once;
a module in `SPREAD` has long tests on a cheap shared fixture and spreads test by test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")
UNKNOWN_S = 5.0  # a test not in the table yet
# Empty now: the documentation's blocks (tests/test_readme.py, about 7 minutes) run as one
# unit, so their scratch folder is built once instead of on both workers.
SPREAD: set[str] = set()


def duration_key(nodeid: str) -> str:
    """`module.py::test[param]`: a test's key in `DURATIONS` (no folder, no xdist group)."""
    return nodeid.rsplit("/", 1)[-1].split("@")[0]


def unit(nodeid: str) -> str:
    """The work unit a test belongs to: its module's file name, or (`SPREAD`) the test."""
    module = duration_key(nodeid).split("::")[0]
    return duration_key(nodeid) if module in SPREAD else module


def group(items: list[pytest.Item]) -> None:
    """Each module's tests are one xdist group (`SPREAD` aside): one worker, fixtures once.
    Runs before xdist reads the groups."""
    for item in items:
        if "::" not in unit(item.nodeid):
            item.add_marker(pytest.mark.xdist_group(unit(item.nodeid)))


def check_grouped(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, a UsageError unless xdist gave every grouped test its
    group (the `@group` suffix of its node ID): without it the modules' tests spread over
    the workers and every module fixture is built on each of them, silently (pytest 9.2
    with pytest-xdist 3.8 did that to the whole suite)."""
    if not getattr(config.option, "loadgroup", False):
        return
    marks = ((item, item.get_closest_marker("xdist_group")) for item in items)
    lost = [item.nodeid for item, mark in marks
            if mark is not None and not item.nodeid.endswith("@" + mark.args[0])]
    if lost:
        message = (f"pytest-xdist did not group {len(lost)} tests by module (e.g. {lost[0]}) "
                   f"under pytest {pytest.__version__}: install the versions "
                   "requirements-test.txt pins (make venv).")
        print(message, file=sys.stderr, flush=True)  # a worker's exception loses its text
        raise pytest.UsageError(message)


@pytest.hookimpl(trylast=True)  # after `-m` / `-k` have deselected: the units as they run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Sorts the work units longest first, keeping the order of the tests inside a unit."""
    check_grouped(config, items)
    measured = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(unit(item.nodeid), []).append(item)
    seconds = {name: sum(measured.get(duration_key(item.nodeid), UNKNOWN_S) for item in tests)
               for name, tests in units.items()}
    items[:] = [item for name in sorted(units, key=lambda name: -seconds[name])
                for item in units[name]]
