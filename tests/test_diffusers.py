"""fastrand.patch_diffusers: diffusers' randn_tensor replaced by fastrand's (no downloads).

A tiny UNet2DModel built from a config (random weights, seeded) in a DDPMPipeline with
DDPMScheduler(num_train_timesteps=10): 3 inference steps, timesteps [6, 3, 0], so one latent
draw and two scheduler noise draws per image.
"""

import importlib
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import diffusers.pipelines.ddpm.pipeline_ddpm as pipeline_ddpm  # noqa: E402
import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm  # noqa: E402
import diffusers.utils.torch_utils as torch_utils  # noqa: E402
from conftest import child_env  # noqa: E402
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

import fastrand  # noqa: E402
import fastrand._api as fr_api  # noqa: E402
import fastrand._diffusers_patch as dp  # noqa: E402
from fastrand._diffusers_patch import patch_diffusers, unpatch_diffusers  # noqa: E402

ORIGINAL = torch_utils.randn_tensor
fastrand_randn_tensor = fr_api.randn_tensor  # the real one (the tests spy on the attribute)
REPLACEMENT = dp.randn_tensor
STEPS = 3
TORCH_STREAM = 1 << 63  # the stream of a torch generator's own sequence
SHAPE = (1, 3, 8, 8)
# not imported by `from diffusers import DDPMPipeline`; the first one missing is used by (f)
FRESH_CANDIDATES = (
    "diffusers.schedulers.scheduling_euler_ancestral_discrete",
    "diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete",
    "diffusers.schedulers.scheduling_lcm",
    "diffusers.schedulers.scheduling_tcd",
)


def bits(t):
    t = t.detach().cpu().contiguous()
    return t.view(torch.int32).numpy() if t.dtype == torch.float32 else t.numpy()


def holders(value):
    """(module name, attribute) of every diffusers* module attribute that is `value`."""
    out = set()
    for name, module in list(sys.modules.items()):
        if name.startswith("diffusers") and module is not None:
            for attr, v in list(getattr(module, "__dict__", {}).items()):
                if v is value:
                    out.add((name, attr))
    return out


def hook_installed():
    return any(isinstance(f, dp._PatchingFinder) for f in sys.meta_path)


@pytest.fixture(autouse=True)
def _restore():
    unpatch_diffusers()
    yield
    unpatch_diffusers()
    assert torch_utils.randn_tensor is ORIGINAL
    assert not holders(REPLACEMENT)
    assert not hook_installed()


@pytest.fixture(scope="module")
def pipe():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DModel(
            sample_size=8,
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
        )
    unet.eval()
    p = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10))
    p.set_progress_bar_config(disable=True)
    return p


def run(pipe, generator, batch_size=1):
    with torch.no_grad():
        return pipe(
            batch_size=batch_size, generator=generator, num_inference_steps=STEPS, output_type="pt"
        ).images


