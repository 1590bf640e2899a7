"""GPU checks against the CPU reference path (run on a GPU machine: pytest -m gpu)."""

import functools

import numpy as np
import pytest
import torch
from ase.build import bulk

from hayabusa import State
from hayabusa.md import NoseHooverChain, Simulation, maxwell_boltzmann
from hayabusa.neighbors import cell_list_pairs
from hayabusa.potentials import kob_andersen

pytestmark = pytest.mark.gpu  # conftest.py: selecting these without a CUDA GPU is an error


def kernels_run(fn) -> set[str]:
    """Names of the CUDA kernels ``fn()`` launched (to assert that a Triton path ran)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}


def ran(names: set[str], kernel: str) -> bool:
    return any(kernel in name for name in names)


@pytest.fixture(autouse=True)
def one_tile_shape(monkeypatch):
    """One fixed tile shape per kernel instead of autotuning at every size: the suite took
    311 s on an H200, mostly autotuning (docs/gpu.md). ``hayabusa bench`` runs autotune."""
    monkeypatch.setenv("HAYABUSA_AUTOTUNE", "0")


def systems():
    rng = np.random.default_rng(0)
    out = []
    for n, skew in ((2, 0.0), (3, 0.3)):
        atoms = bulk("Ar", "fcc", a=1.6, cubic=True).repeat(n)
        atoms.set_cell(atoms.cell.array @ np.array([[1, 0, 0], [skew, 1, 0], [0, 0, 1]]),
                       scale_atoms=True)
        atoms.numbers = np.where(rng.random(len(atoms)) < 0.2, 2, 1)  # A (H) and B (He)
        atoms.set_masses(np.ones(len(atoms)))
        atoms.rattle(0.05, seed=n)
        out.append(atoms)
    return out


def pair_set(p):
    return set(zip(p.i.tolist(), p.j.tolist(), map(tuple, p.shift.tolist()), strict=True))


def test_cell_list_on_cuda_equals_cpu():
    cpu = State.from_atoms(systems(), units="lj")
    gpu = cpu.to("cuda")
    args = lambda s: (s.positions, s.cell, s.pbc, s.system_idx, 2.8)  # noqa: E731
    assert pair_set(cell_list_pairs(*args(gpu))) == pair_set(cell_list_pairs(*args(cpu)))


def test_nose_hoover_kob_andersen_on_cuda_matches_cpu():
    def run(device):
        state = State.from_atoms(systems(), units="lj", species=["H", "He"])
        maxwell_boltzmann(state, 0.8, units="lj", seed=1)
        state = state.to(device)
        sim = Simulation(state, kob_andersen(), NoseHooverChain(0.005, 0.8, 0.2, units="lj"),
                         units="lj")
        sim.run(100)
        return sim.state.positions.cpu(), sim.thermo()["conserved"].cpu()

    pos_cpu, h_cpu = run("cpu")
    pos_gpu, h_gpu = run("cuda")
    assert (pos_cpu - pos_gpu).abs().max() < 1e-10
    assert torch.allclose(h_cpu, h_gpu, rtol=1e-12, atol=0)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_cuda_graph_blocks_match_eager_steps(precision):
    """Blocks replayed as CUDA graphs follow the eager loop (float64), or stay close to it
    (float32 pair terms)."""
    def run(block_steps):
        state = State.from_atoms(systems(), units="lj", species=["H", "He"])
        maxwell_boltzmann(state, 0.8, units="lj", seed=1)
        sim = Simulation(state.to("cuda"), kob_andersen(precision=precision),
                         NoseHooverChain(0.005, 0.8, 0.2, units="lj"), units="lj",
                         block_steps=block_steps, health_every=25)
        sim.run(200)
        return sim

    eager, graphed = run(0), run(25)
    assert graphed.blocks.graph is not None and graphed.blocks.replays >= 7
    tol = 1e-9 if precision == "float64" else 1e-3
    assert (eager.state.positions - graphed.state.positions).abs().max() < tol


def ka_batch_cuda():
    from hayabusa.builders import kob_andersen_mixture

    systems = [kob_andersen_mixture(n, 1.2, seed=n) for n in (1000, 1728)]
    state = State.from_atoms(systems, units="lj").to("cuda")
    state.positions[:500] += 2 * state.cell[0, 0, 0]  # unwrapped images
    return state


def test_triton_min_image_build_equals_reference():
    from hayabusa.neighbors.min_image import MinImageNeighborList

    state = ka_batch_cuda()
    gpu = MinImageNeighborList(2.5, 0.3, capacity=8)
    assert ran(kernels_run(lambda: gpu.build(state)), "build_kernel")  # grows from 8
    ref = MinImageNeighborList(2.5, 0.3)
    ref.build(state.to("cpu"))
    assert torch.equal(gpu.mask.sum(1).cpu(), ref.mask.sum(1))
    a = torch.sort(torch.where(gpu.mask, gpu.neighbors, -1), dim=1).values.cpu()
    b = torch.sort(torch.where(ref.mask, ref.neighbors, -1), dim=1).values
    assert torch.equal(a[:, -a.shape[1]:], b[:, -a.shape[1]:]) or torch.equal(
        a[:, a.shape[1] - b.shape[1]:], b)


@pytest.mark.parametrize("truncation", ["shift", "shift_force"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fused_lj_kernel_equals_pytorch_path(truncation, precision):
    from hayabusa.neighbors.min_image import MinImageNeighborList

    state = ka_batch_cuda()
    nl = MinImageNeighborList(2.5, 0.3).build(state)
    pot = kob_andersen(truncation, precision).to("cuda")
    assert ran(kernels_run(lambda: pot(state, nl)), "_lj_kernel")
    fused = pot(state, nl)  # Triton kernel
    ref = pot(state, nl, compute_stress=True)  # PyTorch path (stress forces it)
    scale = ref.forces.abs().max()
    tol = 1e-12 if precision == "float64" else 2e-6
    assert (fused.forces - ref.forces).abs().max() < tol * scale
    assert torch.allclose(fused.energy, ref.energy, rtol=tol * 10)


@pytest.mark.parametrize("truncation", ["none", "shift"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fused_one_type_lj_kernel_equals_pytorch_path(truncation, precision):
    """One type: the kernel's scalar pair constants; no force shift: no square root."""
    from hayabusa.bench.problems import lj_liquid
    from hayabusa.neighbors.min_image import MinImageNeighborList
    from hayabusa.potentials import LennardJones

    state = State.from_atoms(lj_liquid(4000), units="lj").to("cuda")
    state.positions.add_(0.05 * torch.randn_like(state.positions))
    nl = MinImageNeighborList(2.5, 0.3).build(state)
    pot = LennardJones(1.0, 1.0, 2.5, truncation, precision=precision).to("cuda")
    assert ran(kernels_run(lambda: pot(state, nl)), "_lj_kernel")
    fused, ref = pot(state, nl), pot(state, nl, compute_stress=True)
    tol = 1e-12 if precision == "float64" else 2e-6
    assert (fused.forces - ref.forces).abs().max() < tol * ref.forces.abs().max()
    assert torch.allclose(fused.energy, ref.energy, rtol=tol * 10)


