"""fastrand.comfyui: the ComfyUI node pack, against ComfyUI's call conventions.

ComfyUI is not a pip package, so most tests exercise the nodes through the conventions read in
its public repository (comfyanonymous/ComfyUI), at these versions:
- comfy/sample.py, 2025-26 (prepare_noise_inner): prepare_noise(latent_image, seed, noise_inds)
  is torch.manual_seed(seed), torch.randn(size, float32, device="cpu").to(latent dtype); with
  noise_inds it draws rows 0..max(inds) in turn and picks them; a NestedTensor draws its parts
  from one generator in turn;
- comfy_extras/nodes_custom_sampler.py @ 065c1df017d0: Noise_RandomNoise (seed,
  generate_noise(latent dict)), SamplerCustomAdvanced calls guider.sample(noise.generate_noise(
  latent), ..., seed=noise.seed), AddNoise uses the noise on the latent's device;
- comfy/k_diffusion/sampling.py @ 02159d814dee: the samplers look up default_noise_sampler(x,
  seed=seed) (a torch.Generator on x's device, seeded seed + 1 on the CPU) and
  BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, cpu=True|False) in the module's
  globals at call time and call noise_sampler(sigma, sigma_next);
- comfy/samplers.py, 2025-26: KSAMPLER.sample(model_wrap, sigmas, extra_args, callback, noise,
  latent_image, denoise_mask, disable_pbar) calls sampler_function(model_k, noise, sigmas,
  extra_args=..., callback=..., disable=..., **extra_options) with extra_args["seed"];
  CFGGuider runs OUTER_SAMPLE wrappers as executor(noise, latent_image, sampler, sigmas,
  denoise_mask, callback, disable_pbar, seed, latent_shapes=...) and SAMPLER_SAMPLE wrappers
  around sampler.sample;
- nodes.py @ 01094316268c (load_custom_node: a folder's module is registered in sys.modules under
  the folder's name) and common_ksampler (prepare_noise(latent, seed, batch_index)).
The last section runs real ComfyUI when COMFYUI_PATH names an importable checkout.
"""

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types

import numpy as np
import pytest
import torch
from conftest import bits
from conftest import ref as reference

import fastrand
import fastrand.comfyui as fc
from fastrand import _brownian
from fastrand.comfyui import __main__ as installer

SEED = 0xC0FFEE_D15EA5E
SHAPE = (3, 4, 6, 10)
N = 4 * 6 * 10  # values per batch row


def ref_rows(seed, rows, n=N, stream=0):
    """The NumPy reference's float32 noise for batch rows `rows` (row k at offset k * n)."""
    return np.stack([reference.normal(seed, stream, k * n, n, "float32") for k in rows])


def latent(shape=SHAPE, dtype=torch.float32, **extra):
    return {"samples": torch.zeros(shape, dtype=dtype), **extra}


# --------------------------------------------------------------------------------------------
# the package without ComfyUI
def test_imports_without_comfyui():
    code = "import sys, fastrand.comfyui; print(sorted(m for m in sys.modules if m.split('.')[0] == 'comfy'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_node_classes_follow_comfyui_node_interface():
    assert set(fc.NODE_DISPLAY_NAME_MAPPINGS) == set(fc.NODE_CLASS_MAPPINGS)
    assert sorted(fc.NODE_DISPLAY_NAME_MAPPINGS.values()) == [
        "KSampler noise (fastrand)",
        "Noise (fastrand)",
        "Sampler noise (fastrand)",
    ]
    for name, cls in fc.NODE_CLASS_MAPPINGS.items():
        inputs = cls.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional", "hidden"} and inputs["required"]
        for spec in inputs["required"].values():
            assert isinstance(spec, tuple) and isinstance(spec[0], str) and spec[0].isupper()
        assert isinstance(cls.RETURN_TYPES, tuple) and all(
            isinstance(t, str) for t in cls.RETURN_TYPES
        )
        assert callable(getattr(cls(), cls.FUNCTION)), name
        assert isinstance(cls.CATEGORY, str) and isinstance(cls.DESCRIPTION, str)
    seed = fc.FastrandNoise.INPUT_TYPES()["required"]["noise_seed"]
    assert seed[0] == "INT" and seed[1]["min"] == 0 and seed[1]["max"] == 2**64 - 1


