"""What replicas exchange per step, besides the model's sums: one float64 vector, reduced by
one allreduce-sum (:mod:`streamsgd.distributed.collective`).

Layout (P partitions in a fixed order, N replicas)::

    [ model sums (core.reduction) | rejected, stop, exhausted, checkpoint, undelivered,
      durable, repartition | exchange seconds of the previous step, one slot per rank (N) |
      digest of θ, one slot per rank (N) | per partition: owners, offset, skip_samples (3 P) ]

Every slot is a sum over replicas. A replica writes its own values and zeros elsewhere: the
partitions it owns get owner 1 and their next position (the one after the last sample of its
contribution); a flag is 1 where the replica raises it. After the sum each partition must
have exactly one owner — otherwise two replicas read it (split brain) or nobody does, and
:meth:`ExchangeLayout.unpack` raises :class:`OwnershipConflict` before anything is applied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..core.types import FloatArray
from ..training.buffer import Position

CONTROL = (
    "rejected",
    "stop",
    "exhausted",
    "checkpoint",
    "undelivered",
    "durable",
    "repartition",
)
DIGEST_BITS = 52  # a digest slot holds an integer below 2**52: exact in a float64 sum


class OwnershipConflict(RuntimeError):
    """A step in which some partition had no owner or more than one (split brain)."""


@dataclass(frozen=True)
class Control:
    """The control slots of one replica, or (after the sum) of all.

    Attributes
    ----------
    rejected : int
        Records rejected (dead-lettered) since the previous step.
    stop : int
        Replicas asking to stop after this step (SIGTERM, ``max_samples``).
    exhausted : int
        Replicas whose bounded source is exhausted and whose buffer is empty.
    checkpoint : int
        1 when rank 0 checkpoints after this step.
    undelivered : int
        Replicas with dead letters whose delivery failed (no checkpoint may then cover them).
    durable : int
        Rank 0's step manifest is durable (fsynced) through step ``durable − 1`` (0: not
        known): the other replicas may drop their pending entries up to that step.
    repartition : int
        1 when rank 0 found a changed partition list: after this step every replica
        receives it by broadcast and reassigns (:meth:`ReplicaAgreement._repartition`).
    """

    rejected: int = 0
    stop: int = 0
    exhausted: int = 0
    checkpoint: int = 0
    undelivered: int = 0
    durable: int = 0
    repartition: int = 0


@dataclass(frozen=True)
class Exchange:
    """One reduced step: the model's summed sums, the summed control slots, the exchange
    time of every rank in the previous step, every rank's digest of θ before the step (0
    where a rank gave none) and every partition's next position."""

    sums: FloatArray
    control: Control
    exchange_seconds: FloatArray
    positions: dict[str, Position]
    digests: FloatArray


@dataclass(frozen=True)
class ExchangeLayout:
    """Where everything sits in the vector of one job (the same on every replica)."""

    sums_size: int
    world_size: int
    partitions: tuple[str, ...]

    @property
    def size(self) -> int:
        return self.sums_size + len(CONTROL) + 2 * self.world_size + 3 * len(self.partitions)

    def pack(
        self,
        sums: FloatArray,
        control: Control,
        rank: int,
        exchange_seconds: float,
        owned: dict[str, Position],
        digest: int = 0,
    ) -> FloatArray:
        """This replica's vector: its sums, flags, last exchange time, the digest of its θ
        (:func:`theta_digest`, 0 for none) and its owned positions."""
        vector = np.zeros(self.size)
        vector[: self.sums_size] = sums
        start = self.sums_size
        vector[start : start + len(CONTROL)] = [getattr(control, name) for name in CONTROL]
        start += len(CONTROL)
        vector[start + rank] = exchange_seconds
        start += self.world_size
        vector[start + rank] = digest
        start += self.world_size
        index = {p: i for i, p in enumerate(self.partitions)}
        for partition, position in owned.items():
            slot = start + 3 * index[partition]
            vector[slot : slot + 3] = (1.0, position.offset, position.skip_samples)
        return vector

    def unpack(self, vector: FloatArray) -> Exchange:
        """The reduced step; raises :class:`OwnershipConflict` unless every partition has
        exactly one owner."""
        start = self.sums_size
        control = Control(*(int(v) for v in vector[start : start + len(CONTROL)]))
        start += len(CONTROL)
        seconds = vector[start : start + self.world_size].copy()
        start += self.world_size
        digests = vector[start : start + self.world_size].copy()
        start += self.world_size
        slots = vector[start:].reshape(-1, 3)
        owners = slots[:, 0]
        wrong = [f"{p}: {int(n)}" for p, n in zip(self.partitions, owners, strict=True) if n != 1]
        if wrong:
            counts = ", ".join(wrong)
            raise OwnershipConflict(
                f"partitions without exactly one owner in this step ({counts}): refusing to "
                "apply it"
            )
        positions = {
            p: Position(int(offset), int(skip))
            for p, (_, offset, skip) in zip(self.partitions, slots, strict=True)
        }
        return Exchange(vector[: self.sums_size], control, seconds, positions, digests)


def theta_digest(theta: FloatArray) -> int:
    """A digest of θ's bytes that a float64 slot carries exactly: 1 ≤ digest < 2**52 (a
    replica that computed one bit differently gives another one, with probability
    1 − 2**−52)."""
    raw = hashlib.blake2b(np.ascontiguousarray(theta, dtype="<f8").tobytes(), digest_size=8)
    return (int.from_bytes(raw.digest(), "little") >> (64 - DIGEST_BITS)) | 1


def waits(exchange_seconds: FloatArray) -> FloatArray:
    """How long each rank waited for the slowest one: its exchange time minus the shortest
    (the slowest replica arrives last and waits least; what it spent is the transfer)."""
    return exchange_seconds - exchange_seconds.min() if len(exchange_seconds) else exchange_seconds


def sample_share(remaining: int, index: int, n_active: int) -> int:
    """Replica ``index`` of ``n_active``'s share of ``remaining`` samples (the shares sum to
    ``remaining`` exactly, so a global sample limit is never overshot)."""
    if n_active <= 0 or index >= n_active:
        return 0
    return remaining // n_active + (1 if index < remaining % n_active else 0)
