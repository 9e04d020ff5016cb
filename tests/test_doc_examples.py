"""The examples in the public docstrings run and show what they say (the API reference of the
documentation site, docs/api/, prints them).

Each example is a doctest: its output is compared as text, so the examples print shapes, dtypes,
offsets and bit comparisons, never float values.
"""

import doctest
import importlib

import pytest

# the modules whose docstrings the API reference shows
MODULES = [
    "fastrand",
    "fastrand._api",
    "fastrand._slice",
    "fastrand._generator",
    "fastrand._graph",
    "fastrand._brownian",
    "fastrand._torch_patch",
    "fastrand._diffusers_patch",
    "fastrand._determinism",
    "fastrand._selftest",
    "fastrand._cuda._backend",
    "fastrand.functional",
    "fastrand.numpy",
    "fastrand.distributed",
    "fastrand.reference",
    "fastrand.comfyui",
]

# the main entry points each show at least one example
REQUIRED = {
    "fastrand._api.randn_tensor",
    "fastrand._generator.Generator",
    "fastrand._slice.randn_slice",
    "fastrand.functional.randn",
    "fastrand.numpy.randn",
}


def _examples(name):
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    runner = doctest.DocTestRunner()
    report = []
    for test in _examples(name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_main_entry_points_have_examples():
    found = {t.name for name in MODULES for t in _examples(name)}
    assert REQUIRED <= found, sorted(REQUIRED - found)
