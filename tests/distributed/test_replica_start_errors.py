"""Scaling out: a replica that cannot start says why, and the job ends on it.

Seen under load in CI: a concurrent job held the HTTP ports of slots 0 and 1; ranks 0 and 1
failed to serve, and their close() waited on a barrier that rank 2's first allreduce
completed (it posts an ``Ibarrier`` first), then hung in ``MPI_Finalize`` until the 10 s alarm
killed them before their error line was printed. Rank 2 saw them fail ("NBC_Progress: an
error 75"), was left 1 of 3 ("no majority") and the log never said why.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.distributed.replica_job import ReplicaJob, reserve_port_range, train_options
from tests.support.kafka_fixtures import create_topic

PARTITIONS = 3


def test_a_replica_that_cannot_serve_http_says_why(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    options = train_options(kafka_bootstrap, topic, tmp_path / "ckpt")
    base, lock = reserve_port_range(4)
    held = []
    for slot in (0, 1):  # another process serves on the ports of slots 0 and 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past an earlier job's TIME_WAIT
        s.bind(("127.0.0.1", base + slot))
        s.listen()
        held.append(s)
    job = ReplicaJob(3, options, tmp_path / "job.log", port_range=(base, lock))
    try:
        code = job.wait_exit(240)
    finally:
        job.kill()
        for s in held:
            s.close()
    assert code != 0, job.diagnostics()
    text = job.log_text()
    for slot in (0, 1):
        assert f"cannot serve HTTP on 127.0.0.1:{base + slot}" in text, job.diagnostics()
