"""CUDA backend: bit-identical to the CPU and to the NumPy reference. Skipped without a GPU."""

import os
import random

import numpy as np
import pytest
import torch
from conftest import TORCH_DTYPES, bits, draw, ref_bits

import fastrand
from fastrand import _C

U64 = 1 << 64
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
KINDS = (
    [("normal", d) for d in TORCH_DTYPES]
    + [("uniform", d) for d in TORCH_DTYPES]
    + [("words", "float32")]
)


def test_cuda_kernel_is_built():
    if os.environ.get("FASTRAND_REQUIRE_CUDA_KERNEL") == "1" or _C.CUDA:
        assert fastrand.build_info()["cuda"] is True
    else:
        pytest.skip("built without the CUDA kernel: CUDA targets use the CPU copy path")


@pytest.mark.parametrize("kind,dtype", KINDS)
def test_cuda_equals_cpu_and_reference(kind, dtype):
    rng = random.Random(hash((kind, dtype)) & 0xFFFF)
    sizes = [0, 1, 2, 3, 4, 5, 7, 64, 1023, 4097, (1 << 20) + 3, 3_000_001]
    for n in sizes:
        for _ in range(3):
            seed = rng.randrange(U64)
            stream = rng.choice([0, 1, rng.randrange(U64)])
            offset = rng.choice([0, 1, 2, 3, rng.randrange(U64), U64 - 3])
            gpu = draw(kind, n, seed, stream, offset, dtype, device="cuda")
            assert gpu.device.type == "cuda"
            cpu = draw(kind, n, seed, stream, offset, dtype)
            assert np.array_equal(bits(gpu), bits(cpu)), (kind, dtype, n, seed, stream, offset)
            if n <= 5000:
                want = ref_bits(kind, seed, stream, offset, n, dtype)
                assert np.array_equal(bits(gpu), want)


def test_torch_cuda_generator_reads_like_fastrand_generator():
    for seed in (0, 123, 2**64 - 1):
        tg = torch.Generator("cuda").manual_seed(seed)
        fg = fastrand.Generator(seed, stream=1 << 63)  # a torch generator's sequence
        for dt in (torch.float32, torch.float64, torch.bfloat16):
            for shape in ((1, 4, 8, 8), (5,), (2, 3)):
                a = fastrand.randn_tensor(shape, generator=tg, device="cuda", dtype=dt)
                b = fastrand.randn_tensor(shape, generator=fg, device="cpu", dtype=dt)
                assert np.array_equal(bits(a), bits(b))
    # a CUDA generator may fill a CPU tensor and vice versa
    a = fastrand.randn_tensor((3, 3), generator=torch.Generator("cuda").manual_seed(5))
    b = fastrand.randn_tensor((3, 3), generator=torch.Generator().manual_seed(5), device="cuda")
    assert a.device.type == "cpu" and b.device.type == "cuda"
    assert np.array_equal(bits(a), bits(b))


def test_list_of_generators_on_cuda_odd_rows():
    shape = (3, 5, 7)  # odd rows: unaligned row pointers take the scalar-store path
    gens = lambda: [fastrand.Generator(s, offset=s) for s in (1, 2, 3)]
    a = fastrand.randn_tensor(shape, generator=gens(), device="cuda", dtype=torch.float16)
    b = fastrand.randn_tensor(shape, generator=gens(), dtype=torch.float16)
    assert np.array_equal(bits(a), bits(b))


def test_non_default_stream_and_device_guard():
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        a = draw("normal", 100_003, 9, 0, 1, device="cuda")
    s.synchronize()
    assert np.array_equal(bits(a), bits(draw("normal", 100_003, 9, 0, 1)))
    if torch.cuda.device_count() > 1:
        torch.cuda.set_device(0)
        b = draw("normal", 100_003, 9, 0, 1, device="cuda:1")
        assert b.device == torch.device("cuda:1")
        assert torch.cuda.current_device() == 0
        assert np.array_equal(bits(b), bits(a))


def test_cuda_graph_capture():
    shape = (1, 4, 64, 64)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up outside capture
        fastrand.randn_tensor(shape, generator=fastrand.Generator(1), device="cuda")
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        out = fastrand.randn_tensor(
            shape, generator=fastrand.Generator(3, offset=8), device="cuda", dtype=torch.bfloat16
        )
    out.zero_()
    g.replay()
    torch.cuda.synchronize()
    want = fastrand.randn_tensor(
        shape, generator=fastrand.Generator(3, offset=8), dtype=torch.bfloat16
    )
    assert np.array_equal(bits(out), bits(want))


