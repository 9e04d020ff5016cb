"""torch's default-device rule in the torch-style functions, diffusers' rule in randn_tensor.

Each rule is compared against the library that defines it: `fastrand.randn/rand/random_words`
against `torch.randn/rand/randint` (device=None -> torch's current default device, meta gives
meta tensors and draws nothing), `fastrand.randn_tensor` against diffusers' `randn_tensor`
(device=None -> the CPU, whatever torch's default device).
"""

import contextlib

import pytest
import torch

import fastrand


@contextlib.contextmanager
def default_device(dev):
    torch.set_default_device(dev)
    try:
        yield
    finally:
        torch.set_default_device(None)


TORCH_STYLE = [
    (lambda **kw: fastrand.randn(2, 3, **kw), lambda: torch.randn(2, 3)),
    (lambda **kw: fastrand.rand(2, 3, **kw), lambda: torch.rand(2, 3)),
    (lambda **kw: fastrand.random_words(2, 3, **kw), lambda: torch.randint(0, 5, (2, 3))),
]


@pytest.mark.parametrize("ours,theirs", TORCH_STYLE, ids=["randn", "rand", "random_words"])
def test_torch_style_follow_default_device_like_torch(ours, theirs):
    g = fastrand.Generator(1)
    assert ours(generator=g).device == theirs().device == torch.device("cpu")
    for ctx in (default_device("meta"), torch.device("meta")):
        with ctx:
            g = fastrand.Generator(1)
            got = ours(generator=g)
            assert got.device == theirs().device == torch.device("meta")
            assert got.shape == (2, 3)
            assert g.get_offset() == 0  # nothing drawn on meta, as torch.randn on meta
    # back to the CPU once the context ends, and the values are the stream's
    a = ours(generator=fastrand.Generator(1))
    assert a.device.type == "cpu"


def test_meta_draw_computes_nothing_and_keeps_torch_generators():
    g = torch.Generator().manual_seed(3)
    before = g.get_state().clone()
    with torch.device("meta"):
        x = fastrand.randn(1 << 40, generator=g)  # 4 TiB: only possible without computing
    assert x.device.type == "meta" and x.shape == (1 << 40,)
    assert torch.equal(g.get_state(), before)
    # explicit devices win over the context, as in torch
    with torch.device("meta"):
        y = fastrand.randn(4, generator=fastrand.Generator(0), device="cpu")
        assert torch.randn(4, device="cpu").device.type == "cpu"
    ref = fastrand.randn(4, generator=fastrand.Generator(0), device="cpu")
    assert y.device.type == "cpu"
    assert torch.equal(y.view(torch.int32), ref.view(torch.int32))


def test_meta_still_validates_arguments():
    with torch.device("meta"):
        with pytest.raises(TypeError, match="generator"):
            fastrand.randn(2, generator=object())
        with pytest.raises(ValueError, match="dtype"):
            fastrand.randn(2, dtype=torch.int64)
        with pytest.raises(ValueError, match="size"):
            fastrand.randn(-1)


def test_randn_tensor_keeps_diffusers_rule():
    # diffusers' randn_tensor(device=None) returns a CPU tensor (it ends with `.to(device or
    # cpu)`); checked against diffusers itself where a second device exists (the CUDA test below)
    torch_utils = pytest.importorskip("diffusers.utils.torch_utils")
    theirs = torch_utils.randn_tensor((2, 3), generator=torch.Generator().manual_seed(0))
    assert theirs.device.type == "cpu"
    with default_device("meta"):
        ours = fastrand.randn_tensor((2, 3), generator=fastrand.Generator(0))
    assert ours.device.type == "cpu"
    ref = fastrand.randn_tensor((2, 3), generator=fastrand.Generator(0))
    assert torch.equal(ours.view(torch.int32), ref.view(torch.int32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_default_device_like_torch():
    with default_device("cuda"):
        got = fastrand.randn(2, 3, generator=fastrand.Generator(0))
        assert got.device == torch.randn(2, 3).device
    ref = fastrand.randn(2, 3, generator=fastrand.Generator(0))
    assert torch.equal(got.cpu().view(torch.int32), ref.view(torch.int32))
    torch_utils = pytest.importorskip("diffusers.utils.torch_utils")
    with default_device("cuda"):
        theirs = torch_utils.randn_tensor((2, 3), generator=torch.Generator().manual_seed(0))
        ours = fastrand.randn_tensor((2, 3), generator=fastrand.Generator(0))
    assert theirs.device.type == ours.device.type == "cpu"


def _functional_compiled():
    import fastrand.functional as F

    @torch.compile(fullgraph=True)
    def draw():
        return F.randn((2, 3), seed=5)

    return draw


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_functional_follows_default_device_like_torch(compiled):
    import fastrand.functional as F

    draw = _functional_compiled() if compiled else (lambda: F.randn((2, 3), seed=5))
    ref = fastrand.randn(2, 3, generator=fastrand.Generator(5))
    got = draw()
    assert got.device == torch.randn(2, 3).device == torch.device("cpu")
    assert torch.equal(got.view(torch.int32), ref.view(torch.int32))
    for ctx in (default_device("meta"), torch.device("meta")):
        with ctx:
            got = draw()
            assert got.device == torch.randn(2, 3).device == torch.device("meta")
            assert got.shape == (2, 3)
    got = draw()  # and back
    assert got.device.type == "cpu"
    assert torch.equal(got.view(torch.int32), ref.view(torch.int32))


def test_slices_follow_default_device_like_randn():
    g = fastrand.Generator(2)
    full = fastrand.randn(4, 6, generator=fastrand.Generator(2))
    got = fastrand.randn_slice((4, 6), (slice(1, 3),), generator=g)
    assert got.device.type == "cpu" and g.get_offset() == 24
    assert torch.equal(got.view(torch.int32), full[1:3].view(torch.int32))
    with torch.device("meta"):
        g = fastrand.Generator(2)
        got = fastrand.randn_slice((4, 6), (slice(1, 3),), generator=g)
        assert got.device.type == "meta" and got.shape == (2, 6) and g.get_offset() == 0
