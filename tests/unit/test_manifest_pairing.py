"""Issue 20, the checkpoint paired with another lineage's step. A rank 0 checkpoints step k
and dies; the survivors, one of which had not finished k, roll k back and take their own
step k (here: a larger one, two of the old steps' records in one); their new rank 0 appends
its entries (dropping the old k) and dies before its checkpoint. The directory then holds the
old lineage's checkpoint at k and the new lineage's step k in the manifest. A restart from
that checkpoint must rewrite step k from the checkpoint itself: the manifest then replays to
the restarted job's final model. Before the fix the old checkpoint was paired with the new
step k and the replay learned the records of the old step k + 1 twice."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamsgd.codec import Decoder
from streamsgd.distributed.step_manifest import replay_manifest
from streamsgd.training.settings import ServiceConfig
from tests.support.replicas import MemoryManifest, PartitionedMemorySource
from tests.unit.test_replicated import D, MemoryStore, _model, _run_replicas, _values

CHECKPOINT_STEP = 6  # k


def _other_lineage(entries: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The file as the new lineage's rank 0 left it: steps up to k − 1 in common, then its
    own step k (the records of the old steps k and k + 1 in one minibatch), then the old
    steps from k + 2 on, renumbered."""
    by_step = {int(e["step"]): e for e in entries if "step" in e}
    merged = {
        "step": k,
        "n_samples": by_step[k]["n_samples"] + by_step[k + 1]["n_samples"],
        "ends": {**by_step[k]["ends"], **by_step[k + 1]["ends"]},
    }
    later = [{**e, "step": int(e["step"]) - 1} for s, e in sorted(by_step.items()) if s > k + 1]
    return [*[e for e in entries if int(e.get("step", 0)) < k], merged, *later[:3]]


def test_a_restart_pairs_the_checkpoint_with_its_own_step() -> None:
    values = _values(2, 60, seed=31)
    config = ServiceConfig(batch_size=8, max_wait_seconds=0.05, checkpoint_every_updates=1)
    first = MemoryStore()
    _, manifest, errors = _run_replicas(values, 1, config, open_checkpoint_store=lambda: first)
    assert not errors, errors
    [old_k] = [s for s in first.saved if s["global_step"] == CHECKPOINT_STEP]
    directory = MemoryStore()
    directory.saved = [old_k]  # the old lineage's checkpoint at k ...
    left = MemoryManifest()
    left.append(_other_lineage(manifest.read(), CHECKPOINT_STEP))  # ... the new one's manifest

    services, restarted, errors = _run_replicas(
        values, 1, config, manifest=left, open_checkpoint_store=lambda: directory
    )
    assert not errors, errors
    final = directory.saved[-1]
    assert final["model"]["n_samples_seen"] == services[0].model.n_samples_seen
    reader = PartitionedMemorySource(values).read
    oracle = replay_manifest(restarted.read(), reader, Decoder(D), _model())
    # The replay repeats the job's own minibatches (same order of every sum): bit-equal
    # is possible, but rtol 1e-10 is the suite's manifest-replay tolerance.
    assert oracle.n_samples_seen == services[0].model.n_samples_seen
    np.testing.assert_allclose(
        oracle.parameters, services[0].model.parameters, rtol=1e-10, atol=1e-13
    )