# --------------------------------------------------------------------------------------------
# Noise (fastrand): a NOISE for SamplerCustomAdvanced
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_noise_node_gives_the_streams_noise(dtype):
    (noise,) = fc.FastrandNoise().get_noise(noise_seed=SEED)
    assert noise.seed == SEED  # SamplerCustomAdvanced passes noise.seed on to the sampler
    out = noise.generate_noise(latent(dtype=dtype))
    assert out.shape == SHAPE and out.dtype == dtype and out.device.type == "cpu"
    want = torch.from_numpy(ref_rows(SEED, range(3))).reshape(SHAPE).to(dtype)
    assert np.array_equal(bits(out), bits(want))


def test_a_batch_row_does_not_depend_on_the_batch_size():
    small = fc.Noise(SEED).generate_noise(latent((2, 4, 6, 10)))
    large = fc.Noise(SEED).generate_noise(latent((5, 4, 6, 10)))
    assert np.array_equal(bits(small), bits(large[:2]))


def test_batch_index_picks_rows_as_prepare_noise_does():
    out = fc.Noise(SEED).generate_noise(latent(batch_index=[4, 1, 4]))
    assert np.array_equal(bits(out.reshape(3, -1)), bits(ref_rows(SEED, [4, 1, 4])))
    full = fc.Noise(SEED).generate_noise(latent((5, 4, 6, 10)))
    assert np.array_equal(bits(out), bits(full[[4, 1, 4]]))


@pytest.mark.parametrize(
    "batch_index, error, match",
    [
        ([0, 1], ValueError, "batch_index: 2 entries for a latent with a batch of 3"),
        ([0, -1, 2], ValueError, "batch_index: expected indices >= 0"),
        ([0, 1.0, 2], TypeError, "batch_index: expected integers"),
        ([0, True, 2], TypeError, "batch_index: expected integers"),
    ],
)
def test_bad_batch_index_is_refused(batch_index, error, match):
    with pytest.raises(error, match=match):
        fc.Noise(1).generate_noise(latent(batch_index=batch_index))


def test_bad_seed_and_latent_are_refused():
    assert fc.Noise(2**64 - 1).seed == 2**64 - 1  # the top of ComfyUI's seed widget
    with pytest.raises(ValueError, match="seed"):
        fc.Noise(2**64)
    with pytest.raises(TypeError, match="seed"):
        fc.Noise("1")
    with pytest.raises(ValueError, match="samples: expected a floating-point latent"):
        fc.latent_noise(torch.zeros(2, 3, dtype=torch.int32), 1)


class NestedLatent:
    """What fastrand uses of comfy.nested_tensor.NestedTensor (several latents sampled together,
    e.g. LTXV video and audio): is_nested, unbind(), and the constructor from a list."""

    is_nested = True

    def __init__(self, tensors):
        self.tensors = list(tensors)

    def unbind(self):
        return self.tensors


