"""Property-based tests (hypothesis) over the whole 64-bit seed, stream and offset ranges.

* consecutive draws concatenate and a slice of a draw is a draw at the shifted position, for
  every kind and dtype (float64: values two positions apart, starting at an even position);
* float16 / bfloat16 normals are the float32 normals rounded (``.to(dtype)``), bit for bit;
* ``torch.Generator("cpu").manual_seed(s)`` and ``fastrand.Generator(s, stream=2**63)`` give
  the same sequence of draws;
* the compiled code (any CPU path) equals the NumPy reference.
"""

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from conftest import TORCH_DTYPES, bits  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastrand  # noqa: E402
from fastrand import _C  # noqa: E402
from fastrand import reference as ref  # noqa: E402

U64 = 1 << 64
ISAS = list(_C.cpu_isa_available())
KINDS = (
    [("normal", d) for d in TORCH_DTYPES]
    + [("uniform", d) for d in TORCH_DTYPES]
    + [("words", "int32"), ("words", "uint32")]
)

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False, print_blob=True
)

u64 = st.one_of(
    st.integers(0, U64 - 1),
    st.integers(U64 - 70, U64 - 1),
    st.integers(0, 70),
    st.sampled_from([(1 << 32) - 1, 1 << 32, 1 << 63, (1 << 63) - 1]),
)
seeds = st.one_of(u64, st.integers(-(1 << 63), -1))
kinds = st.sampled_from(KINDS)
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple)
sizes = st.integers(0, 40)


def _draw(kind, dtype, shape, gen):
    if kind == "normal":
        t = fastrand.randn_tensor(shape, generator=gen, dtype=TORCH_DTYPES[dtype])
    elif kind == "uniform":
        t = fastrand.rand(shape, generator=gen, dtype=TORCH_DTYPES[dtype])
    else:
        dt = torch.uint32 if (dtype == "uint32" and hasattr(torch, "uint32")) else torch.int32
        t = fastrand.random_words(shape, generator=gen, dtype=dt)
    assert tuple(t.shape) == tuple(shape)
    return t


def _bits(t):
    if hasattr(torch, "uint32") and t.dtype == torch.uint32:
        t = t.view(torch.int32)
    return bits(t).ravel()


def _ref(kind, dtype, seed, stream, offset, n):
    if kind == "normal":
        return bits(ref.normal(seed, stream, offset, n, dtype))
    if kind == "uniform":
        return bits(ref.uniform(seed, stream, offset, n, dtype))
    return bits(ref.words(seed, stream, offset, n))


def _start(dtype, offset):
    """Position of a request's first value; float64 values are 2 positions apart."""
    return ((offset + (offset & 1)) % U64, 2) if dtype == "float64" else (offset, 1)


@settings(max_examples=400, **SETTINGS)
@given(seed=seeds, stream=u64, offset=u64, kd=kinds, n1=sizes, n2=sizes, n3=sizes)
def test_draws_concatenate(seed, stream, offset, kd, n1, n2, n3):
    kind, dtype = kd
    g = fastrand.Generator(seed, stream=stream, offset=offset)
    parts = [_bits(_draw(kind, dtype, (n,), g)) for n in (n1, n2, n3)]
    whole_gen = fastrand.Generator(seed, stream=stream, offset=offset)
    whole = _bits(_draw(kind, dtype, (n1 + n2 + n3,), whole_gen))
    assert np.array_equal(np.concatenate(parts), whole)
    assert g.get_offset() == whole_gen.get_offset()
    start, step = _start(dtype, offset)
    assert g.get_offset() == (start + step * (n1 + n2 + n3)) % U64


