"""Region draws: fastrand.randn_slice / rand_slice equal randn(*shape)[index] bit for bit.

Golden values come from the NumPy reference (fastrand.reference) drawn for the whole shape and
sliced with NumPy, and from the compiled full draw sliced by torch.
"""

import math

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from conftest import TORCH_DTYPES, bits  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastrand  # noqa: E402
from fastrand import _C, _slice  # noqa: E402
from fastrand import reference as ref  # noqa: E402

U64 = 1 << 64
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
DTYPES = list(TORCH_DTYPES)
KINDS = ("normal", "uniform")
SLICERS = {"normal": fastrand.randn_slice, "uniform": fastrand.rand_slice}
FULL = {"normal": fastrand.randn, "uniform": fastrand.rand}

u64 = st.one_of(
    st.integers(0, U64 - 1),
    st.integers(U64 - 70, U64 - 1),
    st.integers(0, 70),
)


@st.composite
def boxes(draw, max_dims=4, max_size=7):
    """(shape, index): slices with step 1 or None, out-of-range bounds, negative bounds,
    integers, fewer entries than dimensions, an Ellipsis."""
    shape = tuple(draw(st.lists(st.integers(0, max_size), min_size=0, max_size=max_dims)))
    entries = []
    for size in shape[: draw(st.integers(0, len(shape)))]:
        bound = st.one_of(st.none(), st.integers(-max_size - 3, max_size + 3))
        if size > 0 and draw(st.booleans()) and draw(st.booleans()):
            entries.append(draw(st.integers(-size, size - 1)))
        else:
            step = draw(st.sampled_from([None, None, 1]))
            entries.append(slice(draw(bound), draw(bound), step))
    if entries and draw(st.integers(0, 5)) == 0:
        entries[-1] = Ellipsis  # the last entry: the dimensions of the ones before stay put
    index = tuple(entries)
    if len(index) == 1 and draw(st.booleans()):
        index = index[0]  # a bare slice / int, as Python indexing takes it
    return shape, index


def _ref_full(kind, dtype, seed, stream, offset, shape):
    n = math.prod(shape)
    if kind == "normal":
        a = ref.normal(seed, stream, offset, n, dtype)
    else:
        a = ref.uniform(seed, stream, offset, n, dtype)
    return bits(a).reshape(shape)


def _slice_bits(kind, dtype, shape, index, seed, stream, offset):
    g = fastrand.Generator(seed, stream=stream, offset=offset)
    t = SLICERS[kind](shape, index, generator=g, dtype=TORCH_DTYPES[dtype])
    return t, g


@settings(max_examples=250, **SETTINGS)
@given(
    box=boxes(),
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from(DTYPES),
    seed=u64,
    stream=u64,
    offset=u64,
)
def test_slice_equals_reference(box, kind, dtype, seed, stream, offset):
    shape, index = box
    t, g = _slice_bits(kind, dtype, shape, index, seed, stream, offset)
    want = _ref_full(kind, dtype, seed, stream, offset, shape)[index]
    assert tuple(t.shape) == want.shape
    assert np.array_equal(bits(t).reshape(want.shape), want)
    # the generator advanced by the whole shape (float64: two positions a value, even start)
    n = math.prod(shape)
    if dtype == "float64":
        assert g.get_offset() == (offset + (offset & 1) + 2 * n) % U64
    else:
        assert g.get_offset() == (offset + n) % U64


