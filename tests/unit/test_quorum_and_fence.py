"""Scaling out (docs/design.md#scaling-out): after a failure only a strict majority of the last
agreed membership (or exactly half holding the lease) goes on; a lineage overtaken by a newer
checkpoint writer never checkpoints or commits offsets again."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from streamsgd.checkpoint.generation import GenerationFence, StaleLineage
from streamsgd.distributed.collective import NoQuorum, ReplicaStop, check_quorum


@pytest.mark.parametrize(
    ("last", "left", "lease", "goes_on"),
    [
        (3, 2, False, True),  # a strict majority needs no lease
        (5, 3, False, True),
        (3, 1, True, False),  # a minority stops, lease or not
        (5, 2, True, False),
        (2, 1, True, True),  # exactly half: the lease decides
        (2, 1, False, False),
        (4, 2, False, False),
        (1, 1, False, True),  # nobody lost (a revoke without a failure)
    ],
)
def test_only_a_majority_or_a_leased_half_goes_on(
    last: int, left: int, lease: bool, goes_on: bool
) -> None:
    asked: list[bool] = []

    def lease_held() -> bool:
        asked.append(True)
        return lease

    if goes_on:
        check_quorum(last, left, lease_held)
    else:
        with pytest.raises(NoQuorum, match=f"{left} of the last {last} replicas") as caught:
            check_quorum(last, left, lease_held)
        assert isinstance(caught.value, ReplicaStop)  # train: one line, exit 1
        assert "\n" not in str(caught.value)
    assert bool(asked) == (2 * left == last)  # the lease is asked in a tie only


def test_a_lineage_overtaken_by_a_newer_writer_is_fenced(tmp_path: Path) -> None:
    old, new = GenerationFence(tmp_path), GenerationFence(tmp_path)
    old.check()  # no generation yet: nothing to fence
    assert old.claim() == 1
    old.check()
    assert new.claim() == 2  # a survivor took rank 0 over (the old one cut off or paused)
    new.check()
    with pytest.raises(StaleLineage, match="generation 2; this one holds 1"):
        old.check()


def test_concurrent_claims_never_share_a_generation(tmp_path: Path) -> None:
    fences = [GenerationFence(tmp_path) for _ in range(8)]
    threads = [threading.Thread(target=f.claim) for f in fences]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(f.mine for f in fences if f.mine is not None) == list(range(1, 9))
