"""fastrand.distributed on torch.distributed (gloo, CPU): every rank draws only its shard, and
the shards together equal the single-device draw bit for bit.

The processes are this file run as a script (``python tests/test_distributed.py --worker ...``),
started once per world size (4, then 2 and 1 for the data-parallel recipe) on a free port with a
timeout, so a hang fails instead of blocking; each rank runs every check and writes what failed.
The single-device tensor is ``fastrand.randn`` of the same generator state; the shard rule is
checked against ``distribute_tensor`` of it (``src_data_rank=None``: torch's own chunking,
without communication) and the shards against the full tensor through ``full_tensor()``.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIMEOUT_S = 180  # seconds for all the ranks of this file; a hang fails the tests

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed unavailable"
)


# ============================================================================================
# worker side (runs in the spawned ranks)
DTYPES = ("float32", "float16", "bfloat16", "float64")
SHAPES = [(7, 5, 6), (3, 2, 9), (8, 4, 4), (1, 3, 4)]  # uneven, empty shards, even, tiny
# mesh shape -> placement specs ("S<d>" = Shard(d), "R" = Replicate())
PLACEMENTS = {
    (4,): ["S0", "S1", "S2", "S-1", "R"],
    (2, 2): [
        "S0,S1",
        "S1,S0",
        "S0,S0",  # two Shards of one tensor dimension, nested in mesh-dimension order
        "S2,S2",
        "S-1,S1",
        "R,S2",
        "S0,R",
        "R,R",
    ],
}
DP_SHAPE = (4, 6, 6)  # one sample of the data-parallel recipe
DP_BATCH = 8
MEM_SHAPE = (4096, 32768)  # float32: 512 MiB global, 128 MiB a rank


def _placements(spec):
    from torch.distributed.tensor import Replicate, Shard

    return [Replicate() if p == "R" else Shard(int(p[1:])) for p in spec.split(",")]


def _ibits(t):
    t = t.detach().cpu().contiguous()
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _same(a, b, what):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert torch.equal(_ibits(a), _ibits(b)), f"{what}: bits differ"


def _generators(kind, seed, offset):
    """Two generators in the same state (one for the sharded draw, one for the reference)."""
    import fastrand

    if kind == "fastrand":
        return fastrand.Generator(seed, stream=3, offset=offset), fastrand.Generator(
            seed, stream=3, offset=offset
        )
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)


def _check_case(mesh, spec, shape, dtype, gen_kind, kind="normal", full=True):
    from torch.distributed.tensor import distribute_tensor

    import fastrand
    import fastrand.distributed as fd

    dt = getattr(torch, dtype)
    pl = _placements(spec)
    g, g_ref = _generators(gen_kind, seed=sum(shape) + len(spec), offset=5)
    draw, single = (fd.randn, fastrand.randn) if kind == "normal" else (fd.rand, fastrand.rand)
    d = draw(*shape, generator=g, dtype=dt, device_mesh=mesh, placements=pl)
    ref = single(*shape, generator=g_ref, dtype=dt)
    what = f"{kind} {spec} {shape} {dtype} {gen_kind}"
    assert tuple(d.shape) == shape and d.stride() == ref.stride(), what
    assert d.dtype == dt and d.device_mesh == mesh, what
    want = distribute_tensor(ref, mesh, pl, src_data_rank=None)
    error = None
    try:
        assert tuple(d.placements) == tuple(want.placements), what
        _same(d.to_local(), want.to_local(), what + " (local shard)")
    except AssertionError as e:
        error = e
    # every rank learns whether every shard was right before the all-gather below (a wrong
    # shard shape would make the collective itself fail or hang)
    flag = torch.tensor([0 if error else 1])
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    if error:
        raise error
    assert int(flag) == 1, what + ": another rank's shard differs"
    if full:
        _same(d.full_tensor(), ref, what + " (full_tensor)")
    if gen_kind == "fastrand":  # in step with the single-device draw
        assert g.get_offset() == g_ref.get_offset(), what
    else:
        after, after_ref = fastrand.randn(3, generator=g), fastrand.randn(3, generator=g_ref)
        _same(after, after_ref, what + " (generator in step)")


def _placement_check(mesh_shape, spec):
    def check(ctx):
        mesh = ctx["meshes"][mesh_shape]
        for i, shape in enumerate(SHAPES):
            for j, dtype in enumerate(DTYPES):
                gen_kind = "torch" if (i + j) % 2 else "fastrand"
                # full_tensor() (an all-gather) for float32/float64: gloo's collectives on
                # 16-bit types are not relied on; their shards are checked one by one
                _check_case(
                    mesh, spec, shape, dtype, gen_kind, full=dtype in ("float32", "float64")
                )
            _check_case(mesh, spec, shape, "float32", "fastrand", kind="uniform")

    return check


def check_memory(ctx):
    """A 512 MiB float32 tensor over 4 ranks: each rank's peak resident memory grows by at most
    about twice its 128 MiB shard (the full tensor would be 4x)."""
    import gc

    import fastrand
    import fastrand.distributed as fd

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(key)

    mesh = ctx["meshes"][(4,)]
    shard = MEM_SHAPE[0] // 4 * MEM_SHAPE[1] * 4
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")
    before = status("VmRSS")
    d = fd.randn(
        *MEM_SHAPE, generator=fastrand.Generator(8), device_mesh=mesh, placements=_placements("S0")
    )
    grew = status("VmHWM") - before
    local = d.to_local()
    assert local.shape == (MEM_SHAPE[0] // 4, MEM_SHAPE[1])
    assert grew <= 2 * shard, (
        f"peak grew by {grew / 2**20:.0f} MiB for a {shard / 2**20:.0f} MiB shard"
    )
    # spot check: the shard's first and last rows are the plain draw at their positions
    rank = mesh.get_coordinate()[0]
    row0 = rank * local.shape[0]
    for r in (0, local.shape[0] - 1):
        g = fastrand.Generator(8, offset=(row0 + r) * MEM_SHAPE[1])
        _same(local[r], fastrand.randn(MEM_SHAPE[1], generator=g), f"row {row0 + r}")
    ctx["memory"] = {"grew_mib": grew / 2**20, "shard_mib": shard / 2**20}


def check_default_generator_and_sequence(ctx):
    """generator=None reads torch's default generator (seeded alike on every rank); two draws
    in a row stay in step with two single-device draws."""
    import fastrand
    import fastrand.distributed as fd

    mesh = ctx["meshes"][(2, 2)]
    pl = _placements("S1,S0")
    torch.manual_seed(123)
    a = fd.randn(6, 10, device_mesh=mesh, placements=pl)
    b = fd.randn(5, 3, dtype=torch.float64, device_mesh=mesh, placements=pl)
    torch.manual_seed(123)
    ra = fastrand.randn(6, 10)
    rb = fastrand.randn(5, 3, dtype=torch.float64)
    _same(a.full_tensor(), ra, "first draw")
    _same(b.full_tensor(), rb, "second draw")


def check_current_mesh_and_defaults(ctx):
    from torch.distributed.tensor import Replicate

    import fastrand
    import fastrand.distributed as fd

    mesh = ctx["meshes"][(4,)]
    with mesh:
        d = fd.rand(3, 4, generator=fastrand.Generator(1), dtype=torch.float32)
    assert d.device_mesh == mesh and tuple(d.placements) == (Replicate(),)
    _same(d.to_local(), fastrand.rand(3, 4, generator=fastrand.Generator(1)), "replicated")
    d = fd.randn((2, 3), generator=fastrand.Generator(1), device_mesh=mesh, requires_grad=True)
    assert d.requires_grad and tuple(d.shape) == (2, 3)


def check_requires_grad_is_a_leaf(ctx):
    """requires_grad=True gives a leaf DTensor, as torch's DTensor factories do: backward fills
    its .grad and an optimizer accepts it (it used to be a non-leaf from DTensor.from_local)."""
    import fastrand
    import fastrand.distributed as fd

    for mesh_key, spec in (((4,), "S0"), ((2, 2), "S1,S0"), ((4,), "R")):
        mesh = ctx["meshes"][mesh_key]
        for draw, single in ((fd.randn, fastrand.randn), (fd.rand, fastrand.rand)):
            d = draw(
                6, 5, generator=fastrand.Generator(8), device_mesh=mesh,
                placements=_placements(spec), requires_grad=True,
            )  # fmt: skip
            assert d.is_leaf and d.requires_grad and d.grad_fn is None, (spec, d.grad_fn)
            want = single(6, 5, generator=fastrand.Generator(8))
            _same(d.full_tensor().detach(), want, f"values {spec}")
            (d * 3).sum().backward()
            assert d.grad is not None, spec
            _same(d.grad.full_tensor(), torch.full((6, 5), 3.0), f"grad {spec}")
            torch.optim.SGD([d], lr=0.5).step()  # refused a non-leaf tensor
            _same(d.full_tensor().detach(), want - 1.5, f"after a step {spec}")
    d = fd.randn(2, 3, generator=fastrand.Generator(8), device_mesh=ctx["meshes"][(4,)])
    assert not d.requires_grad and d.is_leaf


def check_rank_outside_mesh(ctx):
    """A rank outside the mesh holds an empty local tensor and still advances its generator."""
    from torch.distributed.device_mesh import DeviceMesh

    import fastrand
    import fastrand.distributed as fd

    mesh = ctx["meshes"]["half"]
    g = fastrand.Generator(4)
    d = fd.randn(6, 4, generator=g, device_mesh=mesh, placements=_placements("S0"))
    assert g.get_offset() == 24
    rank = torch.distributed.get_rank()
    if rank < 2:
        _same(
            d.to_local(),
            fastrand.randn(6, 4, generator=fastrand.Generator(4))[3 * rank : 3 * rank + 3],
            "in mesh",
        )
    else:
        assert d.to_local().numel() == 0
    assert isinstance(mesh, DeviceMesh)


def check_bad_input(ctx):
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.tensor import Partial, Replicate, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    import fastrand
    import fastrand.distributed as fd

    mesh4, mesh22 = ctx["meshes"][(4,)], ctx["meshes"][(2, 2)]
    try:
        no_backend = DeviceMesh("mps", [0, 1, 2, 3], _init_backend=False)
    except Exception:  # noqa: BLE001 - a torch that refuses such a mesh itself
        no_backend = None
    cases = [
        ({"device_mesh": mesh4, "placements": [Partial()]}, ValueError, "placements"),
        (
            {"device_mesh": mesh22, "placements": [Shard(0), Partial("sum")]},
            ValueError,
            "placements",
        ),
        (
            {"device_mesh": mesh4, "placements": [_StridedShard(0, split_factor=2)]},
            ValueError,
            "placements",
        ),
        ({"device_mesh": mesh22, "placements": [Shard(0)]}, ValueError, "placements"),
        ({"device_mesh": mesh4, "placements": [Shard(0), Replicate()]}, ValueError, "placements"),
        ({"device_mesh": mesh4, "placements": [Shard(2)]}, ValueError, "placements"),
        ({"device_mesh": mesh4, "placements": [Shard(-3)]}, ValueError, "placements"),
        ({"device_mesh": mesh4, "placements": ["S0"]}, TypeError, "placements"),
        ({"device_mesh": mesh4, "placements": Shard(0)}, TypeError, "placements"),
        ({"device_mesh": "cpu"}, TypeError, "device_mesh"),
        ({"device_mesh": None}, ValueError, "device_mesh"),  # no current mesh
        ({"device_mesh": mesh4, "dtype": torch.int64}, ValueError, "dtype"),
        ({"device_mesh": mesh4, "generator": [fastrand.Generator(0)]}, TypeError, "generator"),
        ({"device_mesh": mesh4, "layout": torch.sparse_coo}, ValueError, "layout"),
        ({"device_mesh": mesh4, "requires_grad": 1}, TypeError, "requires_grad"),
    ]
    if no_backend is not None:
        cases.append(({"device_mesh": no_backend}, ValueError, "device_mesh"))
    for kwargs, error, name in cases:
        for fn in (fd.randn, fd.rand):
            g = fastrand.Generator(5, offset=2)
            tg = torch.Generator().manual_seed(5)
            for gen in (g, tg):
                kw = dict(kwargs)
                kw.setdefault("generator", gen)
                try:
                    fn(4, 6, **kw)
                except error as e:
                    assert name in str(e), f"{kwargs}: {e}"
                else:
                    raise AssertionError(f"{kwargs}: no {error.__name__}")
            assert g.get_offset() == 2, kwargs
            _same(
                fastrand.randn(4, generator=tg),
                fastrand.randn(4, generator=torch.Generator().manual_seed(5)),
                f"{kwargs}: torch generator moved",
            )
    for size in ((-1, 3), (2.0, 3)):
        try:
            fd.randn(*size, device_mesh=mesh4)
        except (TypeError, ValueError) as e:
            assert "size" in str(e)
        else:
            raise AssertionError(size)


def check_data_parallel(ctx):
    """The recipe: sample i's noise from Generator(seed, stream=i), whatever the world size;
    and a batch DTensor sharded on the batch dimension. Saved for the parent to compare."""
    import fastrand
    import fastrand.distributed as fd

    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    per = DP_BATCH // world
    samples = {}
    for i in range(rank * per, (rank + 1) * per):
        samples[i] = fastrand.randn(*DP_SHAPE, generator=fastrand.Generator(2024, stream=i))
    batch = fd.randn(
        DP_BATCH,
        *DP_SHAPE,
        generator=fastrand.Generator(2024),
        device_mesh=ctx["meshes"][(world,)],
        placements=_placements("S0"),
    )
    torch.save(
        {"samples": samples, "batch_local": batch.to_local(), "start": rank * per},
        os.path.join(ctx["out"], f"dp{world}_rank{rank}.pt"),
    )


CHECKS_W4 = {"memory": check_memory}
for _m, _specs in PLACEMENTS.items():
    for _s in _specs:
        CHECKS_W4[f"mesh{'x'.join(map(str, _m))}[{_s}]"] = _placement_check(_m, _s)
CHECKS_W4.update(
    {
        "default_generator_and_sequence": check_default_generator_and_sequence,
        "current_mesh_and_defaults": check_current_mesh_and_defaults,
        "rank_outside_mesh": check_rank_outside_mesh,
        "requires_grad_is_a_leaf": check_requires_grad_is_a_leaf,
        "bad_input": check_bad_input,
        "data_parallel": check_data_parallel,
    }
)
CHECKS_SMALL = {"data_parallel": check_data_parallel}


def check_cuda_mesh(ctx):
    """On a CUDA mesh each rank's shard is drawn on its GPU and equals the CPU draw's box
    (torch's own shard rule; no collective)."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    import fastrand
    import fastrand.distributed as fd

    mesh = ctx["meshes"]["cuda"]
    pairs = ((fd.randn, fastrand.randn), (fd.rand, fastrand.rand))
    for spec in ("S0", "S1", "S-1", "R"):
        for shape in SHAPES:
            for dtype in DTYPES:
                dt = getattr(torch, dtype)
                for draw, single in pairs:
                    g = fastrand.Generator(3, offset=1)
                    d = draw(
                        *shape,
                        generator=g,
                        dtype=dt,
                        device_mesh=mesh,
                        placements=_placements(spec),
                    )
                    local = d.to_local()
                    assert local.device.type == "cuda", local.device
                    ref = single(*shape, generator=fastrand.Generator(3, offset=1), dtype=dt)
                    lshape, off = compute_local_shape_and_global_offset(shape, mesh, d.placements)
                    want = ref[tuple(slice(o, o + n) for o, n in zip(off, lshape))]
                    _same(local.cpu(), want, f"cuda {spec} {shape} {dtype}")


CHECKS_CUDA = {"cuda_mesh": check_cuda_mesh}


def _worker(out, world_arg):
    """One rank: world_arg is the world size ("4", "2", "1"), or "cuda2": 2 ranks on a CUDA
    mesh (gloo; the ranks share the GPUs there are)."""
    from datetime import timedelta

    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

    torch.set_num_threads(1)
    cuda = world_arg.startswith("cuda")
    world = int(world_arg[4:] if cuda else world_arg)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    if cuda:
        torch.cuda.set_device(rank % torch.cuda.device_count())
        torch.zeros(1, device="cuda")  # the device is set, so DeviceMesh keeps it
        meshes = {"cuda": init_device_mesh("cuda", (world,))}
        checks = CHECKS_CUDA
    else:
        meshes = {(world,): init_device_mesh("cpu", (world,))}
        checks = CHECKS_SMALL
    if world == 4:
        meshes[(2, 2)] = init_device_mesh("cpu", (2, 2))
        meshes["half"] = DeviceMesh("cpu", [0, 1])
        checks = CHECKS_W4
    ctx = {"meshes": meshes, "out": out}
    results = {}
    seconds = {}
    for name, fn in checks.items():
        t0 = time.perf_counter()
        try:
            fn(ctx)
            results[name] = "ok"
        except Exception:  # noqa: BLE001 - reported to the parent
            results[name] = traceback.format_exc()
        seconds[name] = round(time.perf_counter() - t0, 3)
    results["_seconds"] = json.dumps(seconds)
    if "memory" in ctx:
        results["_memory"] = json.dumps(ctx["memory"])
    with open(os.path.join(out, f"w{world_arg}_rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


# ============================================================================================
# parent side (pytest)
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra):
    """The environment of a rank: the fastrand this process imported (an installed package or
    the source tree) first on the path."""
    from conftest import child_env as shared_child_env  # (in the parent only: ranks run this file)

    return shared_child_env(OMP_NUM_THREADS=1, **extra)


def _start_world(world, out):
    port = free_port()
    procs = []
    for rank in range(int(str(world).replace("cuda", ""))):
        env = child_env(
            RANK=rank, WORLD_SIZE=world, LOCAL_RANK=rank, MASTER_ADDR="127.0.0.1", MASTER_PORT=port
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", out, str(world)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def _start_torchrun():
    """The README's example as written, under torchrun with 2 processes (gloo on the CPU)."""
    script = os.path.join(ROOT, "examples", "distributed_noise.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-addr", "127.0.0.1", "--master-port", str(free_port()), script]
    return subprocess.Popen(
        cmd, env=child_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait(procs, deadline, what):
    """Each process's output once all exited; kills them all and fails past the deadline."""
    try:
        return [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        pytest.fail(f"{what}: did not finish within {TIMEOUT_S} s (a hang)")


@pytest.fixture(scope="module")
def outdir():
    with tempfile.TemporaryDirectory(prefix="fastrand-dist-") as d:
        yield d


@pytest.fixture(scope="module")
def launched(outdir):
    """Every multi-process job of this file, started at once (their start-up, mostly importing
    torch, overlaps): the torchrun example and the worlds of 4, 2 and 1 ranks."""
    jobs = {"torchrun": [_start_torchrun()]}
    for w in (4, 2, 1):
        jobs[w] = _start_world(w, outdir)
    yield jobs, time.monotonic() + TIMEOUT_S
    for procs in jobs.values():
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.fixture(scope="module")
def worlds(launched, outdir):
    """world size -> each rank's results."""
    jobs, deadline = launched
    results = {}
    for w in (4, 2, 1):
        logs = _wait(jobs[w], deadline, f"world {w}")
        for rank, p in enumerate(jobs[w]):
            assert p.returncode == 0, (
                f"world {w} rank {rank} exited {p.returncode}:\n{logs[rank][-4000:]}"
            )
        results[w] = []
        for rank in range(w):
            with open(os.path.join(outdir, f"w{w}_rank{rank}.json")) as f:
                results[w].append(json.load(f))
    return results


@pytest.fixture(scope="module")
def world4(worlds):
    return worlds[4]


@pytest.mark.parametrize("name", list(CHECKS_W4))
def test_world4(world4, name):
    failures = [f"rank {r}:\n{res[name]}" for r, res in enumerate(world4) if res[name] != "ok"]
    assert not failures, "\n".join(failures)


def test_memory_figures(world4):
    """The memory check's figures (for the log): growth per rank next to the shard size."""
    for r, res in enumerate(world4):
        if "_memory" in res:
            m = json.loads(res["_memory"])
            print(
                f"rank {r}: peak grew {m['grew_mib']:.0f} MiB for a {m['shard_mib']:.0f} MiB shard"
            )


def test_data_parallel_recipe_independent_of_world_size(worlds, outdir):
    """Per-sample noise from Generator(seed, stream=i) and the batch DTensor sharded on dim 0
    are the same with 1, 2 and 4 ranks."""
    for world in (1, 2, 4):
        assert all(r["data_parallel"] == "ok" for r in worlds[world]), worlds[world]
    import fastrand

    want_batch = fastrand.randn(DP_BATCH, *DP_SHAPE, generator=fastrand.Generator(2024))
    for world in (1, 2, 4):
        samples, batch = {}, torch.empty_like(want_batch)
        for rank in range(world):
            part = torch.load(os.path.join(outdir, f"dp{world}_rank{rank}.pt"))
            samples.update(part["samples"])
            local = part["batch_local"]
            batch[part["start"] : part["start"] + local.shape[0]] = local
        assert sorted(samples) == list(range(DP_BATCH))
        for i in range(DP_BATCH):
            want = fastrand.randn(*DP_SHAPE, generator=fastrand.Generator(2024, stream=i))
            _same(samples[i], want, f"world {world} sample {i}")
        _same(batch, want_batch, f"world {world} batch")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_mesh(outdir):
    """2 ranks on a CUDA mesh (gloo): shards drawn on the GPU equal the CPU draw's boxes."""
    procs = _start_world("cuda2", outdir)
    logs = _wait(procs, time.monotonic() + TIMEOUT_S, "cuda world")
    for rank, p in enumerate(procs):
        assert p.returncode == 0, f"rank {rank} exited {p.returncode}:\n{logs[rank][-4000:]}"
        with open(os.path.join(outdir, f"wcuda2_rank{rank}.json")) as f:
            res = json.load(f)
        assert res["cuda_mesh"] == "ok", f"rank {rank}:\n{res['cuda_mesh']}"


def test_local_box_rule_matches_torch():
    """fastrand's own shard rule (used where torch lacks compute_local_shape_and_global_offset)
    equals torch's for every coordinate of several meshes, uneven, empty and nested shards."""
    from torch.distributed.tensor import Replicate, Shard

    utils = pytest.importorskip("torch.distributed.tensor._utils")
    rule = getattr(utils, "_compute_local_shape_and_global_offset", None)
    if rule is None:
        pytest.skip("torch has no _compute_local_shape_and_global_offset")
    from fastrand.distributed import _local_box

    shapes = [(7, 5, 6), (3, 2, 9), (8, 4, 4), (1, 3, 4), (0, 5, 2), (13, 1, 17)]
    meshes = [(4,), (2, 2), (3, 2), (2, 2, 2), (5,)]
    import itertools

    for shape in shapes:
        for ms in meshes:
            choices = [Replicate()] + [Shard(d) for d in range(len(shape))]
            for pl in itertools.product(choices, repeat=len(ms)):
                for coord in itertools.product(*(range(k) for k in ms)):
                    t_shape, t_off = rule(shape, ms, list(coord), list(pl))
                    starts, lengths = _local_box(shape, ms, coord, pl)
                    assert list(t_shape) == lengths, (shape, ms, pl, coord)
                    for d in range(len(shape)):
                        if lengths[d]:
                            assert t_off[d] == starts[d], (shape, ms, pl, coord)


def test_example_runs_under_torchrun(launched):
    """examples/distributed_noise.py runs as the README writes it: torchrun, 2 processes."""
    jobs, deadline = launched
    (out,) = _wait(jobs["torchrun"], deadline, "torchrun")
    assert jobs["torchrun"][0].returncode == 0, out[-4000:]
    assert "equal to the single-device draw: True" in out, out[-4000:]
    assert out.count("sample") == 8, out[-4000:]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    _worker(sys.argv[2], sys.argv[3])
