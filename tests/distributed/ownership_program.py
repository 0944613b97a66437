"""Run under mpiexec by test_ownership_conflict.py: replicas on an in-memory partitioned
source where rank 1 also claims rank 0's first partition (two readers of one partition).
Each rank prints one JSON line: the error it ended with and its model's step count."""

from __future__ import annotations

import json
import sys

import numpy as np

from streamsgd import OnlineLogisticRegression
from streamsgd.codec import Decoder, encode_dense
from streamsgd.distributed.exchange import OwnershipConflict
from streamsgd.distributed.mpi import MpiCollective
from streamsgd.distributed.replicated import ReplicatedService
from streamsgd.training.trainer import ServiceConfig
from tests.support.replicas import PartitionedMemorySource

D = 4


class Greedy(ReplicatedService):
    def _assign(self) -> None:
        super()._assign()
        if self.collective.rank == 1:
            self.owned = sorted({*self.owned, self.partitions[0]})


def main() -> int:
    rng = np.random.default_rng(0)
    values = {
        f"t:{p}": [encode_dense(rng.standard_normal(D), float(i % 2)) for i in range(50)]
        for p in range(4)
    }
    collective = MpiCollective(timeout_seconds=60)
    service = Greedy(
        OnlineLogisticRegression(D),
        PartitionedMemorySource(values),
        Decoder(D),
        ServiceConfig(batch_size=8, max_wait_seconds=0.1),
        collective=collective,
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
