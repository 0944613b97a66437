"""Data the project brings with it: the seeded synthetic stream (:mod:`.synthetic_stream`),
the embedded default source and the demo of ``produce synthetic``."""
