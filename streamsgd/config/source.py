"""The ``[source]`` section of the train configuration: where samples come from, and the
embedded synthetic stream's options (shared with ``produce synthetic``). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass

from .options import (
    INTEGER,
    NON_NEGATIVE_FLOAT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    PROBABILITY,
    Section,
    option,
)


@dataclass(frozen=True, kw_only=True)
class SyntheticStreamOptions(Section):
    """The embedded synthetic stream (train's synthetic source and ``produce synthetic``)."""

    seed: int = option(0, "synthetic: random seed", INTEGER)
    label_noise: float = option(0.0, "synthetic: probability of flipping a label", PROBABILITY)
    drift: float = option(
        0.0, "synthetic: rotation of the true weights, radians per 100k samples", NON_NEGATIVE_FLOAT
    )


SOURCE_KINDS = ("auto", "synthetic", "file", "kafka")


@dataclass(frozen=True, kw_only=True)
class _SourceChoice(Section):
    source: str = option(
        "auto",
        "where samples come from; auto = kafka when --bootstrap-servers is set, "
        "else the embedded synthetic stream",
        choices=SOURCE_KINDS,
    )
    path: str | None = option(None, "JSON Lines file for --source file ('-' = stdin)")


@dataclass(frozen=True, kw_only=True)
class SourceConfig(SyntheticStreamOptions, _SourceChoice):
    """Where samples come from (fields in this order: source, path, the synthetic stream's,
    then these)."""

    max_samples: int | None = option(None, "stop after this many samples in total", POSITIVE_INT)
    max_record_bytes: int = option(16 * 1024 * 1024, "reject larger records", POSITIVE_INT)
    max_sample_weight: float = option(
        1000.0,
        "reject importance weights above this (one record counts as at most this many samples)",
        POSITIVE_FLOAT,
    )