def test_graph_blocks_on_fused_path_follow_eager_cell_list():
    def run(backend, block_steps):
        from hayabusa.builders import kob_andersen_mixture

        state = State.from_atoms(kob_andersen_mixture(2000, 1.2, seed=2), units="lj")
        maxwell_boltzmann(state, 0.8, units="lj", seed=1)
        sim = Simulation(state.to("cuda"), kob_andersen(),
                         NoseHooverChain(0.002, 0.8, 0.2, units="lj"), units="lj",
                         skin=0.6, neighbor_backend=backend, block_steps=block_steps,
                         health_every=10)
        sim.run(100)
        return sim

    eager, fused = run("cell", 0), run("auto", 10)
    assert fused.neighbors.kind == "min_image" and fused.blocks.graph is not None
    assert fused.neighbors._build_graph is not None  # the list is rebuilt by its own graph …
    assert fused.neighbors.n_builds < fused.blocks.replays  # … only when needed
    assert (eager.state.positions - fused.state.positions).abs().max() < 1e-9


def small_deeppot(precision="float64", embedding=(8, 16), species=(29, 47), **extra):
    from hayabusa.models import DeepPotSE

    torch.manual_seed(0)
    return DeepPotSE(list(species), r_cut=4.0, r_smth=2.0, precision=precision,
                     embedding=embedding, axis_neurons=4, fitting=(16, 16), neighbor_norm=20.0,
                     **extra)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("embedding", [(8,), (8, 16), (25, 50, 100), (6, 6, 12)])