@settings(max_examples=60, **SETTINGS)
@given(
    box=boxes(max_dims=5, max_size=9),
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from(DTYPES),
    offset=u64,
)
def test_slice_equals_full_draw(box, kind, dtype, offset):
    shape, index = box
    dt = TORCH_DTYPES[dtype]
    full = FULL[kind](shape, generator=fastrand.Generator(7, offset=offset), dtype=dt)[index]
    part = SLICERS[kind](shape, index, generator=fastrand.Generator(7, offset=offset), dtype=dt)
    assert part.shape == full.shape
    assert part.is_contiguous()
    assert np.array_equal(bits(part), bits(full))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,index",
    [
        ((96, 40, 130), (slice(5, 90), slice(3, 37), slice(1, 129))),  # many short-ish rows
        ((300, 700), (slice(None), slice(100, 101))),  # one value a row
        ((3, 1 << 18), (slice(1, 3), slice(17, None))),  # a few long rows
        ((1 << 19,), (slice(12345, None),)),  # one run
        ((8, 6, 4, 300), (1, slice(1, 5), slice(None), slice(7, 250))),
        ((2100, 67), (slice(None), slice(1, 66))),  # walked rows starting at every slot
        ((1100, 128), (slice(None), slice(3, 101))),  # walked rows, all at one slot
    ],
)
def test_threaded_boxes_any_thread_count(shape, index, dtype, num_threads):
    """Big enough for several threads: results never depend on the thread count."""
    dt = TORCH_DTYPES[dtype]
    full = fastrand.randn(shape, generator=fastrand.Generator(3, offset=5), dtype=dt)[index]
    for threads in (1, 2, 3, 8):
        num_threads(threads)
        part = fastrand.randn_slice(
            shape, index, generator=fastrand.Generator(3, offset=5), dtype=dt
        )
        assert np.array_equal(bits(part), bits(full)), threads


CPU_PATH_BOXES = [
    ((5, 9, 70), (slice(1, 4), slice(2, 9), slice(3, 61))),  # short rows
    ((40, 9), (slice(None), slice(4, 5))),  # rows of one value
    ((30, 7), (slice(2, None), slice(1, 4))),  # rows of three, across block edges
    ((3, 2500), (slice(0, 3), slice(5, 2400))),  # long rows: plain requests
]


@pytest.mark.parametrize("isa", list(_C.cpu_isa_available()))
def test_every_cpu_path(isa, cpu_isa):
    cpu_isa(isa)
    for shape, index in CPU_PATH_BOXES:
        for kind in KINDS:
            for dtype in DTYPES:
                for offset in (1, 2, U64 - 5):
                    g = fastrand.Generator(1, offset=offset)
                    part = SLICERS[kind](shape, index, generator=g, dtype=TORCH_DTYPES[dtype])
                    want = _ref_full(kind, dtype, 1, 0, offset, shape)[index]
                    assert np.array_equal(bits(part).reshape(want.shape), want), (isa, dtype)


# Short rows go by runs (consecutive rows along the innermost outer dimension), split into
# classes of rows that start at the same slot of their blocks; a class's blocks are walked as one
# stream by the SIMD lanes, stored straight into the output when its rows are whole blocks back to
# back, else through a buffer of 256 blocks. Runs of every kind, with more blocks than one buffer
# and rows cut by a buffer's end.
RUN_BOXES = [
    ((130, 40), (slice(None), slice(0, 32))),  # whole blocks, back to back (float32: stored)
    ((70, 9), (slice(None), slice(0, 8))),  # rows of two blocks, a row step of 9 values: 4 classes
    ((150, 37), (slice(None), slice(2, 35))),  # rows start at every slot (row step 37)
    ((300, 90), (slice(None), slice(12, 24))),  # row step 90: two classes of rows
    ((3, 70, 19), (slice(None), slice(1, None), slice(1, 18))),  # runs along an inner dimension
    ((3, 70, 24), (slice(None), slice(1, None), slice(1, 23))),  # the same, rows at one slot
    ((100, 300), (slice(None), slice(3, 290))),  # rows across the buffer's end
    ((40, 1500), (slice(None), slice(5, 1010))),  # rows longer than the buffer
    ((90, 6), (slice(None), slice(1, 6))),  # rows of one block at most
    ((4000, 8), (slice(None), slice(3, 4))),  # rows of one value
    ((5, 3, 11), (slice(None), slice(0, 2), slice(2, 9))),  # runs of 2 rows: too few for the lanes
]
RUN_OFFSETS = (
    0,
    1,
    3,
    4 * ((1 << 32) - 40) + 1,  # block indices carry into their high word inside the box
    U64 - 4 * 300 + 2,  # positions wrap past 2^64 inside the box
)


@pytest.mark.parametrize("isa", list(_C.cpu_isa_available()))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_runs_of_short_rows(isa, kind, dtype, cpu_isa):
    cpu_isa(isa)
    for shape, index in RUN_BOXES:
        for offset in RUN_OFFSETS:
            g = fastrand.Generator(5, stream=9, offset=offset)
            part = SLICERS[kind](shape, index, generator=g, dtype=TORCH_DTYPES[dtype])
            want = _ref_full(kind, dtype, 5, 9, offset, shape)[index]
            assert np.array_equal(bits(part).reshape(want.shape), want), (shape, offset)