@settings(max_examples=400, **SETTINGS)
@given(seed=seeds, stream=u64, offset=u64, kd=kinds, shape=shapes, data=st.data())
def test_a_slice_is_a_draw_at_the_shifted_position(seed, stream, offset, kd, shape, data):
    kind, dtype = kd
    t = _draw(kind, dtype, shape, fastrand.Generator(seed, stream=stream, offset=offset))
    flat = _bits(t)  # row-major order
    n = flat.size
    i = data.draw(st.integers(0, n), label="i")
    j = data.draw(st.integers(i, n), label="j")
    start, step = _start(dtype, offset)
    shifted = fastrand.Generator(seed, stream=stream, offset=(start + step * i) % U64)
    assert np.array_equal(flat[i:j], _bits(_draw(kind, dtype, (j - i,), shifted)))


@settings(max_examples=300, **SETTINGS)
@given(
    seed=seeds, stream=u64, offset=u64, shape=shapes, dtype=st.sampled_from(["float16", "bfloat16"])
)
def test_half_precision_is_float32_rounded(seed, stream, offset, shape, dtype):
    g32 = fastrand.Generator(seed, stream=stream, offset=offset)
    g16 = fastrand.Generator(seed, stream=stream, offset=offset)
    x32 = fastrand.randn_tensor(shape, generator=g32, dtype=torch.float32)
    x16 = fastrand.randn_tensor(shape, generator=g16, dtype=TORCH_DTYPES[dtype])
    assert np.array_equal(bits(x16), bits(x32.to(TORCH_DTYPES[dtype])))
    assert g32.get_offset() == g16.get_offset()


draw_steps = st.lists(st.tuples(kinds, shapes), min_size=1, max_size=6)


@settings(max_examples=300, **SETTINGS)
@given(seed=st.integers(-(1 << 63), U64 - 1), steps=draw_steps)
def test_torch_generator_and_fastrand_generator_agree(seed, steps):
    tg = torch.Generator("cpu").manual_seed(seed)
    fg = fastrand.Generator(seed, stream=1 << 63)  # a torch generator's sequence
    for (kind, dtype), shape in steps:
        a = _bits(_draw(kind, dtype, shape, tg))
        b = _bits(_draw(kind, dtype, shape, fg))
        assert np.array_equal(a, b), (kind, dtype, shape)
    # reseeding restarts both
    tg.manual_seed(seed)
    fg.manual_seed(seed)
    (kind, dtype), shape = steps[0]
    assert np.array_equal(
        _bits(_draw(kind, dtype, shape, tg)), _bits(_draw(kind, dtype, shape, fg))
    )


@settings(max_examples=800, **SETTINGS)
@given(seed=seeds, stream=u64, offset=u64, kd=kinds, shape=shapes, isa=st.sampled_from(ISAS))
def test_compiled_equals_reference(seed, stream, offset, kd, shape, isa):
    kind, dtype = kd
    before = _C.cpu_isa_selected()
    try:
        assert _C.cpu_isa_select(isa)
        t = _draw(kind, dtype, shape, fastrand.Generator(seed, stream=stream, offset=offset))
    finally:
        _C.cpu_isa_select(before)
    n = int(np.prod(shape)) if shape else 1
    ref_dtype = "float32" if kind == "words" else dtype
    assert np.array_equal(_bits(t), _ref(kind, ref_dtype, seed % U64, stream, offset, n))


@settings(max_examples=80, **SETTINGS)
@given(
    seed=seeds,
    stream=u64,
    offset=u64,
    kd=kinds,
    n=st.integers((1 << 16) + 1, (1 << 17) + 64),
    threads=st.integers(2, 4),
)
def test_compiled_equals_reference_multithreaded(seed, stream, offset, kd, n, threads):
    """Sizes for which the compiled code splits the work between threads."""
    kind, dtype = kd
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        t = _draw(kind, dtype, (n,), fastrand.Generator(seed, stream=stream, offset=offset))
    finally:
        torch.set_num_threads(before)
    ref_dtype = "float32" if kind == "words" else dtype
    assert np.array_equal(_bits(t), _ref(kind, ref_dtype, seed % U64, stream, offset, n))
