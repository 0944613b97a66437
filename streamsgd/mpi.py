"""The MPI adapter of :class:`~streamsgd.collective.Collective` (issue 11): mpi4py over Open MPI
with ULFM fault tolerance (``mpiexec --with-ft ulfm``).

The only module that imports mpi4py, and only when a collective is built (importing
``mpi4py.MPI`` initialises MPI), so the package imports without it.

Waiting. Open MPI's blocking calls busy-poll a core until they complete; with N replicas
oversubscribed on fewer cores a replica waiting for the slowest one would steal the core that
one needs. Every call is therefore non-blocking (``Iallreduce``, ``Ibcast``, ``Ishrink``) and
waited for by :func:`_wait`: ``Test()`` in a tight loop for ``SPIN_SECONDS``, then sleeps that
double from ``FIRST_SLEEP_SECONDS`` up to ``MAX_SLEEP_SECONDS``. ``Test()`` also drives Open
MPI's progress engine, so a revoke by another member or a failure detected by the runtime ends
the wait with an error (``ReplicaFailure``), and the timeout is checked between tests.

Failures. The communicators use ``MPI.ERRORS_RETURN``; the ULFM error classes
(``ERR_PROC_FAILED``, ``ERR_PROC_FAILED_PENDING``, ``ERR_REVOKED``) become
:class:`ReplicaFailure`. :meth:`MpiCollective.recover` revokes, shrinks and, with ``respawn``,
spawns replacements and merges them in after the survivors (the survivors keep ranks
0..k-1 in their old order, so rank 0 stays a survivor).

Slots. A rank is renumbered by a shrink; :attr:`MpiCollective.slot` is not: the original
members hold slots 0..N-1 (their world rank) and a replacement takes a slot a failed member
freed. Things that must not collide between live members (a metrics port) use the slot.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from .collective import CollectiveTimeout, ReplicaFailure
from .core.types import FloatArray

T = TypeVar("T")

SPIN_SECONDS = 50e-6
"""Time ``Test()`` is called back to back before the first sleep (covers a loopback allreduce
of a small buffer when the peers are already waiting)."""
FIRST_SLEEP_SECONDS = 20e-6
MAX_SLEEP_SECONDS = 1e-3
"""The longest sleep between two ``Test()``: bounds the latency added to a call whose peers
arrive late, and the wake-ups of an idle rank (≈ 1000/s, a fraction of a percent of a core)."""
RECOVERY_TIMEOUT_FLOOR_SECONDS = 30.0
FINALIZE_TIMEOUT_SECONDS = 10.0
"""How long :meth:`MpiCollective.close` lets ``MPI_Finalize`` run (normally milliseconds)."""
"""Shrink and merge wait at least this long (they involve the runtime, not just the peers)."""


def _mpi() -> Any:
    """The ``mpi4py.MPI`` module (imported here, not at the top: importing it initialises MPI)."""
    import mpi4py

    # No MPI_Finalize at exit (close() finalises after a healthy run): under ULFM, Finalize
    # waits, busy-polling a core, until every other member finalises too, so a member that
    # hangs keeps the others spinning in their exit forever (measured: 2 ranks exiting while
    # a third sleeps 30 s burn 23 CPU-seconds). Without it a process whose collective broke
    # exits at once, and a non-zero exit status makes mpiexec end the whole job. Must be set
    # before the first import of mpi4py.MPI.
    mpi4py.rc.finalize = False
    from mpi4py import MPI

    return MPI


def world_rank_and_size() -> tuple[int, int]:
    """This process's rank and the job's size as ``mpiexec`` started it, without initialising
    MPI (read from Open MPI's environment; ``(0, 1)`` outside ``mpiexec``).

    A replacement spawned by :meth:`MpiCollective.recover` reads ``(0, 1)`` here (it is the
    only member of its own world); its place in the job is :attr:`MpiCollective.slot`.
    """
    rank = os.environ.get("OMPI_COMM_WORLD_RANK")
    size = os.environ.get("OMPI_COMM_WORLD_SIZE")
    if rank is None or size is None:
        return 0, 1
    return int(rank), int(size)


def _is_failure(error: Exception) -> bool:
    MPI = _mpi()
    if not isinstance(error, MPI.Exception):
        return False
    return error.Get_error_class() in (
        MPI.ERR_PROC_FAILED,
        MPI.ERR_PROC_FAILED_PENDING,
        MPI.ERR_REVOKED,
    )


def _wait(request: Any, deadline: float, what: str, arrival: Any = None) -> None:
    """Wait for ``request`` (module doc, Waiting).

    With ``arrival`` (an ``Ibarrier`` posted just before ``request``): until every member
    has arrived, ``Test()`` for ``SPIN_SECONDS``, then sleeps that double from
    ``FIRST_SLEEP_SECONDS`` to ``MAX_SLEEP_SECONDS``; from then on ``Test()`` and
    ``sched_yield()`` back to back, the data moving only while this rank drives it. Without
    ``arrival`` the sleeps go on to the end.

    Raises
    ------
    mpi4py.MPI.Exception
        A request completed with an error (translated by the caller).
    CollectiveTimeout
        ``deadline`` (``time.monotonic()``) passed first.
    """
    spin_until = time.monotonic() + SPIN_SECONDS
    sleep_seconds = FIRST_SLEEP_SECONDS
    arrived = False
    while not request.Test():
        now = time.monotonic()
        if now > deadline:
            raise CollectiveTimeout(f"{what} did not complete in time: a member hangs")
        if not arrived and arrival is not None:
            arrived = arrival.Test()
        if arrived or now < spin_until:
            # Hands the core to a peer rank that needs it (oversubscribed), else returns.
            os.sched_yield()
            continue
        time.sleep(sleep_seconds)
        sleep_seconds = min(2 * sleep_seconds, MAX_SLEEP_SECONDS)
    if arrival is not None and not arrived:
        arrival.Wait()  # complete: every member has posted the request that just completed


def _finalize_or_exit(timeout_seconds: float) -> None:
    """``MPI_Finalize``; if it has not returned after ``timeout_seconds``, the process ends
    by ``SIGALRM`` (``alarm(2)``; stdout and stderr are flushed first).

    After a process failure in the job, Open MPI 5.0.11's Finalize sometimes never returns
    (seen 1 run in 8 at N = 3 after a SIGKILL; open-mpi/ompi#11404). Skipping Finalize is no
    way out: a spawned replacement that exits without it is an "improper" exit that makes
    mpiexec fail the job. A watchdog thread cannot help: mpi4py holds the GIL in Finalize;
    the kernel's alarm needs no Python. Under ``--with-ft ulfm`` a rank ended by a signal is
    a tolerated failure: mpiexec still exits 0.
    """
    MPI = _mpi()
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, math.ceil(timeout_seconds)))
    MPI.Finalize()
    signal.alarm(0)


def _bounded(call: Callable[[], T], deadline: float, what: str) -> T:
    """``call()`` run in a helper thread and waited for until ``deadline``.

    For the blocking calls of a recovery: ``Ishrink`` fails with ``MPI_ERR_INTERN`` in Open
    MPI 5.0.11 (blocking ``Shrink`` works), and ``Spawn``/``Merge`` have no non-blocking form.
    On timeout the thread is abandoned (a daemon, still inside MPI): the collective is then
    unusable and the caller stops the run, as after any :class:`CollectiveTimeout`.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # handed to the caller's thread
            outcome.append((False, error))

    thread = threading.Thread(target=run, name=f"mpi-{what}", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise CollectiveTimeout(f"{what} did not complete in time: a member hangs")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


class MpiCollective:
    """A :class:`~streamsgd.collective.Collective` over MPI: the members are the processes
    ``mpiexec`` started (a duplicate of ``COMM_WORLD``), or, in a replacement spawned by
    :meth:`recover`, the survivors and the replacements merged into one communicator.

    Parameters
    ----------
    timeout_seconds : float
        A collective call that does not complete within this raises
        :class:`CollectiveTimeout` (a member is alive but does not take part).
    respawn : bool
        :meth:`recover` spawns replacements up to the original size.
    spawn_argv : sequence of str, optional
        The replacement's command line (``spawn_argv[0]`` is the executable), e.g.
        ``[sys.executable, "-m", "streamsgd", *sys.argv[1:]]``; default: this process's own
        ``[sys.executable, *sys.argv]``.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float,
        respawn: bool = False,
        spawn_argv: Sequence[str] | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        MPI = _mpi()
        self.timeout_seconds = float(timeout_seconds)
        self.respawn = respawn
        self.spawn_argv = list(spawn_argv or [sys.executable, *sys.argv])
        self._parent_pid = os.getppid()
        self._broken = False
        self._membership_changes = 0
        parent = MPI.Comm.Get_parent()
        self._joined = parent != MPI.COMM_NULL
        if self._joined:
            parent.Set_errhandler(MPI.ERRORS_RETURN)
            with self._translated("merging with the survivors"):
                self._comm = parent.Merge(high=True)
            parent.Free()
            self._comm.Set_errhandler(MPI.ERRORS_RETURN)
            self._slots = self._receive_slots()
        else:
            self._comm = MPI.COMM_WORLD.Dup()
            self._comm.Set_errhandler(MPI.ERRORS_RETURN)
            self._slots = np.arange(self._comm.Get_size(), dtype=np.int64)
        self._original_size = len(self._slots)

    # ----------------------------------------------------------------- the Collective port

    @property
    def rank(self) -> int:
        return int(self._comm.Get_rank())

    @property
    def size(self) -> int:
        return int(self._comm.Get_size())

    @property
    def joined(self) -> bool:
        return self._joined

    @property
    def membership_changes(self) -> int:
        return self._membership_changes

    @property
    def slot(self) -> int:
        """This member's stable place in the job, 0 ≤ slot < the original size (module doc)."""
        return int(self._slots[self.rank])

    def allreduce_sum(self, buffer: FloatArray) -> FloatArray:
        """The element-wise sum over the members of a 1-D float64 ``buffer`` of shape (n,)
        (the same n everywhere): ``out[i] = Σ_members buffer[i]``.

        Raises
        ------
        ReplicaFailure
            A member died, or another member revoked the communicator.
        CollectiveTimeout
            Not complete within ``timeout_seconds``.
        """
        MPI = _mpi()
        send = np.ascontiguousarray(buffer, dtype=np.float64)
        received = np.empty_like(send)
        with self._translated("allreduce"):
            arrival = self._comm.Ibarrier()
            request = self._comm.Iallreduce(send, received, op=MPI.SUM)
            _wait(request, self._deadline(), "allreduce", arrival)
        return received

    def broadcast(self, value: Any, root: int = 0) -> Any:
        """``value`` of member ``root`` on every member (pickled: its length, then its bytes,
        each by ``Ibcast``). A replacement's first broadcast ends its ``joined`` state.

        Raises as :meth:`allreduce_sum`.
        """
        payload = pickle.dumps(value) if self.rank == root else b""
        length = np.array([len(payload)], dtype=np.int64)
        deadline = self._deadline()
        with self._translated("broadcast"):
            _wait(self._comm.Ibcast(length, root=root), deadline, "broadcast")
            data = np.frombuffer(payload, dtype=np.uint8).copy()
            if self.rank != root:
                data = np.empty(int(length[0]), dtype=np.uint8)
            _wait(self._comm.Ibcast(data, root=root), deadline, "broadcast")
        self._joined = False
        # A copy on the root as well, as LocalCollective gives (the caller may mutate value).
        return pickle.loads(data.tobytes())

    def recover(self) -> None:
        """Exclude the failed members and, with ``respawn``, start replacements up to the
        original size (every survivor calls this after :class:`ReplicaFailure`).

        Revoke (members still waiting elsewhere on the old communicator get an error too),
        shrink to the survivors (ranks renumbered in their old order), then spawn
        ``original size - size`` replacements running ``spawn_argv`` and merge them in after
        the survivors. Counts one membership change for the shrink and one for the respawn.

        Raises
        ------
        ReplicaFailure
            Another member failed during the recovery: call it again.
        CollectiveTimeout
            A survivor did not take part in the shrink in time.
        """
        MPI = _mpi()
        old = self._comm
        with self._translated("recover (shrink)"):
            old.Revoke()
            shrunk = _bounded(old.Shrink, self._recovery_deadline(), "shrink")
        shrunk.Set_errhandler(MPI.ERRORS_RETURN)
        with self._translated("recover (slots after shrink)"):
            survivors = np.empty(shrunk.Get_size(), dtype=np.int64)
            mine = np.array([self._slots[old.Get_rank()]], dtype=np.int64)
            _wait(shrunk.Iallgather(mine, survivors), self._recovery_deadline(), "shrink")
        old.Free()
        self._comm = shrunk
        if shrunk.Get_size() < len(self._slots):
            self._membership_changes += 1
        self._slots = survivors
        missing = self._original_size - self.size
        if self.respawn and missing > 0:
            self._spawn(missing)
            self._membership_changes += 1
        self._broken = False

    def supervised(self) -> bool:
        """False once the process that started this one (``mpiexec``'s daemon) is gone.

        Open MPI 5 does not kill the ranks when ``mpiexec`` is SIGKILLed (they are re-parented
        and keep running); the loop checks this every step and stops when it turns False.
        """
        return os.getppid() == self._parent_pid

    def close(self) -> None:
        """Leave the job: after a healthy run, wait for every member in a barrier (bounded by
        the timeout), free the communicator and finalise MPI; after a failure or timeout not
        recovered from (or a failed barrier), only free the communicator: the process then
        exits without ``MPI_Finalize``, which cannot hang (see :func:`_mpi`). Call it once,
        at the end; no MPI call is possible after it.
        """
        if self._comm is None:
            return
        MPI = _mpi()
        together = not self._broken
        if together:
            try:
                with self._translated("close"):
                    _wait(self._comm.Ibarrier(), self._deadline(), "close")
            except (ReplicaFailure, CollectiveTimeout):
                together = False  # a member is gone or hangs: do not wait for it again
        self._comm.Free()
        self._comm = None
        # Every member passed the barrier, so every one is here and finalises too.
        if together and not MPI.Is_finalized():
            _finalize_or_exit(FINALIZE_TIMEOUT_SECONDS)

    # ----------------------------------------------------------------- recovery helpers

    def _spawn(self, missing: int) -> None:
        """Spawn ``missing`` replacements and merge them in after the survivors; hand them
        the freed slots.

        Raises
        ------
        RuntimeError
            Open MPI refused to start the replacements (e.g. the command cannot run).
        """
        MPI = _mpi()
        info = MPI.Info.Create()
        # Without it a spawn on hosts mpiexec filled fails ("All nodes which are allocated
        # for this job are already filled") unless mpiexec itself had --oversubscribe.
        info.Set("map_by", ":OVERSUBSCRIBE")
        deadline = self._recovery_deadline()
        command, args = self.spawn_argv[0], self.spawn_argv[1:]
        try:
            with self._translated("recover (spawn)"):
                inter = _bounded(
                    lambda: self._comm.Spawn(command, args, maxprocs=missing, info=info, root=0),
                    deadline,
                    "spawn",
                )
                inter.Set_errhandler(MPI.ERRORS_RETURN)
                merged = _bounded(lambda: inter.Merge(high=False), deadline, "merge")
        except MPI.Exception as error:
            raise RuntimeError(f"spawning {missing} replacement(s) failed: {error}") from error
        finally:
            info.Free()
        inter.Free()
        merged.Set_errhandler(MPI.ERRORS_RETURN)
        freed = sorted(set(range(self._original_size)) - {int(s) for s in self._slots})
        slots = np.concatenate([self._slots, np.array(freed[:missing], dtype=np.int64)])
        self._comm.Free()
        self._comm = merged
        self._send_slots(slots)
        self._slots = slots

    def _send_slots(self, slots: Any) -> None:
        """Rank 0 sends the member count and every member's slot to the merged members."""
        deadline = self._recovery_deadline()
        with self._translated("recover (slots after spawn)"):
            count = np.array([len(slots)], dtype=np.int64)
            _wait(self._comm.Ibcast(count, root=0), deadline, "merge")
            _wait(self._comm.Ibcast(np.ascontiguousarray(slots), root=0), deadline, "merge")

    def _receive_slots(self) -> Any:
        """The replacement's side of :meth:`_send_slots`."""
        deadline = self._recovery_deadline()
        with self._translated("joining (slots)"):
            count = np.zeros(1, dtype=np.int64)
            _wait(self._comm.Ibcast(count, root=0), deadline, "merge")
            slots = np.zeros(int(count[0]), dtype=np.int64)
            _wait(self._comm.Ibcast(slots, root=0), deadline, "merge")
        return slots

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout_seconds

    def _recovery_deadline(self) -> float:
        return time.monotonic() + max(self.timeout_seconds, RECOVERY_TIMEOUT_FLOOR_SECONDS)

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn the ULFM error classes raised inside into :class:`ReplicaFailure`, and note
        that the communicator is broken until :meth:`recover` succeeds."""
        try:
            yield
        except CollectiveTimeout:
            self._broken = True
            raise
        except Exception as error:
            if _is_failure(error):
                self._broken = True
                raise ReplicaFailure(f"{what}: {error}") from error
            raise
