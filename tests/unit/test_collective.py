"""The one-member collective of a single process (streamsgd/distributed/collective.py), and that the
package imports without the MPI adapter's library."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from streamsgd.distributed.collective import LocalCollective, ReplicaFailure


def test_the_local_collective_is_one_member_that_never_changed() -> None:
    collective = LocalCollective()
    assert (collective.rank, collective.size) == (0, 1)
    assert collective.joined is False
    assert collective.membership_changes == 0


def test_allreduce_sum_of_one_member_is_its_buffer_as_float64() -> None:
    collective = LocalCollective()
    buffer = np.array([1.5, -2.0, 3.25])
    assert np.array_equal(collective.allreduce_sum(buffer), buffer)
    summed = collective.allreduce_sum(np.array([1, 2, 3]))
    assert summed.dtype == np.float64
    assert summed.tolist() == [1.0, 2.0, 3.0]


def test_broadcast_gives_an_equal_copy() -> None:
    value = {"weights": np.arange(3.0), "step": 7, "offsets": {0: 12}}
    received = LocalCollective().broadcast(value)
    assert received["step"] == 7 and received["offsets"] == {0: 12}
    assert np.array_equal(received["weights"], value["weights"])
    received["weights"][0] = 99.0  # the caller may mutate what it received
    received["offsets"][0] = 13
    assert value["weights"][0] == 0.0 and value["offsets"] == {0: 12}


def test_a_single_process_has_nothing_to_recover_and_closes_quietly() -> None:
    collective = LocalCollective()
    with pytest.raises(ReplicaFailure, match="single process"):
        collective.recover()
    collective.close()
    collective.close()


def test_the_package_imports_without_mpi4py_and_the_adapter_without_initialising_mpi() -> None:
    code = (
        "import sys, streamsgd, streamsgd.cli, streamsgd.distributed.collective;"
        "assert 'mpi4py' not in sys.modules, 'the package loaded mpi4py';"
        "import streamsgd.distributed.mpi;"  # only a distributed run imports it
        "assert 'mpi4py.MPI' not in sys.modules, 'importing the adapter initialised MPI'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
