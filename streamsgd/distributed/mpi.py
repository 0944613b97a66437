"""The MPI adapter of :class:`~streamsgd.distributed.collective.Collective`
(docs/design.md#scaling-out): mpi4py over Open MPI with ULFM fault tolerance (``mpiexec --with-ft
ulfm``). The only module that imports mpi4py: importing it raises ImportError without mpi4py; MPI is
initialised (``mpi4py.MPI`` imported) only when a collective is built. Nothing imports this module
but a distributed run.

Waiting (:func:`_wait`). Open MPI's blocking calls busy-poll a core; with N replicas on fewer
cores a replica waiting for the slowest one steals the core that one needs. So every call is
non-blocking, and an allreduce is posted with an ``Ibarrier`` in front: until every member has
arrived the rank sleeps between ``Test()`` calls (a short spin, then sleeps doubling up to
``MAX_SLEEP_SECONDS``); once all have arrived it drives the transfer with ``Test()`` and
``sched_yield()`` back to back, so the data move as fast as with a blocking call. ``Test()``
runs Open MPI's progress engine, so a failure or a revoke by another member ends the wait.

Failures. The communicators return errors (``MPI.ERRORS_RETURN``); the ULFM classes, and any
error while the communicator knows a failed member (:meth:`MpiCollective._failed`), become
:class:`ReplicaFailure`. :meth:`MpiCollective.recover` revokes, shrinks and, with ``respawn``,
spawns replacements merged in after the survivors (who keep ranks 0..k-1 in their order).

Slots. A shrink renumbers ranks; :attr:`MpiCollective.slot` stays: the original members hold
slots 0..N-1 (their world rank), a replacement takes a slot a failed member freed. What must
not collide between live members (a metrics port) uses the slot.

Exit (:meth:`MpiCollective.close`). mpi4py's ``MPI_Finalize`` at exit is off: under ULFM it
waits, busy-polling, for every member to finalise, so one hung member keeps the others in their
exit forever (2 ranks exiting while a third slept 30 s burnt 23 CPU-seconds). ``close()``
finalises after a healthy run, bounded by ``alarm(2)``: after a failure in the job, Open MPI
5.0.11's Finalize sometimes never returns (3 runs in 12 at N = 3; open-mpi/ompi#11404). A
process whose collective broke exits without Finalize: with a non-zero status, mpiexec then
ends the whole job (the hung member included).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import mpi4py  # the package only: MPI is initialised by importing mpi4py.MPI, in _mpi()
import numpy as np

from ..core.types import FloatArray
from .collective import CollectiveTimeout, ReplicaFailure, check_quorum
from .mpi_bounded import _bounded

T = TypeVar("T")

SPIN_SECONDS = 200e-6
"""``Test()`` and ``sched_yield()`` this long before the first sleep: a call whose peers are
there or close (8 KB at N = 3 on 2 cores: 0.13 ms against 0.25 ms with 50 µs)."""
FIRST_SLEEP_SECONDS = 20e-6
MAX_SLEEP_SECONDS = 1e-3
"""The longest sleep between two ``Test()`` while a member is missing: ≤ 1 ms added to the
wait for a late member, ≈ 1000 wake-ups/s of an idle rank (≈ 1.4 ms CPU per 20 ms wait)."""
RECOVERY_TIMEOUT_FLOOR_SECONDS = 30.0
"""Shrink, spawn and merge wait at least this long (they involve the runtime and a start)."""
FINALIZE_TIMEOUT_SECONDS = 10
"""``close()`` ends the process by SIGALRM if ``MPI_Finalize`` takes longer (normally ms)."""
FAILURE_NOTICE_SECONDS = 1.0
"""How long an MPI error of no ULFM class waits for the runtime to report a failed member."""


def _mpi() -> Any:
    """The ``mpi4py.MPI`` module, imported on first use, without Finalize at exit (module doc)."""
    mpi4py.rc.finalize = False  # read at the first import of mpi4py.MPI
    from mpi4py import MPI

    return MPI


def world_rank_and_size() -> tuple[int, int]:
    """This process's rank and the job's size as ``mpiexec`` started them, read from Open MPI's
    environment without initialising MPI; ``(0, 1)`` outside ``mpiexec``. A replacement
    spawned by :meth:`MpiCollective.recover` reads ``(0, 1)`` (the only member of its own
    world): its place in the job is :attr:`MpiCollective.slot`."""
    rank = os.environ.get("OMPI_COMM_WORLD_RANK")
    size = os.environ.get("OMPI_COMM_WORLD_SIZE")
    return (0, 1) if rank is None or size is None else (int(rank), int(size))


def _wait(request: Any, deadline: float, what: str, arrival: Any = None) -> None:
    """Wait for ``request`` (module doc). With ``arrival``, an ``Ibarrier`` posted just before
    ``request``, the sleeps stop once every member has arrived; without it they go on.

    Raises
    ------
    mpi4py.MPI.Exception
        A request completed with an error (the caller translates it).
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
            os.sched_yield()  # the core to a peer rank that needs it (oversubscribed)
            continue
        time.sleep(sleep_seconds)
        sleep_seconds = min(2 * sleep_seconds, MAX_SLEEP_SECONDS)
    if arrival is not None and not arrived:
        arrival.Wait()  # done: every member posted it before the request that completed


