"""The typing promises: py.typed and a stub of the compiled module that names exactly what the
module has (so a new binding without a stub entry, or a stale entry, fails here)."""

import ast
import importlib.resources
import pathlib

import fastrand
from fastrand import _C

AOT_ONLY = {"fill_cuda", "fill_cuda_state", "fill_cuda_box", "probe_cuda"}


def _stub_names():
    stub = pathlib.Path(fastrand.__file__).with_name("_C.pyi")
    tree = ast.parse(stub.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_stub_matches_the_compiled_module():
    public = {n for n in dir(_C) if not n.startswith("_")} | {"__version__"}
    stub = _stub_names()
    expected = stub if _C.CUDA else stub - AOT_ONLY
    assert public == expected, (
        f"in _C but not in _C.pyi: {sorted(public - expected)}; "
        f"in _C.pyi but not in _C: {sorted(expected - public)}"
    )


def test_package_is_marked_typed():
    assert (importlib.resources.files("fastrand") / "py.typed").is_file()
    assert (importlib.resources.files("fastrand") / "_C.pyi").is_file()
