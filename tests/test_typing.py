"""The typing promises: py.typed and a stub of the compiled module that names exactly what the
module has (so a new binding without a stub entry, or a stale entry, fails here)."""

import ast
import importlib.resources
import pathlib

import pytest
from conftest import PKG_PARENT

import fastrand
from fastrand import _C

AOT_ONLY = {
    "fill_cuda",
    "fill_cuda_state",
    "fill_cuda_box",
    "probe_cuda",
    "cuda_prepare",
    "cuda_versions",
}


def _stub_names():
    stub = pathlib.Path(fastrand.__file__).with_name("_C.pyi")
    tree = ast.parse(stub.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
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


# a caller's code, checked by mypy against this fastrand: the two bad calls (lines 5 and 6) are
# errors; an unannotated Generator.__init__ (issue 21 item 13) accepted anything
_CALLER = """\
from fastrand import Generator

Generator(1, offset=2, stream=3)
Generator(None, stream=2**63)
Generator("1")
Generator(1.5, offset=2)
"""


def test_generator_init_is_typed_for_callers(tmp_path):
    api = pytest.importorskip("mypy.api")
    (tmp_path / "caller.py").write_text(_CALLER)
    # torch and the other heavy or optional packages are skipped (Any): this checks fastrand's
    # annotations, in a second or two
    # an installed fastrand (site-packages) is found by mypy itself, which refuses site-packages
    # on its search path; a source tree is named
    path = "" if "-packages" in PKG_PARENT else f"mypy_path = {PKG_PARENT}\n"
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\n{path}follow_imports = silent\n"
        "[mypy-torch.*,numpy.*,diffusers.*,torchsde.*,cuda.*,ml_dtypes.*,scipy.*]\n"
        "follow_imports = skip\nignore_missing_imports = True\n"
    )
    out, err, status = api.run(
        ["--config-file", str(tmp_path / "mypy.ini"), "--cache-dir", str(tmp_path / "cache"),
         str(tmp_path / "caller.py")]
    )  # fmt: skip
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert [e.split(":")[1] for e in errors] == ["5", "6"], out + err
    assert all("[arg-type]" in e for e in errors), out
