"""The examples in the docstrings of the three most used public objects run as tests: the
model (the package's docstring), the configuration builder and the decoder. A changed
behaviour breaks its example here, so the documentation cannot drift from the code."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

import streamsgd
import streamsgd.codec.decoder
import streamsgd.config.train

MODULES = [streamsgd, streamsgd.config.train, streamsgd.codec.decoder]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.attempted > 0, f"{module.__name__} has no example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