def test_nested_latent_draws_part_j_from_stream_j():
    parts = [torch.zeros(2, 4, 6, 10), torch.zeros(2, 8, 5, dtype=torch.float16)]
    out = fc.Noise(SEED).generate_noise({"samples": NestedLatent(parts), "batch_index": [3, 0]})
    assert isinstance(out, NestedLatent)
    video, audio = out.unbind()
    assert np.array_equal(bits(video.reshape(2, -1)), bits(ref_rows(SEED, [3, 0])))
    want = torch.from_numpy(ref_rows(SEED, [3, 0], n=40, stream=1)).reshape(2, 8, 5)
    assert np.array_equal(bits(audio), bits(want.half()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_noise_is_drawn_on_the_latents_device_and_equal_everywhere():
    lat = latent(batch_index=[2, 0, 1])
    cpu = fc.Noise(SEED).generate_noise(lat)
    gpu = fc.Noise(SEED).generate_noise({**lat, "samples": lat["samples"].cuda()})
    assert gpu.device.type == "cuda" and np.array_equal(bits(gpu), bits(cpu))


# --------------------------------------------------------------------------------------------
# Sampler noise (fastrand): the k-diffusion module's two noise-sampler names, scoped
KDIFFUSION = textwrap.dedent(
    '''
    """The shape of comfy/k_diffusion/sampling.py's noise: samplers build their noise sampler
    from these module globals at call time (a stand-in: ComfyUI is not installable here)."""
    import torch

    def default_noise_sampler(x, seed=None):
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed + 1 if x.device == torch.device("cpu") else seed)
        return lambda sigma, sigma_next: torch.randn(
            x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    class BrownianTreeNoiseSampler:
        def __init__(self, x, sigma_min, sigma_max, seed=None, transform=lambda x: x, cpu=False):
            self.x, self.seed = x, seed

        def __call__(self, sigma, sigma_next):
            return torch.randn(self.x.size(), generator=torch.Generator().manual_seed(self.seed))

    def sample_euler_ancestral(model, x, sigmas, extra_args=None, noise_sampler=None):
        seed = (extra_args or {}).get("seed", None)
        noise_sampler = default_noise_sampler(x, seed=seed) if noise_sampler is None else noise_sampler
        return [noise_sampler(sigmas[i], sigmas[i + 1]) for i in range(len(sigmas) - 1)]

    def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, noise_sampler=None):
        seed = (extra_args or {}).get("seed", None)
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        if noise_sampler is None:
            noise_sampler = BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, cpu=True)
        return [noise_sampler(sigmas[i], sigmas[i + 1]) for i in range(len(sigmas) - 2)]
    '''
)
SIGMAS = torch.tensor([14.6, 6.1, 2.2, 0.7, 0.03, 0.0])
X = torch.zeros(2, 4, 6, 10)
X_NUMEL = X.numel()


@pytest.fixture
def kds(monkeypatch):
    """A fresh stand-in module, registered as comfy.k_diffusion.sampling for this test."""
    module = types.ModuleType("comfy.k_diffusion.sampling")
    exec(compile(KDIFFUSION, "comfy/k_diffusion/sampling.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "comfy.k_diffusion.sampling", module)
    return module


def ancestral_ref(seed, steps, n=X_NUMEL):
    """fastrand's ancestral noise: draw i of Generator(seed, ANCESTRAL_STREAM), from the reference."""
    return [
        reference.normal(seed, _brownian.ANCESTRAL_STREAM, i * n, n, "float32")
        for i in range(steps)
    ]


def test_sampler_noise_gives_the_samplers_fastrands_noise(kds):
    theirs = kds.__dict__["default_noise_sampler"]
    want_theirs = theirs(X, seed=7)(None, None)
    with fc.sampler_noise():
        drawn = kds.sample_euler_ancestral(None, X, SIGMAS, {"seed": 7})
        tree = kds.BrownianTreeNoiseSampler(X, 0.03, 14.6, seed=7, cpu=True)
    for got, want in zip(drawn, ancestral_ref(7, 5)):
        assert np.array_equal(bits(got.reshape(-1)), bits(want))
    assert isinstance(tree, fastrand.BrownianTreeNoiseSampler)
    direct = fastrand.BrownianTreeNoiseSampler(X, 0.03, 14.6, seed=7)
    assert np.array_equal(bits(tree(6.1, 2.2)), bits(direct(6.1, 2.2)))
    # outside the block the module is ComfyUI's again, bit for bit
    again = kds.sample_euler_ancestral(None, X, SIGMAS, {"seed": 7})[0]
    assert np.array_equal(bits(again), bits(want_theirs))
    plain = kds.BrownianTreeNoiseSampler(X, 0.03, 14.6, seed=7)
    assert type(plain) is kds.BrownianTreeNoiseSampler and plain.seed == 7
    assert isinstance(plain, kds.BrownianTreeNoiseSampler.__mro__[1])  # ComfyUI's class


def test_sampler_noise_reaches_sde_samplers(kds):
    with fc.sampler_noise():
        drawn = kds.sample_dpmpp_2m_sde(None, X, SIGMAS, {"seed": 11})
    tree = fastrand.BrownianTreeNoiseSampler(X, SIGMAS[4], SIGMAS[0], seed=11, cpu=True)
    for i, got in enumerate(drawn):
        assert np.array_equal(bits(got), bits(tree(SIGMAS[i], SIGMAS[i + 1])))


def test_sampler_noise_does_not_reach_other_threads(kds):
    want = kds.__dict__["default_noise_sampler"](X, seed=3)(None, None)
    seen = []
    with fc.sampler_noise():
        t = threading.Thread(target=lambda: seen.append(kds.default_noise_sampler(X, seed=3)(0, 0)))
        t.start()
        t.join()
    assert np.array_equal(bits(seen[0]), bits(want))


def test_sampler_noise_ends_on_exceptions_and_nests(kds):
    with pytest.raises(KeyError):
        with fc.sampler_noise():
            with fc.sampler_noise():
                pass
            assert isinstance(
                kds.BrownianTreeNoiseSampler(X, 1, 2, seed=1), fastrand.BrownianTreeNoiseSampler
            )
            raise KeyError
    assert not isinstance(
        kds.BrownianTreeNoiseSampler(X, 1, 2, seed=1), fastrand.BrownianTreeNoiseSampler
    )


def test_sampler_noise_wraps_a_later_replacement(kds):
    with fc.sampler_noise():
        pass
    installed = kds.default_noise_sampler, kds.BrownianTreeNoiseSampler
    with fc.sampler_noise():  # bound once: a second block installs nothing
        pass
    assert (kds.default_noise_sampler, kds.BrownianTreeNoiseSampler) == installed
    kds.default_noise_sampler = lambda x, seed=None: lambda a, b: "another pack's"
    assert kds.default_noise_sampler(X, seed=1)(0, 0) == "another pack's"
    with fc.sampler_noise():
        got = kds.default_noise_sampler(X, seed=1)(0, 0)
    assert np.array_equal(bits(got.reshape(-1)), bits(ancestral_ref(1, 1)[0]))
    assert kds.default_noise_sampler(X, seed=1)(0, 0) == "another pack's"


def test_sampler_noise_refuses_a_module_without_the_names():
    with pytest.raises(ValueError, match="module: empty has no callable default_noise_sampler"):
        with fc.sampler_noise(types.ModuleType("empty")):
            pass


class KSampler:
    """ComfyUI's KSAMPLER as far as fastrand uses it: sample() runs the sampler function."""

    def __init__(self, function):
        self.sampler_function = function

    def sample(
        self,
        model_wrap,
        sigmas,
        extra_args,
        callback,
        noise,
        latent_image=None,
        denoise_mask=None,
        disable_pbar=False,
    ):
        return self.sampler_function(model_wrap, noise, sigmas, extra_args=extra_args)

    def max_denoise(self, model_wrap, sigmas):
        return True


def test_sampler_node_scopes_one_sampler(kds):
    plain = KSampler(kds.sample_euler_ancestral)
    (ours,) = fc.FastrandSamplerNoise().get_sampler(sampler=plain)
    assert ours.sampler_function is plain.sampler_function and ours.max_denoise(None, SIGMAS)
    got = ours.sample(None, SIGMAS, {"seed": 5}, None, X)
    for g, want in zip(got, ancestral_ref(5, 5)):
        assert np.array_equal(bits(g.reshape(-1)), bits(want))
    theirs = plain.sample(None, SIGMAS, {"seed": 5}, None, X)  # the same sampler kind, unwrapped
    assert np.array_equal(
        bits(theirs[0]), bits(kds.__dict__["default_noise_sampler"](X, seed=5)(0, 0))
    )
    with pytest.raises(TypeError, match="sampler: expected a ComfyUI SAMPLER"):
        fc.Sampler(object())


# --------------------------------------------------------------------------------------------
# KSampler noise (fastrand): model wrappers around ComfyUI's sampling
def comfy_seed_noise(shape, seed, dtype=torch.float32, rows=None):
    """comfy.sample.prepare_noise(latent, seed, rows) as the version read draws it (there from
    torch.manual_seed(seed), the default CPU generator: the same values as a fresh one)."""
    generator = torch.Generator().manual_seed(seed)
    if rows is None:
        return torch.randn(shape, dtype=torch.float32, generator=generator, device="cpu").to(dtype)
    drawn = [torch.randn((1, *shape[1:]), generator=generator) for _ in range(max(rows) + 1)]
    return torch.cat([drawn[k] for k in rows]).to(dtype)


def run_outer(noise, seed, **kwargs):
    seen = {}

    def executor(
        noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kw
    ):
        seen.update(noise=noise, seed=seed, kwargs=kw)
        return "samples"

    assert (
        fc._outer_sample(
            executor, noise, "latent", "sampler", SIGMAS, None, None, True, seed, **kwargs
        )
        == "samples"
    )
    assert seen["seed"] == seed and seen["kwargs"] == kwargs
    return seen["noise"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ksampler_noise_replaces_the_seeds_noise(dtype):
    comfy = comfy_seed_noise(SHAPE, SEED, dtype)
    got = run_outer(comfy, SEED, latent_shapes=[SHAPE])
    want = torch.from_numpy(ref_rows(SEED, range(3))).reshape(SHAPE).to(dtype)
    assert np.array_equal(bits(got), bits(want))


def test_ksampler_noise_leaves_other_noise_alone(caplog):
    zeros = torch.zeros(SHAPE)  # KSamplerAdvanced with add_noise off, DisableNoise
    assert run_outer(zeros, SEED) is zeros
    other_seed = comfy_seed_noise(SHAPE, SEED + 1)
    assert run_outer(other_seed, SEED) is other_seed
    ours = fc.Noise(SEED).generate_noise(latent())  # Noise (fastrand) into SamplerCustomAdvanced
    assert run_outer(ours, SEED) is ours
    with caplog.at_level(logging.INFO, logger="fastrand.comfyui"):
        picked = comfy_seed_noise(SHAPE, SEED, rows=[2, 0, 1])  # a batch_index latent
        assert run_outer(picked, SEED) is picked
    assert "left as drawn" in caplog.text
    noise = comfy_seed_noise(SHAPE, SEED)
    assert run_outer(noise, None) is noise
    assert run_outer(noise, SEED, latent_shapes=[SHAPE, (1, 8, 5)]) is noise  # nested: packed


def test_ksampler_noise_keeps_torchs_default_generator():
    torch.manual_seed(1)
    before = torch.get_rng_state()
    run_outer(comfy_seed_noise(SHAPE, SEED, rows=[1, 0, 2]), SEED)
    assert torch.equal(torch.get_rng_state(), before)


def test_sampler_sample_wrapper_scopes_the_run(kds):
    def executor(*args, **kwargs):
        return kds.default_noise_sampler(X, seed=9)(0, 0), args, kwargs

    got, args, kwargs = fc._sampler_sample(executor, 1, 2, disable_pbar=True)
    assert args == (1, 2) and kwargs == {"disable_pbar": True}
    assert np.array_equal(bits(got.reshape(-1)), bits(ancestral_ref(9, 1)[0]))


class ModelPatcher:
    """comfy.model_patcher.ModelPatcher as node packs use it: clone(), add_wrapper_with_key(kind,
    key, fn) and remove_wrappers_with_key(kind, key)."""

    def __init__(self, wrappers=None):
        self.wrappers = dict(wrappers or {})

    def clone(self):
        return ModelPatcher({k: dict(v) for k, v in self.wrappers.items()})

    def add_wrapper_with_key(self, kind, key, fn):
        self.wrappers.setdefault(kind, {}).setdefault(key, []).append(fn)

    def remove_wrappers_with_key(self, kind, key):
        self.wrappers.get(kind, {}).pop(key, None)


def test_ksampler_noise_node_adds_the_wrappers_to_a_clone(monkeypatch):
    wrappers = types.SimpleNamespace(OUTER_SAMPLE="outer_sample", SAMPLER_SAMPLE="sampler_sample")
    extension = types.ModuleType("comfy.patcher_extension")
    extension.WrappersMP = wrappers
    monkeypatch.setitem(sys.modules, "comfy.patcher_extension", extension)
    model = ModelPatcher()
    (patched,) = fc.FastrandKSamplerNoise().patch(model, initial_noise=True, sampler_noise=True)
    assert model.wrappers == {} and patched is not model
    assert patched.wrappers["outer_sample"]["fastrand"] == [fc._outer_sample]
    assert patched.wrappers["sampler_sample"]["fastrand"] == [fc._sampler_sample]
    (twice,) = fc.FastrandKSamplerNoise().patch(patched, initial_noise=True, sampler_noise=False)
    assert twice.wrappers["outer_sample"]["fastrand"] == [fc._outer_sample]
    assert "fastrand" not in twice.wrappers["sampler_sample"]


# --------------------------------------------------------------------------------------------
# installing into ComfyUI
def load_like_comfyui(folder):
    """nodes.load_custom_node: the folder's __init__.py, registered under the folder's name."""
    spec = importlib.util.spec_from_file_location(folder.name, folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[folder.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[folder.name]
    return module


def test_install_writes_a_node_folder_comfyui_loads(tmp_path, capsys):
    (tmp_path / "custom_nodes").mkdir()
    assert installer.main(["install", str(tmp_path)]) == 0
    folder = tmp_path / "custom_nodes" / "fastrand-nodes"
    assert str(folder / "__init__.py") in capsys.readouterr().out
    module = load_like_comfyui(folder)
    assert module.NODE_CLASS_MAPPINGS is fc.NODE_CLASS_MAPPINGS
    assert module.NODE_DISPLAY_NAME_MAPPINGS is fc.NODE_DISPLAY_NAME_MAPPINGS
    assert sys.modules["fastrand"] is fastrand  # the folder's name does not hide the package
    assert installer.install(tmp_path) == folder / "__init__.py"  # again: the same file


def test_install_leaves_other_folders_alone(tmp_path, capsys):
    assert installer.main(["install", str(tmp_path)]) == 1
    assert "no custom_nodes folder" in capsys.readouterr().err
    folder = tmp_path / "custom_nodes" / "fastrand-nodes"
    folder.mkdir(parents=True)
    (folder / "nodes.py").write_text("# someone else's\n")
    with pytest.raises(FileExistsError, match="not fastrand's node folder"):
        installer.install(tmp_path)
    assert not (folder / "__init__.py").exists()


# --------------------------------------------------------------------------------------------
# real ComfyUI (COMFYUI_PATH: a ComfyUI checkout whose requirements are installed)
@pytest.fixture(scope="module")
def comfy():
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("COMFYUI_PATH is not set")
    sys.path.insert(0, path)
    try:
        return types.SimpleNamespace(
            sample=importlib.import_module("comfy.sample"),
            samplers=importlib.import_module("comfy.samplers"),
            kds=importlib.import_module("comfy.k_diffusion.sampling"),
            nested=importlib.import_module("comfy.nested_tensor"),
            extension=importlib.import_module("comfy.patcher_extension"),
        )
    except ImportError as e:
        pytest.skip(f"ComfyUI at COMFYUI_PATH is not importable: {e}")


class ToySampling:
    """The model_sampling attributes KSAMPLER and the EPS samplers read."""

    sigma_max, sigma_min = torch.tensor(14.6), torch.tensor(0.03)

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return noise * (torch.sqrt(1.0 + sigma**2) if max_denoise else sigma) + latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class ToyGuider:
    """A CFGGuider's place in KSAMPLER.sample: model_wrap(x, sigma, ...) is the denoised x."""

    def __init__(self):
        ms = ToySampling()
        self.inner_model = types.SimpleNamespace(model_sampling=ms)
        self.model_patcher = types.SimpleNamespace(get_model_object=lambda name: ms)

    def __call__(self, x, sigma, model_options=None, seed=None, **kwargs):
        return x / (1 + sigma.reshape(-1, *[1] * (x.dim() - 1)) ** 2)


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde_gpu"])
def test_real_comfyui_sampler_runs_with_fastrands_noise(comfy, name):
    noise, seed = fc.Noise(SEED).generate_noise(latent((1, 4, 6, 10))), 1234

    def run(sampler):
        return sampler.sample(
            ToyGuider(),
            SIGMAS,
            {"seed": seed},
            None,
            noise.clone(),
            torch.zeros_like(noise),
            None,
            True,
        )

    theirs = run(comfy.samplers.ksampler(name))
    ours = run(fc.FastrandSamplerNoise().get_sampler(comfy.samplers.ksampler(name))[0])
    if "sde" in name:
        ns = fastrand.BrownianTreeNoiseSampler(noise, SIGMAS[4], SIGMAS[0], seed=seed)
    else:
        ns = fastrand.default_noise_sampler(noise, seed=seed)
    explicit = run(comfy.samplers.ksampler(name, {"noise_sampler": ns}))
    assert np.array_equal(bits(ours), bits(explicit))
    assert not np.array_equal(bits(ours), bits(theirs))
    assert np.array_equal(bits(run(comfy.samplers.ksampler(name))), bits(theirs))  # no leak


def test_real_comfyui_noise_conventions(comfy):
    lat = torch.zeros(SHAPE)
    plain = comfy.sample.prepare_noise(lat, SEED)
    assert fc._is_comfy_seed_noise(plain, SEED)
    assert not fc._is_comfy_seed_noise(comfy.sample.prepare_noise(lat, SEED, [2, 0, 1]), SEED)
    nested = comfy.nested.NestedTensor([torch.zeros(2, 4, 6, 10), torch.zeros(2, 8, 5)])
    out = fc.Noise(SEED).generate_noise({"samples": nested})
    assert isinstance(out, comfy.nested.NestedTensor)
    assert np.array_equal(bits(out.unbind()[0].reshape(2, -1)), bits(ref_rows(SEED, [0, 1])))
    outer = comfy.extension.WrapperExecutor.new_class_executor(
        lambda *args, **kwargs: args[0], None, [fc._outer_sample]
    )
    got = outer.execute(plain, lat, None, SIGMAS, None, None, True, SEED, latent_shapes=[SHAPE])
    assert np.array_equal(bits(got.reshape(3, -1)), bits(ref_rows(SEED, range(3))))
