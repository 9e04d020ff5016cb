"""patch_diffusers() and diffusers' SDE schedulers (DPMSolverSDEScheduler,
CosineDPMSolverMultistepScheduler), plus the patch handle's re-entrancy and reloads.

The schedulers run for real under the patch, with torchsde monkeypatched to fail, so their
Brownian noise can only come from fastrand's tree.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
torchsde = pytest.importorskip("torchsde")

import diffusers.schedulers.scheduling_cosine_dpmsolver_multistep as cosine_mod  # noqa: E402
import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm  # noqa: E402
import diffusers.schedulers.scheduling_dpmsolver_sde as sde_mod  # noqa: E402
import diffusers.utils.torch_utils as torch_utils  # noqa: E402
from conftest import child_env  # noqa: E402
from diffusers import CosineDPMSolverMultistepScheduler, DPMSolverSDEScheduler  # noqa: E402

import fastrand  # noqa: E402
import fastrand._diffusers_patch as dp  # noqa: E402
from fastrand._brownian import SAMPLER_STREAM  # noqa: E402

ORIGINAL_SAMPLER = sde_mod.BrownianTreeNoiseSampler
ORIGINAL_RANDN = torch_utils.randn_tensor
SHAPE = (1, 4, 8, 8)


def bits(t):
    return t.detach().cpu().contiguous().view(torch.int32).numpy()


@pytest.fixture(autouse=True)
def _restore():
    dp.unpatch_diffusers()
    yield
    dp.unpatch_diffusers()
    assert sde_mod.BrownianTreeNoiseSampler is ORIGINAL_SAMPLER
    assert cosine_mod.BrownianTreeNoiseSampler is ORIGINAL_SAMPLER
    assert torch_utils.randn_tensor is ORIGINAL_RANDN


@pytest.fixture
def no_torchsde(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("torchsde was called under patch_diffusers()")

    monkeypatch.setattr(torchsde, "BrownianInterval", boom)
    monkeypatch.setattr(torchsde, "BrownianTree", boom, raising=False)


def run_dpm_sde(steps=10, seed=5):
    scheduler = DPMSolverSDEScheduler(noise_sampler_seed=seed)
    scheduler.set_timesteps(steps)
    sample = fastrand.randn(SHAPE, generator=fastrand.Generator(0)) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        sample = scheduler.step(0.1 * model_input, t, sample).prev_sample
    return sample, scheduler


def run_cosine(steps=8, seed=3):
    scheduler = CosineDPMSolverMultistepScheduler()
    scheduler.set_timesteps(steps)
    sample = fastrand.randn(SHAPE, generator=fastrand.Generator(1)) * scheduler.init_noise_sigma
    g = torch.Generator().manual_seed(seed)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        sample = scheduler.step(0.1 * model_input, t, sample, generator=g).prev_sample
    return sample, scheduler


def test_patch_replaces_the_sampler_in_both_modules():
    with fastrand.patch_diffusers():
        for module in (sde_mod, cosine_mod):
            cls = module.BrownianTreeNoiseSampler
            assert cls is not ORIGINAL_SAMPLER
            assert issubclass(cls, fastrand.BrownianTreeNoiseSampler)
    assert sde_mod.BrownianTreeNoiseSampler is ORIGINAL_SAMPLER
    assert cosine_mod.BrownianTreeNoiseSampler is ORIGINAL_SAMPLER
    fastrand.patch_diffusers()  # process-wide, then unpatch_diffusers restores both
    assert cosine_mod.BrownianTreeNoiseSampler is not ORIGINAL_SAMPLER
    fastrand.unpatch_diffusers()
    assert cosine_mod.BrownianTreeNoiseSampler is ORIGINAL_SAMPLER


def test_dpm_solver_sde_runs_without_torchsde_and_is_reproducible(no_torchsde):
    with fastrand.patch_diffusers():
        a, scheduler = run_dpm_sde()
        b, _ = run_dpm_sde()
        c, _ = run_dpm_sde(seed=6)
    assert isinstance(scheduler.noise_sampler, fastrand.BrownianTreeNoiseSampler)
    assert torch.isfinite(a).all()
    assert np.array_equal(bits(a), bits(b))
    assert not np.array_equal(bits(a), bits(c))
    with pytest.raises(AssertionError, match="torchsde was called"):
        run_dpm_sde()  # unpatched: diffusers' own sampler, i.e. torchsde


def test_cosine_dpm_solver_runs_without_torchsde_and_is_reproducible(no_torchsde):
    with fastrand.patch_diffusers():
        a, scheduler = run_cosine()
        b, _ = run_cosine()
        c, _ = run_cosine(seed=4)
    assert isinstance(scheduler.noise_sampler, fastrand.BrownianTreeNoiseSampler)
    assert scheduler.noise_sampler.trees[0].seed == 3  # generator.initial_seed(), as diffusers
    assert torch.isfinite(a).all()
    assert np.array_equal(bits(a), bits(b))
    assert not np.array_equal(bits(a), bits(c))


class _TreeAsInterval:
    """torchsde.BrownianInterval's interface over a fastrand.BrownianTree (same seed)."""

    def __init__(self, t0, t1, size, dtype, device, entropy, tol, **kwargs):
        self.tree = fastrand.BrownianTree(
            float(t0), float(t1), size, seed=entropy, stream=SAMPLER_STREAM, dtype=dtype,
            device=device, tol=tol,
        )  # fmt: skip

    def __call__(self, ta, tb):
        return self.tree(ta, tb)


