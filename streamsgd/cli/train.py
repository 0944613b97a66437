"""``streamsgd train``: build the service from the configuration, serve HTTP, run until the
stream ends, ``--max-samples`` is reached or SIGTERM/SIGINT asks to stop."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from ..checkpoint import CheckpointError
from ..config import TrainConfig, train_config, train_options
from ..distributed.collective import CollectiveTimeout, ReplicaStop, Unsupervised
from ..training.ports import SourceFailed
from ..training.trainer import FinalCheckpointError, progressive_log_loss
from .build import build_service, serve_http
from .errors import UsageError
from .layers import render_toml

log = logging.getLogger("streamsgd")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of a parsed ``train`` command line."""
    return train_config({spec.name: getattr(args, spec.name) for _, spec in train_options()})


def print_config(config: TrainConfig) -> int:
    """``--print-config``: the effective configuration as TOML on stdout, secrets masked."""
    sys.stdout.write(render_toml(config))
    return 0


def run(config: TrainConfig) -> int:
    """Train as ``config`` says; returns the exit code: 0, or 1 when the run's final
    checkpoint could not be written (the model of the run would be lost) or the source
    can deliver nothing more (:class:`~streamsgd.training.ports.SourceFailed`)."""
    service, resources = build_service(config)
    try:
        serve_http(service, resources, config)
    except BaseException:
        resources.failed.set()
        resources.close(failed=True)  # a replica leaves at once, then says why (the caller)
        raise

    def stop(signum: int, _frame: Any) -> None:
        log.info(
            "received %s: finishing the current step, checkpointing, committing",
            signal.Signals(signum).name,
        )
        service.request_stop()

    # SIGUSR1 too: mpiexec forwards it to every replica (it kills them on SIGTERM).
    stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
    previous = {s: signal.signal(s, stop) for s in stop_signals}
    raised = False  # an error the caller prints, after close(): a replica leaves at once
    try:
        service.run()
        # Before closing: a replica's close() may end the process (MPI_Finalize bounded).
        log.info(
            "done: %d samples in %d updates, progressive log loss %.6f, %d records rejected",
            service.model.n_samples_seen,
            service.model.n_updates,
            progressive_log_loss(service.totals, service.model),
            service.totals.records_rejected,
        )
    except CheckpointError as exc:
        resources.failed.set()
        raised = True
        raise UsageError(str(exc)) from None
    except (
        FinalCheckpointError,
        CollectiveTimeout,
        Unsupervised,
        SourceFailed,
        ReplicaStop,
    ) as exc:
        resources.failed.set()
        # A replica whose source failed (a refused login) ends alone: no barrier, no MPI
        # Finalize, which after a failure can hang until the alarm kills the process, a
        # signal that mpiexec --with-ft ulfm tolerates (the job then exits 0).
        raised = isinstance(exc, SourceFailed)
        print(f"streamsgd: error: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        resources.failed.set()
        raised = True
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        resources.close(failed=raised)
    return 0
