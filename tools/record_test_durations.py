"""Writes tests/support/durations.json, the measured time of each test, from a run's JUnit
XML:

    .venv/bin/python -m pytest -n 2 tests --junitxml=/tmp/run.xml
    .venv/bin/python tools/record_test_durations.py /tmp/run.xml

`tests/support/schedule.py` starts the longest units first. Times are seconds on the machine
that ran the tests; only their order matters.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.schedule import DURATIONS, duration_key  # noqa: E402


def times_per_test(junit_xml: Path) -> dict[str, float]:
    """Seconds per test (setup, call and teardown: a module's fixtures count in its first
    test), keyed as `schedule.duration_key` keys them."""
    times: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit_xml).iter("testcase"):
        module = [part for part in case.get("classname", "").split(".") if not part[:1].isupper()]
        times[duration_key(f"{module[-1]}.py::{case.get('name')}")] += float(case.get("time", 0))
    return {name: round(seconds, 1) for name, seconds in sorted(times.items())}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python tools/record_test_durations.py RUN.xml (a pytest --junitxml file)",
              file=sys.stderr)
        return 2
    DURATIONS.write_text(json.dumps(times_per_test(Path(argv[0])), indent=1) + "\n")
    print(f"wrote {DURATIONS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
