"""Shared test configuration.

The real-Kafka fixtures live in tests/kafka_fixtures.py. In CI (``CI`` set) a skipped test is
reported as a failure: the integration tier is never optional there.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.kafka_fixtures"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"