def test_tangent_contraction_operator_equals_its_reference(precision, embedding):
    """On CUDA the operator's G and dG/ds (Triton for DeePMD's w, 2w, 4w nets, else the
    PyTorch path) equal ops.tangent_reference's, and T = Gᵀ R̂."""
    from hayabusa.models.ops import tangent_reference
    from hayabusa.models.tangent_embedding import kernel_supports

    model = small_deeppot(precision, embedding).cuda().eval()
    s = torch.rand(1000, 37, dtype=model.net_dtype, device="cuda") * 1.5
    env = torch.randn(1000, 37, 4, dtype=model.net_dtype, device="cuda")
    tol = 1e-13 if precision == "float64" else 1e-5
    for net in model.embedding_nets:
        w, b = net.weights()
        with torch.no_grad():
            names = kernels_run(functools.partial(torch.ops.hayabusa.tangent_contraction,
                                                  s, env, w, b))
            assert ran(names, "doubling_layer_kernel") == kernel_supports(list(embedding))
            t, g, dg = torch.ops.hayabusa.tangent_contraction(s, env, w, b)
            g_ref, dg_ref = tangent_reference(s, w, b)
        assert (g - g_ref).abs().max() <= tol * g_ref.abs().max()
        assert (dg - dg_ref).abs().max() <= tol * dg_ref.abs().max()
        t_ref = torch.bmm(g_ref.transpose(1, 2), env)
        assert (t - t_ref).abs().max() <= tol * 10 * t_ref.abs().max()


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("stages", [0, 2])
def test_tangent_embedding_kernel_in_both_loop_forms(precision, stages, monkeypatch):
    """The kernel with an unrolled K loop (STAGES 0) and a pipelined one gives the PyTorch
    tangent, in a wide tile shape too."""
    from hayabusa.models import tangent_embedding
    from hayabusa.models.ops import tangent_reference

    model = small_deeppot(precision, (25, 50, 100), species=(29,)).cuda().eval()
    w, b = model.embedding_nets[0].weights()
    s = torch.rand(999, 41, dtype=model.net_dtype, device="cuda") * 1.5
    tol = 1e-13 if precision == "float64" else 1e-5
    with torch.no_grad():
        g_ref, dg_ref = tangent_reference(s, w, b)
        for bm, bn, warps in ((16, 64, 2), (32, 128, 4)):
            monkeypatch.setitem(tangent_embedding.SHAPES, model.net_dtype,
                                {"BM": bm, "BN": bn, "BK": 16, "STAGES": stages,
                                 "num_warps": warps})
            g, dg = tangent_embedding.embedding_with_tangent(s, w, b)
            assert (g - g_ref).abs().max() <= tol * g_ref.abs().max()
            assert (dg - dg_ref).abs().max() <= tol * dg_ref.abs().max()


def test_environment_operator_and_its_backward_equal_the_reference():
    from hayabusa.models.ops import environment_reference

    vec = torch.randn(500, 40, 3, dtype=torch.float64, device="cuda") * 2.5
    mask = torch.rand(500, 40, device="cuda") < 0.8
    inv_std = torch.rand(500, 4, dtype=torch.float64, device="cuda") + 0.5
    weights = (torch.randn(500, 40, dtype=torch.float64, device="cuda"),
               torch.randn(500, 40, 4, dtype=torch.float64, device="cuda"))
    results = []
    for op in (torch.ops.hayabusa.environment, environment_reference):
        v = vec.clone().requires_grad_(True)
        s, env = op(v, mask, inv_std, 1.0, 5.0)
        grad = torch.autograd.grad((s * weights[0]).sum() + (env * weights[1]).sum(), v)[0]
        results.append((s, env, grad))
    names = kernels_run(lambda: torch.ops.hayabusa.environment(vec, mask, inv_std, 1.0, 5.0))
    assert ran(names, "environment_kernel")
    for a, b in zip(*results, strict=True):
        assert (a - b).abs().max() < 1e-13 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("precision", ["float64", "mixed", "float32"])
