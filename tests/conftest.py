"""Shared test configuration.

The real-Kafka fixtures live in tests/support/kafka_fixtures.py. In CI (``CI`` set) a skipped test
is reported as a failure: the integration tier is never optional there, and the property tests
run hypothesis's derandomized examples (the same ones every run, no time limit per example), so
that a CI verdict depends on the commit, not on the examples a run happened to draw; a local run
draws new examples every time and is where a property test finds new counterexamples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.kafka_helpers import Processes

pytest_plugins = ["tests.support.kafka_fixtures"]

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Trainer, producer and feeder processes a test starts; killed at teardown if alive."""
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.cleanup()
