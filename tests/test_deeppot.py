"""DeepPot-SE: conservative forces and stress, symmetry invariances, precision modes,
batching, model files."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from hayabusa import ModelError, NeighborList, State
from hayabusa.models import DeepPotSE, ModelPotential, load_model, save_model

SMALL = {"embedding": (8, 16), "axis_neurons": 4, "fitting": (16, 16), "neighbor_norm": 20.0}


def model(precision="float64", seed=0) -> ModelPotential:
    """A small random DeepPot-SE for Cu/Ag as a Potential (its core is ``.model``)."""
    torch.manual_seed(seed)
    m = DeepPotSE([29, 47], r_cut=4.0, r_smth=2.0, precision=precision, **SMALL)
    m.set_reference_energies([-3.5, -2.8])
    with torch.no_grad():
        m.dstd[:] = 0.5
    return ModelPotential(m).eval()


def cuag(seed=0, repeat=2):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    rng = np.random.default_rng(seed)
    atoms.numbers[rng.random(len(atoms)) < 0.3] = 47
    atoms.rattle(0.1, seed=seed)
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.05, 0], [0, 1, 0.02], [0.03, 0, 1]]),
                   scale_atoms=True)
    return atoms


def evaluate(m, atoms_list, stress=False):
    state = State.from_atoms(atoms_list, species=m.species)
    nl = NeighborList(m.cutoff).build(state)
    return m(state, nl, compute_stress=stress), state


def energy_of(m, atoms):
    return float(evaluate(m, [atoms])[0].energy[0])


def test_forces_are_minus_gradient():
    m, atoms = model(), cuag()
    res, _ = evaluate(m, [atoms])
    h = 1e-5
    for i in (0, 5, 17):
        for d in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, d] += h
            minus.positions[i, d] -= h
            fd = -(energy_of(m, plus) - energy_of(m, minus)) / (2 * h)
            assert float(res.forces[i, d]) == pytest.approx(fd, abs=1e-7)


def test_stress_is_strain_derivative():
    m, atoms = model(), cuag(1)
    res, state = evaluate(m, [atoms], stress=True)
    h = 1e-6
    volume = atoms.get_volume()
    for a, b in ((0, 0), (1, 2), (2, 0)):
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h
        plus, minus = atoms.copy(), atoms.copy()
        plus.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        minus.set_cell(atoms.cell.array @ (np.eye(3) - eps), scale_atoms=True)
        fd = (energy_of(m, plus) - energy_of(m, minus)) / (2 * h) / volume
        sym = 0.5 * (res.stress[0, a, b] + res.stress[0, b, a]) * (1 if a == b else 2)
        assert float(sym) == pytest.approx(fd, abs=1e-8)


def test_invariant_under_rotation_translation_permutation():
    m, atoms = model(), cuag(2)
    e0 = energy_of(m, atoms)
    rotated = atoms.copy()
    rotated.rotate(37, "x", rotate_cell=True)
    rotated.rotate(-71, (1, 1, 0), rotate_cell=True)
    rotated.translate([0.3, -1.2, 2.5])
    perm = np.random.default_rng(0).permutation(len(atoms))
    permuted = atoms[perm]
    assert energy_of(m, rotated) == pytest.approx(e0, abs=1e-10)
    assert energy_of(m, permuted) == pytest.approx(e0, abs=1e-10)
    res, _ = evaluate(m, [atoms])
    res_p, _ = evaluate(m, [permuted])
    assert torch.allclose(res_p.forces, res.forces[perm], atol=1e-12)


@pytest.mark.parametrize("precision", ["float32", "mixed"])
def test_precision_modes_match_float64(precision):
    ref = model("float64")
    low = model(precision)
    low.load_state_dict(ref.state_dict())
    atoms = [cuag(3), cuag(4)]
    a, _ = evaluate(ref, atoms, stress=True)
    b, _ = evaluate(low, atoms, stress=True)
    assert b.energy.dtype == torch.float64
    assert torch.allclose(a.energy, b.energy, rtol=0, atol=1e-4)
    assert (a.forces - b.forces).abs().max() < 1e-4
    assert not torch.equal(a.forces, b.forces)


def test_batched_equals_separate():
    m = model()
    systems = [cuag(5), cuag(6, repeat=3)]
    batch, state = evaluate(m, systems, stress=True)
    start = 0
    for s, atoms in enumerate(systems):
        one, _ = evaluate(m, [atoms], stress=True)
        n = len(atoms)
        assert torch.allclose(batch.energy[s], one.energy[0], rtol=1e-13)
        assert torch.allclose(batch.forces[start:start + n], one.forces, atol=1e-12)
        assert torch.allclose(batch.stress[s], one.stress[0], atol=1e-12)
        start += n


def test_model_file_round_trip_and_corruption(tmp_path):
    m = model(seed=3)
    path = save_model(m, tmp_path / "model.pt")
    loaded = load_model(path)
    atoms = cuag(7)
    assert energy_of(loaded, atoms) == energy_of(m, atoms)
    payload = torch.load(path, weights_only=True)
    next(v for k, v in payload["weights"].items() if k.endswith("weight")).add_(1e-3)
    torch.save(payload, tmp_path / "corrupt.pt")
    with pytest.raises(ModelError, match="checksum"):
        load_model(tmp_path / "corrupt.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")


def test_nve_with_model_conserves_energy():
    from hayabusa.md import Simulation, VelocityVerlet, maxwell_boltzmann

    m = model(seed=1)
    state = State.from_atoms(cuag(8), species=m.species)
    maxwell_boltzmann(state, 300.0, seed=2)
    sim = Simulation(state, m, VelocityVerlet(1.0), skin=0.5)
    sim.run(0)
    e0 = float(sim.thermo()["etotal"][0])
    sim.run(200)
    # measured 9e-9 eV/atom (scaling as dt²); a discontinuity at r_cut gave 3e-4
    assert abs(float(sim.thermo()["etotal"][0]) - e0) / state.n_atoms < 1e-6


def test_energy_is_smooth_where_a_neighbour_crosses_the_cutoff():
    from ase import Atoms

    m = model(seed=2)

    def energy(r):
        return energy_of(m, Atoms("CuAg", positions=[[0, 0, 0], [r, 0, 0]]))

    far = energy(10.0)  # two isolated atoms
    for r in (m.cutoff - 1e-6, m.cutoff + 1e-6):
        assert energy(r) == pytest.approx(far, abs=1e-12)
    assert abs(energy(3.0) - far) > 1e-6  # inside the cutoff the pair does interact


def test_forward_mode_tangent_is_the_derivative_of_the_net():
    """ops.tangent_reference: G equals the net's output and G' its derivative by s
    (autograd), through layers of every residual kind (same width, doubled, none)."""
    from hayabusa.models.deeppot import ResidualMLP
    from hayabusa.models.ops import tangent_reference

    torch.manual_seed(0)
    net = ResidualMLP(1, [6, 6, 12, 5]).double()
    s = torch.linspace(0.0, 1.5, 40, dtype=torch.float64, requires_grad=True)
    g, dg = tangent_reference(s, *net.weights())
    reference = net(s[:, None])
    assert torch.allclose(g, reference, rtol=1e-14, atol=1e-14)
    columns = [torch.autograd.grad(reference[:, m].sum(), s, retain_graph=True)[0]
               for m in range(reference.shape[1])]
    assert torch.allclose(dg, torch.stack(columns, 1), rtol=1e-12, atol=1e-12)


def test_md_in_blocks_with_fixed_sections_follows_eager_steps():
    """Blocks run with the type-section widths the neighbor list chose (fixed shapes: a CUDA
    graph on a GPU); the trajectory is the eager one. Sections made one slot narrower than
    the most neighbours of a type one atom has, before the first block (as when neighbours
    crowd in during a run), make it overflow: it is undone, the sections grown, rerun."""
    from hayabusa.md import Simulation, VelocityVerlet, maxwell_boltzmann
    from hayabusa.neighbors.typed import TypedSections

    m = model(seed=1)

    def run(block_steps, narrow=False):
        state = State.from_atoms(cuag(8), species=m.species)
        maxwell_boltzmann(state, 600.0, seed=2)
        sim = Simulation(state, m, VelocityVerlet(1.0), skin=0.5, block_steps=block_steps,
                         health_every=20)
        sim.run(0)
        if narrow:
            nl = sim.neighbors
            for request, sections in nl.sections.items():
                most = sections.seen.tolist()
                nl.sections[request] = TypedSections(request, [k - 1 for k in most],
                                                     sections.types)
        sim.run(40)
        return sim

    eager = run(0)
    blocked = run(10, narrow=True)
    assert blocked.blocks.replays > 40 // 10 and blocked.blocks.resized >= 1
    assert not bool(blocked.neighbors.overflowed())
    assert (eager.state.positions - blocked.state.positions).abs().max() < 1e-9
    assert torch.allclose(eager.thermo()["conserved"], blocked.thermo()["conserved"],
                          rtol=1e-12)