@pytest.mark.parametrize("embedding", [(8, 16), (25, 50, 100)])
def test_deeppot_inference_path_equals_training_path(precision, embedding):
    """Inference (the Triton operators and batched matmuls) gives the energy, forces and
    stress of the training path (autograd through the nets, PyTorch references), two species
    in a sheared cell."""
    from test_deeppot import cuag

    from hayabusa import NeighborList
    from hayabusa.models import ModelPotential

    model = ModelPotential(small_deeppot(precision, embedding)).cuda()
    state = State.from_atoms([cuag(0, 3), cuag(1, 2)], species=model.species, device="cuda")
    nl = NeighborList(model.cutoff, skin=0.5).build(state)
    ref = model.train()(state, nl, compute_stress=True)
    model.eval()
    names = kernels_run(lambda: model(state, nl, compute_stress=True))
    assert ran(names, "environment_kernel") and ran(names, "environment_backward_kernel")
    assert ran(names, "doubling_layer_kernel")
    got = model(state, nl, compute_stress=True)
    tol = 1e-10 if precision == "float64" else 2e-5
    assert torch.allclose(got.energy, ref.energy.detach(), rtol=tol, atol=tol)
    scale = ref.forces.abs().max()
    assert (got.forces - ref.forces).abs().max() <= tol * 10 * scale
    assert (got.stress - ref.stress).abs().max() <= tol * 10 * ref.stress.abs().max()


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_deeppot_on_gpu_equals_cpu(precision):
    """Energy, forces and stress on the GPU (environment and embedding kernels) equal the
    CPU's (PyTorch), same weights, two species in a sheared cell, slots beyond r_cut."""
    from test_deeppot import cuag

    from hayabusa import NeighborList
    from hayabusa.models import ModelPotential

    core = small_deeppot(precision, (8, 16, 32)).eval()
    core.dstd.uniform_(0.5, 2.0)
    model = ModelPotential(core)
    results = []
    for device in ("cpu", "cuda"):
        model.to(device)
        state = State.from_atoms([cuag(0, 3), cuag(1, 2)], species=model.species,
                                 device=device)
        nl = NeighborList(model.cutoff, skin=0.7).build(state)
        results.append(model(state, nl, compute_stress=True))
    cpu, gpu = results
    tol = 1e-10 if precision == "float64" else 2e-5
    assert torch.allclose(gpu.energy.cpu(), cpu.energy, rtol=tol, atol=tol)
    assert (gpu.forces.cpu() - cpu.forces).abs().max() <= tol * 10 * cpu.forces.abs().max()
    assert (gpu.stress.cpu() - cpu.stress).abs().max() <= tol * 10 * cpu.stress.abs().max()


def test_deeppot_md_in_cuda_graph_blocks_follows_eager_steps():
    """MD of DeepPot-SE inside CUDA-graph blocks (the list's fixed type sections) follows
    eager MD, float64, Cu/Ag, NVE; the sections never overflowed."""
    from test_deeppot import cuag

    from hayabusa.md import VelocityVerlet
    from hayabusa.models import ModelPotential

    model = ModelPotential(small_deeppot()).cuda().eval()

    def run(block_steps):
        state = State.from_atoms([cuag(0, 3)], species=model.species, device="cuda")
        maxwell_boltzmann(state, 600.0, seed=1)
        sim = Simulation(state, model, VelocityVerlet(1.0), skin=0.5,
                         block_steps=block_steps, health_every=20)
        sim.run(40)
        return sim

    eager, graphed = run(0), run(10)
    assert graphed.blocks.graph is not None and not bool(graphed.neighbors.overflowed())
    assert (eager.state.positions - graphed.state.positions).abs().max() < 1e-9


def test_langevin_in_cuda_graph_blocks_follows_eager_steps():
    """Counter-based noise inside CUDA graphs: the blocked run draws what the eager run
    draws (undone blocks rewind the counters with the snapshot)."""
    from hayabusa.md import Langevin

    def run(block_steps):
        state = State.from_atoms(systems(), units="lj", species=["H", "He"])
        maxwell_boltzmann(state, 0.8, units="lj", seed=1)
        sim = Simulation(state.to("cuda"), kob_andersen(),
                         Langevin(0.005, 0.8, 1.0, units="lj", seed=3), units="lj",
                         block_steps=block_steps, health_every=25)
        sim.run(200)
        return sim

    eager, graphed = run(0), run(25)
    assert graphed.blocks.graph is not None
    assert (eager.state.positions - graphed.state.positions).abs().max() < 1e-9