def test_more_than_2_31_elements():
    free, _ = torch.cuda.mem_get_info()
    n = (1 << 31) + 5
    if free < 3 * n * 2:
        pytest.skip("not enough GPU memory for a 2^31-element float16 draw")
    g = fastrand.randn(
        n, generator=fastrand.Generator(17, offset=1), device="cuda", dtype=torch.float16
    )
    for start in (0, (1 << 31) - 1000, n - 1000):
        want = fastrand.randn(
            1000, generator=fastrand.Generator(17, offset=1 + start), dtype=torch.float16
        )
        assert np.array_equal(bits(g[start : start + 1000]), bits(want)), start
    del g
    torch.cuda.empty_cache()


def test_cuda_launch_error_is_an_exception():
    if not _C.CUDA:
        pytest.skip("no CUDA kernel in this build")
    with pytest.raises(RuntimeError):
        # a device index that does not exist makes the device guard fail
        _C.fill_cuda(1 << 20, 4, _C.KIND_NORMAL, _C.DT_FLOAT32, 0, 0, 0, 9999, 0)
    # and the failure does not stick to the next, valid launch
    a = draw("normal", 1000, 3, device="cuda")
    assert np.array_equal(bits(a), bits(draw("normal", 1000, 3)))


def test_every_launch_shape_gives_the_same_bits():
    if not _C.CUDA:
        pytest.skip("no CUDA kernel in this build")
    # sizes whose whole blocks are not a multiple of 2 or 4 (the multi-block steps' remainder)
    cases = [(n, off) for n in (0, 1, 5, 4099, 4109, 4114, 1_000_003) for off in (0, 1, 2, 7)]
    try:
        for v in range(_C.cuda_variant_count()):
            _C.cuda_set_variant(v)
            for kind, dtype in KINDS:
                for n, off in cases:
                    gpu = draw(kind, n, 99, 5, off, dtype, device="cuda")
                    cpu = draw(kind, n, 99, 5, off, dtype)
                    assert np.array_equal(bits(gpu), bits(cpu)), (v, kind, dtype, n, off)
        with pytest.raises(ValueError):
            _C.cuda_set_variant(_C.cuda_variant_count())
    finally:
        _C.cuda_set_variant(0)


@pytest.mark.parametrize("kind,dtype", KINDS)
def test_block_counter_low_word_carry(kind, dtype):
    """A request whose blocks cross block 2^32 (the counter's low word carries): launches with
    32-bit indices assume no carry and must hand such requests to the 64-bit-index kernel."""
    if not _C.CUDA:
        pytest.skip("no CUDA kernel in this build")
    try:
        for v in range(_C.cuda_variant_count()):
            _C.cuda_set_variant(v)
            for n in (8, 4101, 1 << 16):
                for off in ((1 << 34) - 16, (1 << 34) - 16 + 3, (1 << 34) - 4 * (n // 8)):
                    gpu = draw(kind, n, 7, 11, off, dtype, device="cuda")
                    cpu = draw(kind, n, 7, 11, off, dtype)
                    assert np.array_equal(bits(gpu), bits(cpu)), (v, kind, dtype, n, off)
                    if n == 8:
                        want = ref_bits(kind, 7, 11, off, n, dtype)
                        assert np.array_equal(bits(gpu), want)
    finally:
        _C.cuda_set_variant(0)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_repeated_cuda_calls_fast_path(device):
    """randn_tensor's remembered-call path on CUDA (index-less devices included) continues the
    stream exactly like the first, fully checked call."""
    g = fastrand.Generator(4242, offset=3)
    cpu = fastrand.Generator(4242, offset=3)
    for _ in range(3):
        for dtype in (torch.float32, torch.float16, torch.float64):
            a = fastrand.randn_tensor((2, 4, 9, 9), generator=g, device=device, dtype=dtype)
            assert a.device.type == "cuda" and a.get_device() == torch.cuda.current_device()
            b = fastrand.randn_tensor((2, 4, 9, 9), generator=cpu, dtype=dtype)
            assert np.array_equal(bits(a), bits(b)), (device, dtype)
    assert g.get_offset() == cpu.get_offset()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_large_draws_default_shape(dtype):
    """Large float32/16 normal draws take the default launch's 2-blocks-per-step shape (at
    least 8 whole grid steps): bit-identical to the CPU, whole and with a partial tail."""
    if not _C.CUDA:
        pytest.skip("no CUDA kernel in this build")
    for n, off in (((1 << 26) + 3, 0), (1 << 26, 8), ((1 << 26) + 1, 1)):
        gpu = draw("normal", n, 1234, 2, off, dtype, device="cuda")
        cpu = draw("normal", n, 1234, 2, off, dtype)
        assert np.array_equal(bits(gpu), bits(cpu)), (dtype, n, off)
        del gpu, cpu
