"""randn_tensor and friends: diffusers semantics, dtype/device/layout policy, refused input."""

import argparse
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import bits, ref_bits

import fastrand

SHAPE = (3, 4, 5, 6)


def test_list_of_generators_draws_rows():
    gens = [fastrand.Generator(s) for s in (1, 2, 3)]
    out = fastrand.randn_tensor(SHAPE, generator=gens)
    assert out.shape == SHAPE
    for i, s in enumerate((1, 2, 3)):
        row = fastrand.randn_tensor((1,) + SHAPE[1:], generator=fastrand.Generator(s))
        assert np.array_equal(bits(out[i : i + 1]), bits(row))
    # each generator advanced by one row
    assert all(g.get_offset() == 4 * 5 * 6 for g in gens)


def test_list_of_torch_generators_mixed():
    gens = [torch.Generator().manual_seed(7), fastrand.Generator(8)]
    out = fastrand.randn_tensor((2, 5), generator=gens, dtype=torch.float64)
    # a torch generator's sequence is stream 2^63 (docs/torch-generators.md)
    assert np.array_equal(bits(out[0]), ref_bits("normal", 7, 1 << 63, 0, 5, "float64"))
    assert np.array_equal(bits(out[1]), ref_bits("normal", 8, 0, 0, 5, "float64"))


def test_list_of_one_generator_is_unwrapped():
    a = fastrand.randn_tensor(SHAPE, generator=[fastrand.Generator(4)])
    b = fastrand.randn_tensor(SHAPE, generator=fastrand.Generator(4))
    assert np.array_equal(bits(a), bits(b))


def test_list_shorter_than_batch_is_refused():
    with pytest.raises(ValueError, match="generator"):
        fastrand.randn_tensor(SHAPE, generator=[fastrand.Generator(1), fastrand.Generator(2)])


def test_list_longer_than_batch_uses_the_first():
    gens = [fastrand.Generator(s) for s in range(5)]
    out = fastrand.randn_tensor((2, 3), generator=gens)
    assert np.array_equal(bits(out[1]), ref_bits("normal", 1, 0, 0, 3))
    assert gens[4].get_offset() == 0


def test_devices_and_defaults():
    g = lambda: fastrand.Generator(0)
    a = fastrand.randn_tensor(SHAPE, generator=g())
    assert a.device.type == "cpu" and a.dtype == torch.float32 and a.shape == SHAPE
    for dev in ("cpu", torch.device("cpu")):
        assert np.array_equal(
            bits(fastrand.randn_tensor(SHAPE, generator=g(), device=dev)), bits(a)
        )
    assert np.array_equal(bits(fastrand.randn_tensor(list(SHAPE), generator=g())), bits(a))
    assert np.array_equal(bits(fastrand.randn_tensor(torch.Size(SHAPE), generator=g())), bits(a))
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert fastrand.randn_tensor(SHAPE, generator=g()).dtype == torch.float64
    finally:
        torch.set_default_dtype(prev)
    assert fastrand.randn_tensor((), generator=g()).shape == ()
    assert fastrand.randn_tensor((0, 3), generator=g()).shape == (0, 3)


def test_torch_style_entry_points():
    g = lambda: fastrand.Generator(6)
    ref = fastrand.randn_tensor((2, 3), generator=g())
    for out in (
        fastrand.randn(2, 3, generator=g()),
        fastrand.randn((2, 3), generator=g()),
        fastrand.randn([2, 3], generator=g()),
        fastrand.randn_like(ref, generator=g()),
    ):
        assert out.shape == (2, 3) and np.array_equal(bits(out), bits(ref))
    like = fastrand.randn_like(torch.zeros(4, dtype=torch.float16), generator=g())
    assert like.dtype == torch.float16
    assert (
        fastrand.randn_like(torch.zeros(4), generator=g(), dtype=torch.float64).dtype
        == torch.float64
    )
    u = fastrand.rand(10000, generator=g())
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert np.array_equal(bits(u), ref_bits("uniform", 6, 0, 0, 10000))
    ul = fastrand.rand_like(torch.zeros(2, 2, dtype=torch.bfloat16), generator=g())
    assert ul.dtype == torch.bfloat16 and ul.shape == (2, 2)
    w = fastrand.random_words(2, 5, generator=g())
    assert w.dtype == torch.int32 and w.shape == (2, 5)
    assert np.array_equal(bits(w).ravel(), ref_bits("words", 6, 0, 0, 10))
    if hasattr(torch, "uint32"):
        wu = fastrand.random_words(10, generator=g(), dtype=torch.uint32)
        assert wu.dtype == torch.uint32
        assert np.array_equal(bits(wu.view(torch.int32)), ref_bits("words", 6, 0, 0, 10))


def test_build_info_and_cli():
    info = fastrand.build_info()
    for key in ("version", "stream_version", "cuda", "cuda_archs", "cpu_isa"):
        assert key in info
    assert info["stream_version"] == 1 and "scalar" in info["cpu_isa"]
    assert isinstance(info["cuda"], bool)
    out = subprocess.run(
        [sys.executable, "-m", "fastrand", "info"], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out)["stream_version"] == 1
    bad = subprocess.run(
        [sys.executable, "-m", "fastrand", "nonsense"], capture_output=True, text=True
    )
    assert bad.returncode == 2


# ---- issue 21 item 10: the CLI's help follows argparse conventions ----------------------------
COMMANDS = ("info", "selftest", "warmup", "help")


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["help"]])
def test_cli_help_goes_to_stdout_and_exits_0(argv, capsys):
    from fastrand.__main__ import main

    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: python -m fastrand") and err == ""
    for command in COMMANDS:  # every command listed with its description
        assert re.search(rf"^\s+{command}\s+\S", out, re.M), (command, out)