def test_masked_restore_inside_a_cuda_graph_equals_eager():
    """A captured graph that takes a snapshot, runs steps and restores the masked systems
    leaves the state the eager sequence leaves (to the rounding of per-system sums by
    atomics, whose order varies on a GPU): the masked systems back at the snapshot, the
    others moved on, the random-number counters the same."""
    from hayabusa.md import Langevin

    def setup():
        state = State.from_atoms(systems() * 2, units="lj", species=["H", "He"])
        maxwell_boltzmann(state, 0.8, units="lj", seed=1)
        sim = Simulation(state.to("cuda"), kob_andersen(),
                         Langevin(0.005, 0.8, 1.0, units="lj", seed=3), units="lj")
        sim.run(5)
        return sim

    mask = torch.tensor([True, False, False, True], device="cuda")

    def sequence(sim, snap):
        snap.take()
        result = sim.result
        for _ in range(5):
            result = sim.integrator.step(sim.state, result,
                                         lambda st, stress=False: sim.forces(st, update=False))
        sim.result.forces.copy_(result.forces)
        sim.result.energy.copy_(result.energy)
        snap.restore(mask)

    eager = setup()
    sequence(eager, eager.snapshot())
    graphed = setup()
    snap = graphed.snapshot()
    sequence(graphed, snap)  # warm-up
    snap.restore()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sequence(graphed, snap)
    start = graphed.state.positions.clone()
    graph.replay()
    assert (eager.state.positions - graphed.state.positions).abs().max() < 1e-12
    assert (eager.state.velocities - graphed.state.velocities).abs().max() < 1e-12
    assert torch.equal(eager.integrator.thermostat.draws, graphed.integrator.thermostat.draws)
    rows = mask[graphed.state.system_idx]
    assert torch.equal(graphed.state.positions[rows], start[rows])
    assert (graphed.state.positions[~rows] - start[~rows]).abs().max() > 1e-4


def test_counter_based_normals_on_cuda_equal_cpu():
    from hayabusa.md.random import draw_normals

    seeds, draws = torch.tensor([3, 4]), torch.tensor([0, 9])
    system_idx = torch.arange(2).repeat_interleave(5000)
    local = torch.arange(5000).repeat(2)
    cpu = draw_normals(seeds, draws, system_idx, local, 1)
    gpu = draw_normals(seeds.cuda(), draws.cuda(), system_idx.cuda(), local.cuda(), 1)
    for a, b in zip(cpu, gpu, strict=True):
        assert (a - b.cpu()).abs().max() < 1e-12


def test_stale_check_kernel_with_a_box_change_equals_the_pytorch_criterion():
    from hayabusa.neighbors.min_image import MinImageNeighborList

    state = ka_batch_cuda()
    nl = MinImageNeighborList(2.5, 0.3).build(state)
    for strain, shift in ((0.0, 0.1), (0.0, 0.2), (0.02, 0.0), (0.004, 0.05)):
        moved = state.clone()
        moved.positions.add_(shift * torch.randn_like(moved.positions) / 3)
        moved.positions.mul_(1 - strain)
        moved.cell.mul_(1 - strain)
        nl.reset_checks()
        nl.check(moved)  # the Triton kernel
        box, ref = (torch.diagonal(c, dim1=1, dim2=2) for c in (moved.cell, nl.reference_cell))
        scale = ref / box
        limit = 0.5 * nl.skin - 0.5 * nl.cutoff * (scale - 1).norm(dim=1)
        d = (moved.positions * scale[moved.system_idx] - nl.reference_positions).norm(dim=1)
        expected = bool(((d > limit[moved.system_idx]) | (limit[moved.system_idx] <= 0)).any())
        assert bool(nl.stale) == expected


@pytest.mark.parametrize("chain_length", [1, 3, 5])
def test_nose_hoover_chain_kernel_equals_pytorch_chain(chain_length):
    """The Triton chain update of a half step (triton_chain) against the PyTorch one."""
    import copy

    from hayabusa.builders import kob_andersen_mixture
    from hayabusa.md.triton_chain import chain_half_step

    state = State.from_atoms([kob_andersen_mixture(n, 1.2, seed=n) for n in (100, 150, 200)],
                             units="lj").to("cuda")
    integrator = NoseHooverChain([0.005, 0.004, 0.003], [0.8, 0.5, 1.2], 0.2, units="lj",
                                 chain_length=chain_length)
    integrator.init(state)
    torch_chain = integrator.thermostat
    torch_chain.v_xi.normal_()
    torch_chain.xi.normal_()
    kernel_chain = copy.deepcopy(torch_chain)
    ke2 = torch.tensor([10.0, 3.0, 50.0], dtype=torch.float64, device="cuda")
    assert ran(kernels_run(lambda: chain_half_step(ke2, copy.deepcopy(kernel_chain))),
               "chain_kernel")
    for _ in range(3):
        scale = torch_chain.chain_step(ke2)
        assert torch.allclose(chain_half_step(ke2, kernel_chain), scale, rtol=1e-14, atol=0)
    assert torch.allclose(kernel_chain.v_xi, torch_chain.v_xi, rtol=1e-13, atol=1e-15)
    assert torch.allclose(kernel_chain.xi, torch_chain.xi, rtol=1e-13, atol=1e-15)
