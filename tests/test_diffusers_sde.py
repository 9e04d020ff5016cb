"""patch_diffusers() and diffusers' SDE schedulers (DPMSolverSDEScheduler,
CosineDPMSolverMultistepScheduler), plus the patch handle's re-entrancy and reloads.

The schedulers run for real under the patch, with torchsde monkeypatched to fail, so their
Brownian noise can only come from fastrand's tree.
"""

from __future__ import annotations

import copy
import math
import pickle
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


def start(kind, steps, seed, **config):
    """A scheduler set to `steps` and its initial sample; the step() keywords it needs."""
    if kind == "dpm_sde":
        scheduler = DPMSolverSDEScheduler(noise_sampler_seed=seed, **config)
        kwargs = {}
    else:
        scheduler = CosineDPMSolverMultistepScheduler(**config)
        kwargs = {"generator": torch.Generator().manual_seed(seed)}
    scheduler.set_timesteps(steps)
    g = fastrand.Generator(0 if kind == "dpm_sde" else 1)
    sample = fastrand.randn(SHAPE, generator=g) * scheduler.init_noise_sigma
    return scheduler, sample, kwargs


def run_steps(scheduler, sample, kwargs, timesteps):
    for t in timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        sample = scheduler.step(0.1 * model_input, t, sample, **kwargs).prev_sample
    return sample


def run(kind, steps, seed, **config):
    scheduler, sample, kwargs = start(kind, steps, seed, **config)
    return run_steps(scheduler, sample, kwargs, scheduler.timesteps), scheduler


def run_dpm_sde(steps=10, seed=5):
    return run("dpm_sde", steps, seed)


def run_cosine(steps=8, seed=3):
    return run("cosine", steps, seed)


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


# --------------------------------------------------------------------------------------------
# 1- and 2-step schedules (Turbo / Lightning / LCM-style): a 1-step DPMSolverSDEScheduler has
# sigmas [s, 0], so its sampler spans sigma_min == sigma_max
SHORT_CASES = [
    ("dpm_sde", {}),
    ("dpm_sde", {"use_karras_sigmas": True}),
    ("dpm_sde", {"timestep_spacing": "trailing"}),
    ("dpm_sde", {"prediction_type": "v_prediction"}),
    ("dpm_sde", {"timestep_spacing": "trailing", "use_karras_sigmas": True,
                 "prediction_type": "v_prediction"}),
    ("cosine", {}),
    ("cosine", {"prediction_type": "epsilon", "solver_order": 1}),
    ("cosine", {"final_sigmas_type": "sigma_min"}),  # (unpatched: torchsde recurses forever)
]  # fmt: skip


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("kind,config", SHORT_CASES, ids=lambda c: str(c))
def test_one_and_two_step_loops(monkeypatch, kind, config, steps):
    unpatched = run(kind, steps, 5, **config)[0] if kind == "dpm_sde" else None  # torchsde

    def boom(*args, **kwargs):
        raise AssertionError("torchsde was called under patch_diffusers()")

    monkeypatch.setattr(torchsde, "BrownianInterval", boom)
    with fastrand.patch_diffusers():
        a, scheduler = run(kind, steps, 5, **config)
        b, _ = run(kind, steps, 5, **config)
    assert isinstance(scheduler.noise_sampler, fastrand.BrownianTreeNoiseSampler)
    assert a.shape == SHAPE and torch.isfinite(a).all()
    assert np.array_equal(bits(a), bits(b))
    sigmas = scheduler.sigmas
    if kind == "dpm_sde" and (sigmas[sigmas > 0].min() == sigmas.max()):
        assert steps == 1 and scheduler.noise_sampler.trees == []
        # no noise is drawn (the one step ends at sigma 0): the same bits as unpatched
        assert np.array_equal(bits(a), bits(unpatched))