@pytest.mark.parametrize("argv", [["warmup", "--help"], ["warmup", "-h"], ["help", "warmup"]])
def test_cli_command_help(argv, capsys):
    from fastrand.__main__ import main

    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: python -m fastrand warmup") and err == ""
    assert re.search(r"--arch ARCH\s+\S", out), out  # the option, described


def test_cli_every_option_is_described():
    from fastrand.__main__ import _parser

    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(commands.choices) == sorted(COMMANDS)
    described = {a.dest: a.help for a in commands._choices_actions}
    for name, sub in commands.choices.items():
        assert described.get(name), name
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_cli_usage_errors_exit_2(capsys):
    from fastrand.__main__ import main

    for argv in ([], ["nonsense"], ["info", "extra"], ["help", "nonsense"]):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("usage: python -m fastrand"), argv
    run = subprocess.run([sys.executable, "-m", "fastrand", "-h"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("usage:") and run.stderr == ""


REFUSED = [
    (dict(shape=(2, -1)), ValueError, "shape"),
    (dict(shape=(2, 1.5)), TypeError, "shape"),
    (dict(shape="23"), TypeError, "shape"),
    (dict(shape=5), TypeError, "shape"),
    (dict(shape=(True, 2)), TypeError, "shape"),
    (dict(shape=(2**40, 2**40)), ValueError, "shape"),
    (dict(dtype=torch.int32), ValueError, "dtype"),
    (dict(dtype=torch.bool), ValueError, "dtype"),
    (dict(dtype=torch.complex64), ValueError, "dtype"),
    (dict(dtype="float32"), TypeError, "dtype"),
    (dict(layout=torch.sparse_coo), ValueError, "layout"),
    (dict(layout="strided"), TypeError, "layout"),
    (dict(device="nonsense"), ValueError, "device"),
    (dict(device=1.0), TypeError, "device"),
    (dict(generator=5), TypeError, "generator"),
    (dict(generator=[fastrand.Generator(0), "x"]), TypeError, "generator"),
    (dict(generator=[]), ValueError, "generator"),
]


@pytest.mark.parametrize("kwargs,exc,name", REFUSED)
def test_refused_input(kwargs, exc, name):
    args = dict(shape=(2, 3), generator=fastrand.Generator(0))
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        fastrand.randn_tensor(**args)


def test_refused_cuda_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="device"):
        fastrand.randn_tensor((2,), device="cuda")


def test_refused_other_entry_points():
    with pytest.raises(TypeError, match="input"):
        fastrand.randn_like([1, 2])
    with pytest.raises(ValueError, match="dtype"):
        fastrand.random_words(3, dtype=torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        fastrand.rand(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="size"):
        fastrand.randn(-1)
    with pytest.raises(ValueError, match="generator"):
        fastrand.randn_tensor((), generator=[fastrand.Generator(0), fastrand.Generator(1)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_repeated_calls_take_the_fast_path_and_stay_exact(dtype):
    """randn_tensor remembers validated (shape, device, dtype) calls; the remembered path must
    give the same stream (and float64's even-offset rule) as the first, fully checked call."""
    from fastrand import _api

    name = str(dtype).split(".")[-1]
    shape = (2, 3, 7)
    n = 2 * 3 * 7
    for device in (None, "cpu", torch.device("cpu")):
        g = fastrand.Generator(77, offset=5)  # odd: float64 skips to an even position
        first = fastrand.randn_tensor(shape, generator=g, device=device, dtype=dtype)
        assert (shape, device, dtype) in _api._FAST_NORMAL
        offset = g.get_offset()
        second = fastrand.randn_tensor(shape, generator=g, device=device, dtype=dtype)
        assert second.shape == shape and second.dtype == dtype and second.device.type == "cpu"
        assert np.array_equal(bits(first).ravel(), ref_bits("normal", 77, 0, 5, n, name))
        assert np.array_equal(bits(second).ravel(), ref_bits("normal", 77, 0, offset, n, name))
        assert g.get_offset() == fastrand.Generator(77, offset=offset).get_offset() + (
            2 * n if dtype == torch.float64 else n
        )
    empty = fastrand.randn_tensor((0, 3), generator=g, dtype=dtype)
    assert fastrand.randn_tensor((0, 3), generator=g, dtype=dtype).shape == empty.shape == (0, 3)


def test_fast_path_does_not_skip_checks():
    """Values that compare equal to a remembered call's arguments but are refused by the checks
    (bool or float sizes, bool or float devices) are still refused."""
    g = fastrand.Generator(1)
    fastrand.randn_tensor((2, 3), generator=g, dtype=torch.float32)
    fastrand.randn_tensor((2, 3), generator=g, dtype=torch.float32)
    with pytest.raises(TypeError, match="shape"):
        fastrand.randn_tensor((2.0, 3), generator=g, dtype=torch.float32)
    with pytest.raises(TypeError, match="shape"):
        fastrand.randn_tensor((True, 3), generator=g, dtype=torch.float32)
    fastrand.randn_tensor((1, 3), generator=g, dtype=torch.float32)
    with pytest.raises(TypeError, match="shape"):
        fastrand.randn_tensor((True, 3), generator=g, dtype=torch.float32)
    with pytest.raises(TypeError, match="device"):
        fastrand.randn_tensor((2, 3), generator=g, device=False, dtype=torch.float32)
    with pytest.raises(TypeError, match="device"):
        fastrand.randn_tensor((2, 3), generator=g, device=0.0, dtype=torch.float32)
    with pytest.raises(ValueError, match="layout"):
        fastrand.randn_tensor((2, 3), generator=g, dtype=torch.float32, layout=torch.sparse_coo)
    assert g.get_offset() == 6 + 6 + 3  # refused calls did not advance the generator