def _finalize_within(timeout_seconds: int) -> None:
    """``MPI_Finalize``, or the end of the process by SIGALRM after ``timeout_seconds``
    (module doc). A thread cannot be the watchdog: Finalize holds the GIL. Under
    ``--with-ft ulfm`` a rank ended by a signal is a tolerated failure (mpiexec exits 0)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, timeout_seconds))
    _mpi().Finalize()
    signal.alarm(0)


class MpiCollective:
    """A :class:`~streamsgd.distributed.collective.Collective` over MPI: a duplicate of
    ``COMM_WORLD``,
    or, in a replacement spawned by :meth:`recover`, the survivors and replacements merged.

    Parameters
    ----------
    timeout_seconds : float
        A call not complete within this raises :class:`CollectiveTimeout` (a member is alive
        but takes no part). A recovery waits at least ``RECOVERY_TIMEOUT_FLOOR_SECONDS``.
    respawn : bool
        :meth:`recover` spawns replacements up to the original size.
    spawn_argv : sequence of str, optional
        A replacement's command line, e.g. ``[sys.executable, "-m", "streamsgd",
        *sys.argv[1:]]``; default ``[sys.executable, *sys.argv]``.
    """

    def __init__(
        self, *, timeout_seconds: float, respawn: bool = False, spawn_argv: Sequence[str] = ()
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        MPI = _mpi()
        self.timeout_seconds = float(timeout_seconds)
        self.respawn = respawn
        self.spawn_argv = list(spawn_argv) or [sys.executable, *sys.argv]
        self._parent_pid = os.getppid()
        self._comm: Any = None  # an mpi4py Intracomm; None once closed
        self._broken = False
        self._membership_changes = 0
        # Called on the new rank 0 when exactly half of the last membership survived: True
        # when this side may go on (CheckpointWriter.hold_lease: the checkpoint lock); default True.
        self.lease: Callable[[], bool] = lambda: True
        parent = MPI.Comm.Get_parent()
        self._joined = parent != MPI.COMM_NULL
        if self._joined:
            parent.Set_errhandler(MPI.ERRORS_RETURN)
            with self._translated("joining"):
                merged = _bounded(lambda: parent.Merge(high=True), self._slow_deadline(), "join")
            parent.Free()
            self._use(merged)
            self._slots = np.empty(self.size, dtype=np.int64)
            self._exchange_slots()
        else:
            self._use(MPI.COMM_WORLD.Dup())
            self._slots = np.arange(self.size, dtype=np.int64)
        self._original_size = len(self._slots)

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
    def takeover_wait_seconds(self) -> float:
        """How long a new rank 0 waits for the checkpoint lock its predecessor still holds
        (:mod:`.writer`): the replica timeout (within which a live predecessor notices the
        failure, or the detector's sooner) plus the recovery timeout (within which its own
        recovery ends and its side stops without a quorum)."""
        return self.timeout_seconds + max(self.timeout_seconds, RECOVERY_TIMEOUT_FLOOR_SECONDS)

    @property
    def slot(self) -> int:
        """This member's stable place in the job, 0 ≤ slot < the original size (module doc)."""
        return int(self._slots[self.rank])

    def allreduce_sum(self, buffer: FloatArray) -> FloatArray:
        """``out[i] = Σ_members buffer[i]`` for a 1-D float64 ``buffer`` of shape (n,), the
        same n on every member.

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
        """A copy of ``value`` of member ``root`` on every member, the root included (pickled:
        the length, then the bytes, by ``Ibcast``). Ends a replacement's ``joined`` state.
        Raises as :meth:`allreduce_sum`."""
        payload = pickle.dumps(value) if self.rank == root else b""
        length = np.array([len(payload)], dtype=np.int64)
        deadline = self._deadline()
        with self._translated("broadcast"):
            _wait(self._comm.Ibcast(length, root=root), deadline, "broadcast")
            data = np.frombuffer(payload, dtype=np.uint8).copy()
            if self.rank != root:
                data = np.empty(int(length[0]), dtype=np.uint8)
            arrival = self._comm.Ibarrier()
            _wait(self._comm.Ibcast(data, root=root), deadline, "broadcast", arrival)
        self._joined = False
        return pickle.loads(data.tobytes())

    def recover(self) -> None:
        """After :class:`ReplicaFailure`, on every survivor: revoke (members waiting elsewhere
        on the communicator get an error too), shrink to the survivors, renumbered in their
        order; with ``respawn``, spawn the missing members and merge them in after the
        survivors. One membership change for the shrink, one for the respawn.

        Raises
        ------
        ReplicaFailure
            Another member failed meanwhile: call it again.
        CollectiveTimeout
            A survivor took no part in time.
        RuntimeError
            Open MPI refused to start the replacements; the survivors' group works on.
        """
        old = self._comm
        with self._translated("recover (shrink)"):
            old.Revoke()
            shrunk = _bounded(old.Shrink, self._slow_deadline(), "shrink")
        old_slot = self._slots[old.Get_rank()]
        old.Free()
        self._use(shrunk)
        survivors = np.empty(self.size, dtype=np.int64)
        with self._translated("recover (slots)"):
            mine = np.array([old_slot], dtype=np.int64)
            _wait(shrunk.Iallgather(mine, survivors), self._slow_deadline(), "shrink")
        if len(survivors) < len(self._slots):
            self._membership_changes += 1
        last_agreed, self._slots = len(self._slots), survivors
        check_quorum(last_agreed, self.size, self._agreed_lease)  # before any respawn
        self._broken = False  # a failed spawn leaves a working group of the survivors
        missing = self._original_size - self.size
        if self.respawn and missing > 0:
            self._spawn(missing)
            self._membership_changes += 1

    def _agreed_lease(self) -> bool:
        """The quorum's tie-breaker: :attr:`lease` on the new rank 0, broadcast to the rest."""
        return bool(self.broadcast(self.lease() if self.rank == 0 else None))

    def supervised(self) -> bool:
        """False once the process that started this one (``mpiexec``, or its daemon on
        another host) is gone: Open MPI 5 leaves the ranks running when ``mpiexec`` is
        SIGKILLed (re-parented). The loop checks it every step and stops when False."""
        return os.getppid() == self._parent_pid

    def close(self, *, failed: bool = False) -> None:
        """Leave the job (module doc, Exit). After a healthy run: a barrier (bounded by the
        timeout), free the communicator, ``MPI_Finalize`` (bounded); after a failure or
        timeout not recovered from, a failed barrier, or when this member's own run
        ``failed``: free only. Call it last, from the main thread (elsewhere it does not
        finalise); nothing of MPI works after it; idempotent.

        ``failed``: the others are in their next collective, whose ``Ibarrier`` the close's
        would complete; Finalize then waits for them until the alarm kills this process
        before it prints its error (a replica that could not bind its port at start)."""
        if self._comm is None:
            return
        together = not self._broken and not failed
        if together:
            try:
                with self._translated("close"):
                    _wait(self._comm.Ibarrier(), self._deadline(), "close")
            except (ReplicaFailure, CollectiveTimeout):
                together = False  # a member is gone or hangs: no waiting for it in Finalize
        self._comm.Free()
        self._comm = None
        # alarm(2) is armed by the main thread only (Python's signal rule).
        main = threading.current_thread() is threading.main_thread()
        if together and main and not _mpi().Is_finalized():
            _finalize_within(FINALIZE_TIMEOUT_SECONDS)

    def _spawn(self, missing: int) -> None:
        """Spawn ``missing`` replacements, merge them in after the survivors, hand out the
        freed slots."""
        MPI = _mpi()
        info = MPI.Info.Create()
        # Without it a spawn on hosts mpiexec filled fails ("All nodes which are allocated
        # for this job are already filled") unless mpiexec itself had --oversubscribe.
        info.Set("map_by", ":OVERSUBSCRIBE")
        command, args = self.spawn_argv[0], self.spawn_argv[1:]
        deadline = self._slow_deadline()
        try:
            with self._translated("recover (spawn)"):
                inter = _bounded(
                    lambda: self._comm.Spawn(command, args, maxprocs=missing, info=info),
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
        freed = sorted(set(range(self._original_size)) - set(self._slots.tolist()))
        self._slots = np.concatenate([self._slots, np.array(freed[:missing], dtype=np.int64)])
        self._comm.Free()
        self._use(merged)
        self._exchange_slots()

    def _exchange_slots(self) -> None:
        """Rank 0's slot table to every member (the replacements' only way to learn it)."""
        with self._translated("exchanging slots"):
            _wait(self._comm.Ibcast(self._slots, root=0), self._slow_deadline(), "slots")

    def _use(self, comm: Any) -> None:
        comm.Set_errhandler(_mpi().ERRORS_RETURN)
        self._comm = comm

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout_seconds

    def _slow_deadline(self) -> float:
        return time.monotonic() + max(self.timeout_seconds, RECOVERY_TIMEOUT_FLOOR_SECONDS)

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """MPI errors raised inside that come of a failure become :class:`ReplicaFailure`;
        after one, or a timeout, the communicator is broken until :meth:`recover` succeeds."""
        MPI = _mpi()
        try:
            yield
        except CollectiveTimeout:
            self._broken = True
            raise
        except MPI.Exception as error:
            cause = self._failure_cause(error)
            if cause is None:
                raise
            self._broken = True
            raise ReplicaFailure(f"{what}: {error.Get_error_string()}{cause}") from error

    def _failure_cause(self, error: Any) -> str | None:
        """Whether ``error`` comes of a failed member: "" for a ULFM error class, the state
        (" (communicator revoked)"...) for another error on a revoked, failed or unusable
        communicator (a non-blocking collective cut by a failure or a revoke may end in
        ``MPI_ERR_OTHER``), None otherwise. The runtime's notice of a failure may trail the
        broken connection by milliseconds: watched for up to ``FAILURE_NOTICE_SECONDS``."""
        MPI = _mpi()
        ulfm = (MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING, MPI.ERR_REVOKED)
        if error.Get_error_class() in ulfm:
            return ""
        deadline = time.monotonic() + FAILURE_NOTICE_SECONDS
        while True:
            try:
                if self._comm.Is_revoked():
                    return " (communicator revoked)"
                if self._comm.Get_failed().Get_size() > 0:
                    return " (a member failed)"
            except MPI.Exception:
                return " (communicator unusable)"
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
