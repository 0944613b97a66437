"""Command line: ``streamsgd train | evaluate | inspect | produce``, and the composition root.

One module per command (:mod:`.train`, :mod:`.evaluate`, :mod:`.inspect`, :mod:`.produce`);
the parsers are generated from :mod:`streamsgd.config` (:mod:`.parser`); :func:`build_service`
wires a service from a configuration for the CLI, bench/ and tests (:mod:`.build`).
"""

import gc as _gc

_collecting = _gc.isenabled()
_gc.disable()  # as in streamsgd/__init__.py: no collection while the CLI's modules import
try:
    from .build import Resources, build_model, build_service, serve_http, service_config
    from .errors import UsageError
    from .main import entry_point, main
    from .parser import build_parser
finally:
    if _collecting:
        _gc.enable()

__all__ = [
    "Resources",
    "UsageError",
    "build_model",
    "build_parser",
    "build_service",
    "entry_point",
    "main",
    "serve_http",
    "service_config",
]