class Spy:
    """Wraps fastrand._api.randn_tensor (what the replacement calls) and records each draw."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = fr_api.randn_tensor

        def spy(shape, generator=None, device=None, dtype=None, layout=None):
            out = real(shape, generator=generator, device=device, dtype=dtype, layout=layout)
            self.calls.append((tuple(shape), out.clone()))
            return out

        monkeypatch.setattr(fr_api, "randn_tensor", spy)


# (a) ----------------------------------------------------------------------------------------
def test_pipeline_noise_comes_from_fastrand(pipe, monkeypatch):
    spy = Spy(monkeypatch)
    with patch_diffusers():
        image = run(pipe, torch.Generator().manual_seed(0))
    # one latent draw + one noise draw per step with t > 0 (timesteps 6, 3, 0)
    assert [shape for shape, _ in spy.calls] == [SHAPE] * STEPS
    g = fastrand.Generator(0, stream=TORCH_STREAM)  # torch.Generator().manual_seed(0)'s draws
    for _, drawn in list(spy.calls):
        assert np.array_equal(bits(drawn), bits(fastrand_randn_tensor(SHAPE, generator=g)))

    # the DDPM loop by hand, its noise drawn from that generator in the same order; the
    # scheduler gives the noise-free mean (its noise zeroed) and the noise is added as step() does
    monkeypatch.setattr(
        scheduling_ddpm,
        "randn_tensor",
        lambda shape, generator=None, device=None, dtype=None: torch.zeros(
            shape, device=device, dtype=dtype
        ),
    )
    g = fastrand.Generator(0, stream=TORCH_STREAM)
    sched = pipe.scheduler
    x = fastrand_randn_tensor(SHAPE, generator=g, dtype=pipe.unet.dtype)
    sched.set_timesteps(STEPS)
    with torch.no_grad():
        for t in sched.timesteps:
            eps = pipe.unet(x, t).sample
            mean = sched.step(eps, t, x).prev_sample
            if t > 0:
                z = fastrand_randn_tensor(SHAPE, generator=g, dtype=eps.dtype)
                mean = mean + (sched._get_variance(t) ** 0.5) * z
            x = mean
    manual = (x / 2 + 0.5).clamp(0, 1)
    assert np.array_equal(bits(image), bits(manual))


def test_unpatched_pipeline_does_not_use_fastrand(pipe, monkeypatch):
    spy = Spy(monkeypatch)
    run(pipe, torch.Generator().manual_seed(0))
    assert spy.calls == []


def test_fastrand_generator_equals_torch_generator(pipe):
    with patch_diffusers():
        a = run(pipe, torch.Generator().manual_seed(5))
        b = run(pipe, fastrand.Generator(5, stream=TORCH_STREAM))
        c = run(pipe, fastrand.Generator(5))  # stream 0 is not a torch generator's sequence
    assert np.array_equal(bits(a), bits(b))
    assert not np.array_equal(bits(a), bits(c))


# (b) ----------------------------------------------------------------------------------------
def test_same_seed_bit_identical(pipe):
    with patch_diffusers():
        a = run(pipe, torch.Generator().manual_seed(0))
        b = run(pipe, torch.Generator().manual_seed(0))
        g = torch.Generator().manual_seed(0)
        c = run(pipe, g)
        d = run(pipe, g.manual_seed(0))  # reseeding restarts the noise
        e = run(pipe, torch.Generator().manual_seed(1))
    assert np.array_equal(bits(a), bits(b))
    assert np.array_equal(bits(a), bits(c))
    assert np.array_equal(bits(a), bits(d))
    assert not np.array_equal(bits(a), bits(e))


# (c) ----------------------------------------------------------------------------------------
def test_list_of_generators(pipe, monkeypatch):
    spy = Spy(monkeypatch)
    with patch_diffusers():
        both = run(
            pipe,
            [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)],
            batch_size=2,
        )
        batch_draws = spy.calls[:]
        singles = [run(pipe, torch.Generator().manual_seed(s)) for s in (11, 12)]
        single_draws = spy.calls[len(batch_draws) :]
    assert both.shape == (2,) + SHAPE[1:]
    # every draw of the batch is the two single runs' draws stacked
    assert len(batch_draws) == STEPS and len(single_draws) == 2 * STEPS
    for k, (shape, drawn) in enumerate(batch_draws):
        assert shape == (2,) + SHAPE[1:]
        for i in range(2):
            assert np.array_equal(bits(drawn[i : i + 1]), bits(single_draws[i * STEPS + k][1]))
    # and so the images, up to the UNet's own batch-size dependence: torch's CPU kernels do not
    # promise the same bits for a row computed in a batch of 2 and alone (~1e-7 here)
    for i in range(2):
        torch.testing.assert_close(both[i : i + 1], singles[i], rtol=0, atol=1e-5)


# (d) ----------------------------------------------------------------------------------------
def test_undo_restores_every_patched_module():
    before = holders(ORIGINAL)
    assert ("diffusers.utils.torch_utils", "randn_tensor") in before
    assert ("diffusers.schedulers.scheduling_ddpm", "randn_tensor") in before
    assert ("diffusers.pipelines.ddpm.pipeline_ddpm", "randn_tensor") in before
    handle = patch_diffusers()
    assert handle.active and hook_installed()
    assert holders(ORIGINAL) == set()
    assert holders(REPLACEMENT) == before
    assert scheduling_ddpm.randn_tensor is REPLACEMENT
    assert pipeline_ddpm.randn_tensor is REPLACEMENT
    handle.undo()
    assert not handle.active and not hook_installed()
    assert holders(REPLACEMENT) == set()
    assert holders(ORIGINAL) == before
    for name, attr in before:
        assert getattr(sys.modules[name], attr) is ORIGINAL


def test_unpatch_restores_only_what_it_replaced():
    def other(*a, **k):
        raise AssertionError("not called")

    patch_diffusers()
    scheduling_ddpm.randn_tensor = other  # someone else's patch after ours: left alone
    try:
        unpatch_diffusers()
        assert scheduling_ddpm.randn_tensor is other
        assert pipeline_ddpm.randn_tensor is ORIGINAL
    finally:
        scheduling_ddpm.randn_tensor = ORIGINAL


def test_unknown_keyword_falls_back_to_diffusers(monkeypatch):
    seen = []

    def fake_original(shape, generator=None, device=None, dtype=None, layout=None, **kw):
        seen.append(kw)
        return torch.zeros(shape)

    with patch_diffusers():
        # goes to diffusers' own randn_tensor, which refuses it
        with (
            pytest.warns(RuntimeWarning, match="new_arg"),
            pytest.raises(TypeError, match="new_arg"),
        ):
            torch_utils.randn_tensor((2, 3), new_arg=1)
    monkeypatch.setattr(dp, "_ORIGINAL", [fake_original])
    with pytest.warns(RuntimeWarning, match="new_arg"):
        out = REPLACEMENT((2, 3), new_arg=1)
    assert seen == [{"new_arg": 1}] and out.shape == (2, 3)


# (e) ----------------------------------------------------------------------------------------
def test_context_manager_restores_on_exit_and_exception():
    with patch_diffusers() as h:
        assert h.active and torch_utils.randn_tensor is REPLACEMENT
        assert scheduling_ddpm.randn_tensor is REPLACEMENT
    assert not h.active and scheduling_ddpm.randn_tensor is ORIGINAL
    with pytest.raises(KeyError):
        with patch_diffusers():
            assert scheduling_ddpm.randn_tensor is REPLACEMENT
            raise KeyError("boom")
    assert scheduling_ddpm.randn_tensor is ORIGINAL and not hook_installed()


def test_nested_and_repeated_use():
    with patch_diffusers():
        with patch_diffusers():
            assert scheduling_ddpm.randn_tensor is REPLACEMENT
        assert scheduling_ddpm.randn_tensor is REPLACEMENT  # the outer block still holds it
        assert sum(isinstance(f, dp._PatchingFinder) for f in sys.meta_path) == 1
    assert scheduling_ddpm.randn_tensor is ORIGINAL

    a, b = patch_diffusers(), patch_diffusers()  # twice: harmless
    assert holders(REPLACEMENT) and not holders(ORIGINAL)
    assert sum(isinstance(f, dp._PatchingFinder) for f in sys.meta_path) == 1
    a.undo()
    a.undo()  # a second undo does nothing
    assert scheduling_ddpm.randn_tensor is REPLACEMENT  # b still in force
    b.undo()
    assert scheduling_ddpm.randn_tensor is ORIGINAL

    patch_diffusers()
    with patch_diffusers():  # a block inside a process-wide patch leaves it in force
        pass
    assert scheduling_ddpm.randn_tensor is REPLACEMENT
    unpatch_diffusers()
    assert scheduling_ddpm.randn_tensor is ORIGINAL
    unpatch_diffusers()  # nothing patched: no-op
    assert scheduling_ddpm.randn_tensor is ORIGINAL

    with patch_diffusers() as h:  # unpatch inside a block: the block's exit is then a no-op
        unpatch_diffusers()
        assert not h.active and scheduling_ddpm.randn_tensor is ORIGINAL
    assert scheduling_ddpm.randn_tensor is ORIGINAL
    with h:  # an undone handle can be re-entered
        assert scheduling_ddpm.randn_tensor is REPLACEMENT
    assert scheduling_ddpm.randn_tensor is ORIGINAL


def test_threads_patch_and_undo_concurrently():
    errors = []
    start = threading.Barrier(8)

    def worker():
        try:
            start.wait()
            for _ in range(20):
                with patch_diffusers():
                    assert scheduling_ddpm.randn_tensor is REPLACEMENT
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert scheduling_ddpm.randn_tensor is ORIGINAL and not hook_installed()


# (f) ----------------------------------------------------------------------------------------
def test_module_imported_inside_block_is_patched():
    name = next((n for n in FRESH_CANDIDATES if n not in sys.modules), FRESH_CANDIDATES[0])
    saved = sys.modules.pop(name, None)  # already imported: re-imported fresh, then put back
    try:
        with patch_diffusers():
            module = importlib.import_module(name)
            assert module.randn_tensor is REPLACEMENT
            assert not isinstance(module.__loader__, dp._PatchingLoader)
            assert not isinstance(module.__spec__.loader, dp._PatchingLoader)
        assert module.randn_tensor is ORIGINAL
    finally:
        if saved is not None:
            sys.modules[name] = saved


def test_import_hook_patches_a_module_holding_the_original(tmp_path, monkeypatch):
    # a diffusers* module (like diffusers' dynamic `diffusers_modules.*`) that gets the original
    # function some other way than from the patched torch_utils: patched right after it runs
    (tmp_path / "diffusers_fastrand_probe.py").write_text(
        textwrap.dedent("""
        import _fastrand_probe_holder
        randn_tensor = _fastrand_probe_holder.ORIGINAL
        alias = randn_tensor
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "_fastrand_probe_holder", type(sys)("_fastrand_probe_holder"))
    sys.modules["_fastrand_probe_holder"].ORIGINAL = ORIGINAL
    try:
        with patch_diffusers():
            import diffusers_fastrand_probe as probe

            assert probe.randn_tensor is REPLACEMENT and probe.alias is REPLACEMENT
        assert probe.randn_tensor is ORIGINAL and probe.alias is ORIGINAL
    finally:
        sys.modules.pop("diffusers_fastrand_probe", None)


def test_module_imported_after_undo_is_not_patched():
    with patch_diffusers():
        pass
    name = next((n for n in FRESH_CANDIDATES[1:] if n not in sys.modules), FRESH_CANDIDATES[1])
    saved = sys.modules.pop(name, None)
    try:
        assert importlib.import_module(name).randn_tensor is ORIGINAL
    finally:
        if saved is not None:
            sys.modules[name] = saved


# (g) ----------------------------------------------------------------------------------------
def test_missing_diffusers_raises_import_error():
    code = textwrap.dedent("""
        import sys
        sys.modules["diffusers"] = None
        from fastrand._diffusers_patch import patch_diffusers, unpatch_diffusers
        try:
            patch_diffusers()
        except ImportError as e:
            assert "diffusers" in str(e), str(e)
            print("IMPORTERROR", e)
        else:
            raise SystemExit("no ImportError")
        unpatch_diffusers()
    """)
    env = child_env()
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "IMPORTERROR" in r.stdout and "pip install diffusers" in r.stdout