@pytest.mark.parametrize("isa", list(_C.cpu_isa_available()))
@pytest.mark.parametrize("dtype", DTYPES)
def test_box_fill_writes_nothing_outside_the_box(isa, dtype, cpu_isa):
    """Every short-row path (stored straight, one value a row, buffered, too few rows), with
    partial last steps: the box fill writes its values and not one byte before or after them,
    into an output that is not 64-byte aligned."""
    cpu_isa(isa)
    dt = TORCH_DTYPES[dtype]
    size = torch.empty(0, dtype=dt).element_size()
    code = getattr(_C, "DT_" + dtype.upper())
    guard = 67  # values of guard on each side: the output starts 67 values into the buffer
    for shape, index in RUN_BOXES + CPU_PATH_BOXES:
        full = fastrand.randn(shape, generator=fastrand.Generator(2, offset=1), dtype=dt)[index]
        starts, lengths, _ = _slice._index_arg(index, shape)
        base, sizes, gstrides = _slice._collapse(shape, starts, lengths)
        n = full.numel()
        buf = torch.full(((n + 2 * guard) * size,), 0xA5, dtype=torch.uint8)
        for threads in (1, 3):
            _C.fill_box_cpu(
                buf.data_ptr() + guard * size, _C.KIND_NORMAL, code, 2, 0, 1, base, sizes,
                gstrides, threads,
            )  # fmt: skip
            body = buf[guard * size : (guard + n) * size].view(dt)
            assert np.array_equal(bits(body), bits(full).reshape(-1)), (shape, threads)
            assert bool((buf[: guard * size] == 0xA5).all()), (shape, threads, "before")
            assert bool((buf[(guard + n) * size :] == 0xA5).all()), (shape, threads, "after")


