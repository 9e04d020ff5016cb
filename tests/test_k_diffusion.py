"""fastrand's noise samplers in k-diffusion's own SDE samplers (the README's k-diffusion and
ComfyUI recipes), with 1- and 2-step Turbo / Lightning schedules.

k-diffusion is installed with `pip install --no-deps k-diffusion` (its dependencies are a
training stack); the tests skip where it is not installed. Its package `__init__` imports that
stack (scikit-image, CLIP, torchvision, ...), which the samplers never use, so `sampling.py` is
imported from the installed package without running `__init__`; where torchvision or
torchdiffeq are missing, empty modules stand in for them (only `utils`' image helpers and
`log_likelihood` use them, not the samplers tested here).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

torchsde = pytest.importorskip("torchsde")

import fastrand  # noqa: E402

_MISSING_OK = {
    "torchvision": ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"],
    "torchdiffeq": ["torchdiffeq"],
}


@pytest.fixture(scope="module")
def kds():
    if importlib.util.find_spec("k_diffusion") is None:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion)")
    try:
        sampling = importlib.import_module("k_diffusion.sampling")
    except ImportError:  # the training stack is missing
        sampling = None
    if sampling is not None:
        yield sampling
        return
    for name in [n for n in sys.modules if n.startswith("k_diffusion")]:
        del sys.modules[name]  # what the failed import left
    spec = importlib.util.find_spec("k_diffusion")
    added = []
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules["k_diffusion"] = pkg
    added.append("k_diffusion")
    for top, names in _MISSING_OK.items():
        if importlib.util.find_spec(top) is None:
            for name in names:
                stand_in = types.ModuleType(name)
                if name == "torchdiffeq":
                    stand_in.odeint = None
                sys.modules[name] = stand_in
                added.append(name)
    try:
        sampling = importlib.import_module("k_diffusion.sampling")
        assert sampling.__file__.startswith(pkg.__path__[0])
        yield sampling
    finally:
        for name in list(sys.modules):
            if name.startswith("k_diffusion") or name in added:
                del sys.modules[name]


def bits(t):
    return t.detach().cpu().contiguous().view(torch.int32).numpy()


def model(x, sigma):
    """A denoiser D(x, sigma) of the shape k-diffusion's samplers call."""
    return x * (1 / (1 + sigma**2)).view(-1, 1, 1, 1) + 0.01


def sd_sigmas(timesteps):
    """Stable Diffusion's sigmas at the given timesteps (scaled-linear betas), then 0: the
    schedules of ComfyUI's SDTurboScheduler and of SDXL-Lightning's trailing spacing."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1 - betas, 0)
    sigmas = ((1 - alphas) / alphas) ** 0.5
    return torch.cat([sigmas[list(timesteps)], torch.zeros(1, dtype=torch.float64)]).float()


SCHEDULES = {
    "turbo-1": sd_sigmas([999]),
    "lightning-2": sd_sigmas([999, 499]),
    "turbo-2": sd_sigmas([999, 899]),
}
SAMPLERS = ["sample_dpmpp_sde", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"]
# k-diffusion 0.1.1.post1's 2M/3M SDE samplers fail on a 1-step schedule by themselves
# (UnboundLocalError: `h` is only set on a step that does not end at sigma 0)
CASES = [(s, k) for s in SAMPLERS for k in SCHEDULES if s == "sample_dpmpp_sde" or k != "turbo-1"]


def no_torchsde(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("torchsde was called")

    monkeypatch.setattr(torchsde, "BrownianTree", boom)
    monkeypatch.setattr(torchsde, "BrownianInterval", boom)


def start(sigmas, batch=2):
    g = fastrand.Generator(4)
    return fastrand.randn(batch, 4, 8, 8, generator=g) * sigmas[0]


@pytest.mark.parametrize("sampler,schedule", CASES)
def test_readme_recipe_short_schedules(kds, sampler, schedule, monkeypatch):
    sigmas = SCHEDULES[schedule]
    x = start(sigmas)
    sample = getattr(kds, sampler)
    theirs = sample(model, x, sigmas, disable=True)  # k-diffusion's own sampler (torchsde)
    no_torchsde(monkeypatch)

    def ours(seed):
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        ns = fastrand.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed)
        return sample(model, x, sigmas, noise_sampler=ns, disable=True)

    a, b = ours([1, 2]), ours([1, 2])
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert np.array_equal(bits(a), bits(b))
    if len(sigmas) == 2:  # one step, to sigma 0: no noise is drawn
        assert np.array_equal(bits(a), bits(theirs))
    else:
        assert not np.array_equal(bits(a), bits(theirs))
        single = fastrand.BrownianTreeNoiseSampler(x[1:], sigmas[1], sigmas[0], seed=[2])
        one = sample(model, x[1:], sigmas, noise_sampler=single, disable=True)
        assert np.array_equal(bits(one[0]), bits(a[1]))  # a row depends only on its seed


@pytest.mark.parametrize(
    "sampler,schedule", CASES + [("sample_euler_ancestral", k) for k in SCHEDULES]
)
def test_comfyui_recipe_short_schedules(kds, sampler, schedule, monkeypatch):
    no_torchsde(monkeypatch)
    # ComfyUI's KSampler lets the sampler build its noise sampler from the module globals
    monkeypatch.setattr(kds, "BrownianTreeNoiseSampler", fastrand.BrownianTreeNoiseSampler)
    monkeypatch.setattr(kds, "default_noise_sampler", fastrand.default_noise_sampler)
    sigmas = SCHEDULES[schedule]
    x = start(sigmas)
    torch.manual_seed(11)  # seed=None: one draw from torch's default generator, as k-diffusion
    a = getattr(kds, sampler)(model, x, sigmas, disable=True)
    torch.manual_seed(11)
    b = getattr(kds, sampler)(model, x, sigmas, disable=True)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert np.array_equal(bits(a), bits(b))
