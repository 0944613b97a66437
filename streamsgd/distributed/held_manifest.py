"""The step manifest entries a replica holds until rank 0 has them on disk
(docs/design.md#scaling-out, "A manifest that never loses a step").

Every replica records the entry of every step it applies
(:mod:`streamsgd.distributed.step_manifest`). Rank 0 appends its entries to the manifest file
(fsync) before each checkpoint; the others keep theirs until rank 0 *confirms*, in a later step's
exchange (the ``durable`` slot), that the file is durable through a step. Whichever replica is rank
0 after a failure therefore holds every entry the file may lack. Before it writes, it checks the
file: the file must hold the start entry and reach the step before its first held entry (``base``);
entries past ``base`` (steps a former rank 0 wrote and the survivors rolled back) are dropped, and
the held ones appended. A file that ends before ``base`` has a gap no replica can fill (another
host's directory, a file removed): the job stops with :class:`ManifestGap`. A new rank 0 whose
directory never saw the lineage's writer (another host's disk) does not check the file: it
starts it over at the agreed step (a base entry and the agreed state beside it,
:mod:`streamsgd.distributed.writer`).
"""

from __future__ import annotations

from typing import Any

from ..training.ports import ManifestLog
from .collective import ReplicaStop
from .step_manifest import begins, last_step

NOTHING_DURABLE = -1


class ManifestGap(ReplicaStop):
    """The manifest file lacks steps that no replica holds any more."""


class PendingManifest:
    """The entries of one replica not yet confirmed durable, and what is confirmed.

    Attributes
    ----------
    entries : list of dict
        Start and step entries, in step order, not yet confirmed.
    durable : int
        The file is durable through this step (``NOTHING_DURABLE``: not known).
    base : int or None
        Before the next append, drop the file's entries after this step (-1: all of them, a
        fresh job); None when the file is known to end where the held entries begin.
    last : dict or None
        The entry of the last step this replica took (confirmed or not): a checkpoint
        carries it, see :meth:`resuming`.
    """

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.durable = NOTHING_DURABLE
        self.base: int | None = None
        self.last: dict[str, Any] | None = None

    @classmethod
    def resuming(cls, state: dict[str, Any] | None) -> PendingManifest:
        """What a job (re)started from checkpoint ``state`` holds: the checkpoint's own step
        entry (``state["manifest_entry"]``), so that the file's entry for the checkpoint's
        step k is rewritten from it. The file may hold another lineage's step k: a rank 0
        checkpointed k and died, the survivors rolled k back, took k again differently, and
        their new rank 0 appended it (dropping the old k) but died before its checkpoint —
        without this, the old checkpoint would be paired with the new step k (issue 20)."""
        held = cls()
        entry = None if state is None else state.get("manifest_entry")
        if state is not None and entry is not None and entry["step"] == state["global_step"]:
            held.adopt({"entries": [entry], "durable": int(entry["step"]) - 1}, int(entry["step"]))
        return held

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        if "step" in entry:
            self.last = entry

    def confirmed(self, through: int) -> None:
        """Rank 0 confirmed the file durable through step ``through``: drop those entries."""
        if through <= self.durable:
            return
        self.durable = through
        self.entries = [e for e in self.entries if "step" in e and int(e["step"]) > through]

    def slot(self) -> int:
        """The value rank 0 puts in the exchange's ``durable`` slot (0: nothing known)."""
        return self.durable + 1

    def snapshot(self) -> dict[str, Any]:
        return {"entries": list(self.entries), "durable": self.durable, "last": self.last}

    def adopt(self, snapshot: dict[str, Any], step: int) -> None:
        """The entries of the replica whose state the survivors agreed on, at ``step``."""
        self.entries = list(snapshot["entries"])
        self.durable = int(snapshot["durable"])
        steps_held = [e for e in self.entries if "step" in e]
        self.last = snapshot.get("last") or (steps_held[-1] if steps_held else None)
        steps = [int(e["step"]) for e in self.entries if "step" in e]
        if any("start" in e for e in self.entries):
            self.base = NOTHING_DURABLE  # a fresh job: nothing in the file is ours
        else:
            self.base = steps[0] - 1 if steps else step

    def verify(self, log: ManifestLog, where: str, allow_missing: bool = False) -> str | None:
        """Rank 0 after a (re)start: None when the file reaches ``base`` (or is empty and
        ``allow_missing``), else the error."""
        if self.base is None or self.base == NOTHING_DURABLE:
            return None
        entries = log.read()
        has_start = begins(entries)  # a start entry, or the base of a file started over
        end = last_step(entries)
        if (has_start and end >= self.base) or (allow_missing and not entries):
            self.durable = max(self.durable, self.base)
            return None
        reach = f"ends at step {end}" if has_start else "has no start entry"
        return (
            f"the step manifest {where} {reach}, but the replicas hold entries from step "
            f"{self.base + 1} on: steps {end + 1}..{self.base} are lost (was rank 0's "
            "checkpoint directory on another host, or the file removed?); refusing to go on "
            "with a manifest that has a gap"
        )

    def rebased(self, step: int) -> None:
        """The file was started over at ``step`` (:meth:`ManifestFile.rebase`): the entries
        held through it are covered by its base state."""
        self.entries = [e for e in self.entries if "step" in e and int(e["step"]) > step]
        self.durable, self.base, self.last = step, None, None

    def write(self, log: ManifestLog, step: int) -> None:
        """Rank 0: truncate what is stale, append the held entries (fsync); durable through
        ``step`` afterwards. Raises OSError, and then truncates first at the next attempt
        (a failed append may have left part of its lines)."""
        try:
            if self.base is not None:
                log.truncate(self.base)
                self.base = None
            if self.entries:
                log.append(self.entries)
        except OSError:
            self.base = self.durable
            raise
        self.entries = []
        self.durable = max(self.durable, step)