@pytest.mark.parametrize("isa", list(_C.cpu_isa_available()))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "rows,length,gstride",
    [
        (200, 8, 1 << 36),  # a row step of 2^34 blocks and more: row blocks carry past 32 bits
        (150, 13, (1 << 40) + 3),  # four classes of rows, steps past 32 bits
        (100, 6, (1 << 61) + 2),  # float64 steps wrap modulo 2^64 positions
        (64, 1, 4),  # one value a block: every block of a stretch
    ],
)
def test_runs_with_huge_row_steps(isa, dtype, rows, length, gstride, cpu_isa):
    """The box kernel against the reference row by row, for row steps no tensor could have:
    rows[i] = the values at global index base + i * gstride (the compiled binding, no shape)."""
    cpu_isa(isa)
    dt = TORCH_DTYPES[dtype]
    per = 2 if dtype == "float64" else 1  # positions a value
    seed, stream, offset, base = 7, 3, U64 - 4 * 50 + 1, 11
    out = torch.empty(rows * length, dtype=dt)
    code = getattr(_C, "DT_" + dtype.upper())
    _C.fill_box_cpu(
        out.data_ptr(), _C.KIND_NORMAL, code, seed, stream, offset, base,
        [rows, length], [gstride, 1], 2,
    )  # fmt: skip
    start = offset + (offset % 2 if per == 2 else 0)  # float64: the first even position
    for i in (0, 1, 2, 3, rows // 2, rows - 2, rows - 1):
        at = (start + per * (base + i * gstride)) % U64
        want = bits(ref.normal(seed, stream, at, length, dtype))
        assert np.array_equal(bits(out[i * length : (i + 1) * length]), want), i


@pytest.mark.parametrize("isa", list(_C.cpu_isa_available()))
def test_box_fill_of_raw_words(isa, cpu_isa):
    """The compiled box fill also takes the raw words (kind 2), one position per value."""
    cpu_isa(isa)
    shape, starts, lengths = (6, 11), (1, 3), (4, 5)
    base, sizes, gstrides = _slice._collapse(shape, starts, lengths)
    out = torch.empty(4, 5, dtype=torch.int32)
    _C.fill_box_cpu(out.data_ptr(), _C.KIND_WORDS, _C.DT_UINT32, 3, 4, 7, base, sizes, gstrides, 2)
    want = bits(ref.words(3, 4, 7, 66)).reshape(shape)[1:5, 3:8]
    assert np.array_equal(bits(out), want)


def test_more_than_eight_cut_dimensions():
    """A box cut in more places than the kernels' 8 dimensions still equals the slice."""
    shape = (3,) * 11
    index = tuple(slice(1, 3) for _ in range(11))
    for dt in (torch.float32, torch.float64):
        full = fastrand.randn(shape, generator=fastrand.Generator(4), dtype=dt)[index]
        part = fastrand.randn_slice(shape, index, generator=fastrand.Generator(4), dtype=dt)
        assert np.array_equal(bits(part), bits(full))


def test_collapse_merges_contiguous_dimensions():
    # whole trailing dimensions merge with the dimension before them
    assert _slice._collapse((4, 5, 6), (1, 0, 0), (2, 5, 6)) == (30, [60], [1])
    # a cut last dimension keeps the rows apart; dimensions of length 1 fold into the base
    assert _slice._collapse((4, 5, 6), (1, 2, 1), (1, 3, 4)) == (30 + 12 + 1, [3, 4], [6, 1])
    # an integer on the last dimension: rows of one value (the kernels need gstride 1 last)
    assert _slice._collapse((4, 5, 6), (0, 0, 2), (4, 5, 1)) == (2, [20, 1], [6, 1])
    # a whole tensor is one run
    assert _slice._collapse((2, 3), (0, 0), (2, 3)) == (0, [6], [1])
    assert _slice._collapse((), (), ()) == (0, [1], [1])


def test_torch_generator_in_step():
    """A torch.Generator advances by the whole shape: slice then full equals full then full."""
    shape, index = (6, 10), (slice(2, 5), slice(None, 7))
    for dt in (torch.float32, torch.float64):
        ga = torch.Generator().manual_seed(11)
        gb = torch.Generator().manual_seed(11)
        a1 = fastrand.randn_slice(shape, index, generator=ga, dtype=dt)
        a2 = fastrand.randn(3, 3, generator=ga, dtype=dt)
        b1 = fastrand.randn(shape, generator=gb, dtype=dt)[index]
        b2 = fastrand.randn(3, 3, generator=gb, dtype=dt)
        assert np.array_equal(bits(a1), bits(b1))
        assert np.array_equal(bits(a2), bits(b2))


def test_default_generator_and_odd_float64_offset():
    torch.manual_seed(5)
    a = fastrand.randn_slice((4, 4), (slice(1, 3),), dtype=torch.float64)
    torch.manual_seed(5)
    b = fastrand.randn(4, 4, dtype=torch.float64)[1:3]
    assert np.array_equal(bits(a), bits(b))
    g = fastrand.Generator(2, offset=3)  # odd: float64 values start at position 4
    part = fastrand.randn_slice((5,), slice(2, 4), generator=g, dtype=torch.float64)
    want = bits(ref.normal(2, 0, 3, 5, "float64"))[2:4]
    assert np.array_equal(bits(part), want)
    assert g.get_offset() == 4 + 10


def test_empty_boxes_still_advance():
    g = fastrand.Generator(1)
    t = fastrand.randn_slice((4, 5), (slice(3, 1),), generator=g)
    assert t.shape == (0, 5)
    assert g.get_offset() == 20
    t = fastrand.randn_slice((0, 5), (), generator=g)
    assert t.shape == (0, 5) and g.get_offset() == 20
    t = fastrand.rand_slice((4, 5), (2, 3), generator=g)  # a 0-d value
    assert t.shape == ()
    assert np.array_equal(bits(t).ravel(), bits(ref.uniform(1, 0, 20, 20, "float32"))[13:14])


def test_dtype_device_defaults():
    t = fastrand.randn_slice((3, 3), (0,), generator=fastrand.Generator(0))
    assert t.dtype == torch.get_default_dtype() and t.device.type == "cpu"
    t = fastrand.randn_slice((3, 3), (0,), generator=fastrand.Generator(0), device="meta")
    assert t.device.type == "meta" and t.shape == (3,)


BAD = [
    # (shape, index, kwargs, error, text)
    ((4, 4), (slice(0, 4, 2),), {}, ValueError, "index"),
    ((4, 4), (slice(None, None, -1),), {}, ValueError, "index"),
    ((4, 4), (slice(0, 4, 1.0),), {}, TypeError, "index"),
    ((4, 4), (0, 1, 2), {}, ValueError, "index"),
    ((4, 4), (..., ...), {}, ValueError, "index"),
    ((4, 4), (4,), {}, ValueError, "index"),
    ((4, 4), (-5,), {}, ValueError, "index"),
    ((4, 4), [0, 1], {}, TypeError, "index"),
    ((4, 4), (None,), {}, TypeError, "index"),
    ((4, 4), (1.0,), {}, TypeError, "index"),
    ((4, 4), (True,), {}, TypeError, "index"),
    ((4, 4), (slice(0.5, 2),), {}, TypeError, "index"),
    ((4, 4), (torch.tensor([0, 1]),), {}, TypeError, "index"),
    ((4, 4), "0", {}, TypeError, "index"),
    ((4, -1), (), {}, ValueError, "shape"),
    (4, (), {}, TypeError, "shape"),
    (((1 << 62), 4), (), {}, ValueError, "shape"),
    ((4, 4), (), {"dtype": torch.int32}, ValueError, "dtype"),
    ((4, 4), (), {"dtype": "float32"}, TypeError, "dtype"),
    ((4, 4), (), {"device": 1.5}, TypeError, "device"),
    ((4, 4), (), {"generator": [fastrand.Generator(0)]}, TypeError, "generator"),
    ((4, 4), (), {"generator": 3}, TypeError, "generator"),
]


@pytest.mark.parametrize("shape,index,kwargs,error,text", BAD)
@pytest.mark.parametrize("fn", [fastrand.randn_slice, fastrand.rand_slice])
def test_bad_input_names_the_argument_and_advances_nothing(fn, shape, index, kwargs, error, text):
    g = fastrand.Generator(9, offset=3)
    tg = torch.Generator().manual_seed(9)
    before = fastrand.randn(8, generator=torch.Generator().manual_seed(9))
    for gen in (g, tg):
        kw = dict(kwargs)
        kw.setdefault("generator", gen)
        with pytest.raises(error, match=text):
            fn(shape, index, **kw)
    assert g.get_offset() == 3
    after = fastrand.randn(8, generator=tg)  # the torch generator did not move either
    assert np.array_equal(bits(after), bits(before))


def test_box_binding_refuses_bad_boxes():
    out = torch.empty(16)
    args = (out.data_ptr(), _C.KIND_NORMAL, _C.DT_FLOAT32, 0, 0, 0, 0)
    for sizes, gstrides in (
        ([], []),
        ([1] * 9, [1] * 9),
        ([4, 4], [4]),
        ([4, 4], [8, 2]),
        ([1 << 40, 1 << 40], [1 << 40, 1]),
    ):
        with pytest.raises(ValueError):
            _C.fill_box_cpu(*args, sizes, gstrides, 1)
    with pytest.raises(ValueError):
        _C.fill_box_cpu(0, _C.KIND_NORMAL, _C.DT_FLOAT32, 0, 0, 0, 0, [4], [1], 1)
    with pytest.raises(ValueError):
        _C.fill_box_cpu(out.data_ptr(), _C.KIND_WORDS, _C.DT_FLOAT32, 0, 0, 0, 0, [4], [1], 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_equals_cpu(kind, dtype):
    dt = TORCH_DTYPES[dtype]
    cases = [
        ((96, 40, 130), (slice(5, 90), slice(3, 37), slice(1, 129))),
        ((300, 700), (slice(None), slice(100, 101))),
        ((3, 1 << 18), (slice(1, 3), slice(17, None))),
        ((1 << 20,), (slice(12345, None),)),
        ((8, 6, 4, 300), (1, slice(1, 5), slice(None), slice(7, 250))),
        ((3,) * 11, tuple(slice(1, 3) for _ in range(11))),
        ((5, 7), (slice(9, None),)),
    ]
    for shape, index in cases:
        for offset in (0, 1, U64 - 3):
            g_cpu = fastrand.Generator(21, stream=2, offset=offset)
            g_gpu = fastrand.Generator(21, stream=2, offset=offset)
            cpu = SLICERS[kind](shape, index, generator=g_cpu, dtype=dt)
            gpu = SLICERS[kind](shape, index, generator=g_gpu, dtype=dt, device="cuda")
            assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
            assert np.array_equal(bits(gpu), bits(cpu)), (shape, index, offset)
            assert g_gpu.get_offset() == g_cpu.get_offset()