@pytest.mark.parametrize(
    "transform,seed",
    [(lambda s: s, 11), (lambda s: s, [11, 12]), (lambda s: -s.log(), 13), (lambda s: s.log(), 14)],
)
def test_semantics_match_diffusers_sampler(monkeypatch, transform, seed):
    # diffusers' own BrownianTreeNoiseSampler, with torchsde's tree swapped for fastrand's: its
    # sorting, signs, transform and normalisation must give what fastrand's sampler gives
    monkeypatch.setattr(torchsde, "BrownianInterval", _TreeAsInterval)
    x = torch.zeros(2, 3, 5)
    theirs = ORIGINAL_SAMPLER(x, 0.0292, 14.6146, seed, transform=transform)
    ours = fastrand.BrownianTreeNoiseSampler(x, 0.0292, 14.6146, seed, transform=transform)
    sigmas = torch.tensor([14.6146, 9.7, 6.1, 3.3, 1.01, 0.2, 0.0292])
    for s, sn in zip(sigmas, sigmas[1:]):
        mid = (s * sn).sqrt()
        for a, b in [(s, mid), (s, sn), (sn, s)]:
            expected, got = theirs(a, b), ours(a, b)
            assert got.shape == expected.shape and got.dtype == expected.dtype
            torch.testing.assert_close(got, expected, rtol=2e-6, atol=1e-6)


def test_second_with_on_one_handle_keeps_the_patch():
    p = fastrand.patch_diffusers()
    with p:
        with p:  # nested: takes a patch of its own
            assert sde_mod.BrownianTreeNoiseSampler is not ORIGINAL_SAMPLER
        assert p.active and scheduling_ddpm.randn_tensor is dp.randn_tensor
        assert cosine_mod.BrownianTreeNoiseSampler is not ORIGINAL_SAMPLER
    assert not p.active and scheduling_ddpm.randn_tensor is ORIGINAL_RANDN

    keep = fastrand.patch_diffusers()  # process-wide
    h = fastrand.patch_diffusers()
    with h:
        pass
    with h:  # a second, later block on the same handle
        with h:
            pass
        assert scheduling_ddpm.randn_tensor is dp.randn_tensor
    assert keep.active and not h.active
    assert scheduling_ddpm.randn_tensor is dp.randn_tensor
    with keep:  # the handle's own patch belongs to its first block
        with keep:
            pass
        assert keep.active
    assert not keep.active and scheduling_ddpm.randn_tensor is ORIGINAL_RANDN

    q = fastrand.patch_diffusers()
    with q:
        q.undo()  # undo releases everything the handle holds; the block's exit is a no-op
        assert not q.active and scheduling_ddpm.randn_tensor is ORIGINAL_RANDN
    assert scheduling_ddpm.randn_tensor is ORIGINAL_RANDN


def test_reload_keeps_the_patch():
    # in a fresh process: reloading changes diffusers' originals for the rest of the process
    code = textwrap.dedent("""
        import importlib
        import diffusers.utils.torch_utils as tu
        import diffusers.schedulers.scheduling_dpmsolver_sde as sde
        import diffusers.schedulers.scheduling_cosine_dpmsolver_multistep as cos
        import fastrand
        import fastrand._diffusers_patch as dp

        old_randn, old_sampler = tu.randn_tensor, sde.BrownianTreeNoiseSampler
        with fastrand.patch_diffusers():
            importlib.reload(tu)
            assert tu.randn_tensor is dp.randn_tensor, tu.randn_tensor
            importlib.reload(sde)
            assert sde.BrownianTreeNoiseSampler is dp._REPLACEMENTS["BrownianTreeNoiseSampler"]
            importlib.reload(cos)
            assert cos.BrownianTreeNoiseSampler is sde.BrownianTreeNoiseSampler
        # undoing puts back the reloaded definitions
        assert tu.randn_tensor is not old_randn and tu.randn_tensor is not dp.randn_tensor
        assert tu.randn_tensor.__module__ == "diffusers.utils.torch_utils"
        new_sampler = sde.BrownianTreeNoiseSampler
        assert new_sampler is not old_sampler and new_sampler.__module__ == sde.__name__
        assert cos.BrownianTreeNoiseSampler is new_sampler
        print("RELOAD-OK")
    """)
    env = child_env()
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0 and "RELOAD-OK" in r.stdout, r.stdout + r.stderr


def test_sampler_noise_is_standard_normal_under_the_dpm_pattern():
    # the 25-step DPM-SDE query pattern on one 1e5-element tree: each call ~ N(0, 1)
    x = torch.zeros(100_000)
    scheduler = DPMSolverSDEScheduler()
    scheduler.set_timesteps(25)
    sigmas = scheduler.sigmas
    sampler = fastrand.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), 9)
    se = 1 / math.sqrt(x.numel())
    for s, sn in list(zip(sigmas, sigmas[1:]))[::8]:
        if sn == 0:
            continue
        for b in ((s * sn).sqrt(), sn):
            n = sampler(s, b).double()
            assert abs(n.mean().item()) < 5 * se and abs(n.var().item() - 1) < 5 * math.sqrt(2) * se
