"""Run under mpiexec by test_ownership_conflict.py: replicas on an in-memory partitioned
source where rank 1 also claims rank 0's first partition (two readers of one partition).
Each rank prints one JSON line: the error it ended with and its model's step count."""

from __future__ import annotations

import json
import sys

import numpy as np

from streamsgd import OnlineLogisticRegression
from streamsgd.codec import Decoder, encode_dense
from streamsgd.distributed.collective_stepper import CollectiveStepper
from streamsgd.distributed.exchange import OwnershipConflict
from streamsgd.distributed.mpi import MpiCollective
from streamsgd.distributed.replicated import replicated_trainer
from streamsgd.training.trainer import ServiceConfig, Trainer
from tests.support.replicas import PartitionedMemorySource

D = 4


def greedy(service: Trainer) -> Trainer:
    """Rank 1 also reads rank 0's first partition (two readers of one partition)."""
    stepper = service.stepper
    assert isinstance(stepper, CollectiveStepper)
    assign = stepper.membership.assign

    def greedy_assign() -> None:
        assign()
        if stepper.collective.rank == 1:
            replica = stepper.replica
            replica.owned = sorted({*replica.owned, replica.partitions[0]})

    stepper.membership.assign = greedy_assign  # type: ignore[method-assign]
    return service


def main() -> int:
    rng = np.random.default_rng(0)
    values = {
        f"t:{p}": [encode_dense(rng.standard_normal(D), float(i % 2)) for i in range(50)]
        for p in range(4)
    }
    collective = MpiCollective(timeout_seconds=60)
    service = greedy(
        replicated_trainer(
            OnlineLogisticRegression(D),
            PartitionedMemorySource(values),
            Decoder(D),
            ServiceConfig(batch_size=8, max_wait_seconds=0.1),
            collective=collective,
        )
    )
    error = None
    try:
        service.run()
    except OwnershipConflict as exc:
        error = f"OwnershipConflict: {exc}"
    print(
        json.dumps({"rank": collective.rank, "error": error, "n_updates": service.model.n_updates}),
        flush=True,
    )
    collective.close()
    return 3 if error else 0


if __name__ == "__main__":
    sys.exit(main())