# --------------------------------------------------------------------------------------------
# copying a patched scheduler mid-loop (diffusers deep-copies schedulers, e.g. LTX2 pipelines)
@pytest.mark.parametrize("kind", ["dpm_sde", "cosine"])
def test_patched_scheduler_copies_after_a_step_continue_exactly(no_torchsde, kind):
    with fastrand.patch_diffusers():
        scheduler, sample, kwargs = start(kind, 6, 9)
        timesteps = list(scheduler.timesteps)
        sample = run_steps(scheduler, sample, kwargs, timesteps[:1])
        assert isinstance(scheduler.noise_sampler, fastrand.BrownianTreeNoiseSampler)
        copies = [copy.deepcopy(scheduler), pickle.loads(pickle.dumps(scheduler))]
        for c in copies:
            assert type(c.noise_sampler) is type(scheduler.noise_sampler)
            assert c.noise_sampler.trees[0] is not scheduler.noise_sampler.trees[0]
        expected = run_steps(scheduler, sample, kwargs, timesteps[1:])
        for c in copies:
            got = run_steps(c, sample, kwargs, timesteps[1:])
            assert np.array_equal(bits(got), bits(expected))
        full, _ = run(kind, 6, 9)
    assert np.array_equal(bits(expected), bits(full))


# --------------------------------------------------------------------------------------------
def test_patch_after_reload_replaces_every_definition():
    # modules reloaded before patching: other modules still hold the pre-reload definitions,
    # and the patch must replace those too (fresh process: a reload is for the whole process)
    code = textwrap.dedent("""
        import importlib, sys, types
        import diffusers.utils.torch_utils as tu
        import diffusers.schedulers.scheduling_ddpm as ddpm
        import diffusers.schedulers.scheduling_dpmsolver_sde as sde
        import diffusers.schedulers.scheduling_cosine_dpmsolver_multistep as cos
        import fastrand
        import fastrand._diffusers_patch as dp

        old = [tu.randn_tensor, sde.BrownianTreeNoiseSampler]
        importlib.reload(tu)
        importlib.reload(sde)
        new = [tu.randn_tensor, sde.BrownianTreeNoiseSampler]
        assert ddpm.randn_tensor is old[0] and cos.BrownianTreeNoiseSampler is old[1]
        assert new[0] is not old[0] and new[1] is not old[1]
        ids = {id(o) for o in old + new}

        def holders(objs=ids):
            return {
                (name, attr): value
                for name, m in list(sys.modules.items())
                if name.startswith("diffusers") and isinstance(m, types.ModuleType)
                for attr, value in list(vars(m).items())
                if id(value) in objs
            }

        before = holders()
        assert {
            ("diffusers.utils.torch_utils", "randn_tensor"),
            ("diffusers.schedulers.scheduling_ddpm", "randn_tensor"),
            ("diffusers.schedulers.scheduling_dpmsolver_sde", "BrownianTreeNoiseSampler"),
            ("diffusers.schedulers.scheduling_cosine_dpmsolver_multistep", "BrownianTreeNoiseSampler"),
        } <= set(before), before
        late = "diffusers.schedulers.scheduling_euler_ancestral_discrete"
        assert late not in sys.modules
        for undo in ("handle", "unpatch_diffusers", "block"):
            p = fastrand.patch_diffusers()
            assert not holders(), holders()
            assert ddpm.randn_tensor is dp.randn_tensor and tu.randn_tensor is dp.randn_tensor
            assert cos.BrownianTreeNoiseSampler is sde.BrownianTreeNoiseSampler
            assert issubclass(cos.BrownianTreeNoiseSampler, fastrand.BrownianTreeNoiseSampler)
            if undo == "handle":
                # a module imported while patched binds the replacement; undo gives it the
                # current definition, as an unpatched import would have
                ea = importlib.import_module(late)
                assert ea.randn_tensor is dp.randn_tensor
                p.undo()
                assert ea.randn_tensor is new[0]
                before[(late, "randn_tensor")] = new[0]
            elif undo == "unpatch_diffusers":
                fastrand.unpatch_diffusers()
            else:
                p.undo()
                with fastrand.patch_diffusers():
                    assert not holders()
            after = holders()
            assert after == before, set(after.items()) ^ set(before.items())
        print("RELOAD-BEFORE-PATCH-OK")
    """)
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=300
    )
    assert r.returncode == 0 and "RELOAD-BEFORE-PATCH-OK" in r.stdout, r.stdout + r.stderr
