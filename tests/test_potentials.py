"""Pair potentials: forces are −∇E and stress is (1/V) ∂E/∂ε by finite differences; energies,
forces and stresses equal ASE's Lennard-Jones and Morse calculators and an independent numpy
sum; truncations behave at the cutoff; a batch equals its systems evaluated alone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.calculators.morse import MorsePotential as AseMorse
from ase.geometry import complete_cell
from ase.neighborlist import primitive_neighbor_list
from ase.stress import voigt_6_to_full_3x3_stress

from hayabusa.errors import InputError
from hayabusa.neighbors import NeighborList
from hayabusa.potentials import LennardJones, Morse, SumPotential, kob_andersen
from hayabusa.state import State

# ------------------------------------------------------------------------------ systems


def make_state(systems, atomic_numbers=None) -> State:
    """systems: list of (positions [n,3], cell [3,3], pbc [3], type ids [n])."""
    positions = torch.tensor(np.concatenate([s[0] for s in systems]), dtype=torch.float64)
    n = positions.shape[0]
    types = torch.tensor(np.concatenate([s[3] for s in systems]), dtype=torch.int64)
    numbers = types + 18 if atomic_numbers is None else torch.as_tensor(atomic_numbers)
    return State(
        positions=positions, velocities=torch.zeros_like(positions),
        masses=torch.ones(n, dtype=torch.float64), atomic_numbers=numbers, type_ids=types,
        cell=torch.tensor(np.stack([s[1] for s in systems]), dtype=torch.float64),
        pbc=torch.tensor(np.stack([s[2] for s in systems])),
        system_idx=torch.repeat_interleave(torch.arange(len(systems)),
                                           torch.tensor([len(s[0]) for s in systems])),
    )


def periodic_system(seed: int, n: int = 3, spacing: float = 1.12, noise: float = 0.08):
    """A perturbed simple-cubic lattice in a sheared (triclinic) periodic cell, smaller than
    twice the cutoff so that atoms see several images of each other; ~20 % type 1."""
    rng = np.random.default_rng(seed)
    grid = np.array(list(itertools.product(range(n), repeat=3)), dtype=float)
    cell = np.eye(3) * n * spacing
    cell[1, 0], cell[2, 0], cell[2, 1] = 0.25 * spacing, -0.2 * spacing, 0.15 * spacing
    positions = (grid + noise / spacing * rng.normal(size=grid.shape)) / n @ cell
    types = (rng.random(len(grid)) < 0.2).astype(np.int64)
    return positions, cell, np.ones(3, dtype=bool), types


def cluster_system(seed: int, spacing: float = 1.12, noise: float = 0.08):
    """A perturbed 2×2×3 block of atoms without cell or periodicity."""
    rng = np.random.default_rng(seed)
    grid = np.array(list(itertools.product(range(2), range(2), range(3))), dtype=float)
    positions = spacing * grid + noise * rng.normal(size=grid.shape) + [4.0, -7.0, 2.0]
    types = (rng.random(len(grid)) < 0.3).astype(np.int64)
    return positions, np.zeros((3, 3)), np.zeros(3, dtype=bool), types


def slab_system(seed: int):
    """Periodic along a and c only; the open direction has a zero cell vector."""
    positions, cell, _, types = periodic_system(seed, n=3)
    cell = cell.copy()
    cell[1] = 0.0
    return positions, cell, np.array([True, False, True]), types


def tiny_system(seed: int):
    """Four atoms in a cell thinner than the cutoff."""
    rng = np.random.default_rng(seed)
    cell = np.array([[2.3, 0.0, 0.0], [0.4, 2.2, 0.0], [-0.3, 0.2, 2.4]])
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    positions = (frac + 0.02 * rng.normal(size=frac.shape)) @ cell
    return positions, cell, np.ones(3, dtype=bool), np.array([0, 1, 0, 0])


SYSTEMS = {"periodic": periodic_system, "cluster": cluster_system, "slab": slab_system,
           "tiny": tiny_system}


def potentials():
    return {
        # Scalar parameters shared by both types of the test systems.
        "lj-none": LennardJones(1.0, 1.0, cutoff=2.5, truncation="none", n_types=2),
        "lj-shift": LennardJones(1.0, 1.0, cutoff=2.5, truncation="shift", n_types=2),
        "lj-shift_force": LennardJones(1.0, 1.0, cutoff=2.5, truncation="shift_force",
                                       n_types=2),
        "morse": Morse(D=0.8, alpha=1.7, r0=1.2, cutoff=3.1, truncation="shift", n_types=2),
        "kob_andersen": kob_andersen(),
        "sum": SumPotential(
            LennardJones(epsilon=[[1.0, 1.2], [1.2, 0.7]], sigma=[[1.0, 0.9], [0.9, 0.8]],
                         cutoff=[[2.5, 2.25], [2.25, 2.0]], truncation="shift_force"),
            Morse(D=0.3, alpha=2.0, r0=1.1, cutoff=2.0, truncation="none", n_types=2),
        ),
    }


# ----------------------------------------------------------------------------- evaluation
def evaluate(potential, state, stress=False, neighbors=None):
    if neighbors is None:
        neighbors = NeighborList(potential.cutoff).build(state)
    return potential(state, neighbors, compute_stress=stress)


def with_positions(state: State, positions, cell=None) -> State:
    out = state.clone()
    out.positions = positions
    if cell is not None:
        out.cell = cell
    return out


def fd_forces(potential, state, h=1e-5) -> np.ndarray:
    """−∂E/∂r by central differences, on a list with a skin so the pair set stays fixed."""
    nl = NeighborList(potential.cutoff, skin=0.3).build(state)
    forces = np.zeros((state.n_atoms, 3))
    for a in range(state.n_atoms):
        s = int(state.system_idx[a])
        for d in range(3):
            energies = []
            for sign in (1, -1):
                pos = state.positions.clone()
                pos[a, d] += sign * h
                moved = with_positions(state, pos)
                assert not nl.update(moved)
                energies.append(float(potential(moved, nl).energy[s]))
            forces[a, d] = -(energies[0] - energies[1]) / (2 * h)
    return forces


def strained(state: State, strain: torch.Tensor) -> State:
    """Positions and cells deformed by (1 + ε) applied to row vectors, for every system."""
    deform = torch.eye(3, dtype=torch.float64) + strain
    return with_positions(state, state.positions @ deform, state.cell @ deform)


def fd_stress(potential, state, h=1e-6) -> np.ndarray:
    """(1/V) ∂E/∂ε_ab for symmetric strains by central differences, per system."""
    nl = NeighborList(potential.cutoff, skin=0.3).build(state)
    stress = np.zeros((state.n_systems, 3, 3))
    for a, b in itertools.product(range(3), repeat=2):
        energies = []
        for sign in (1, -1):
            strain = torch.zeros(3, 3, dtype=torch.float64)
            strain[a, b] += 0.5 * sign * h
            strain[b, a] += 0.5 * sign * h
            moved = strained(state, strain)
            assert not nl.update(moved)
            energies.append(potential(moved, nl).energy.numpy())
        stress[:, a, b] = (energies[0] - energies[1]) / (2 * h)
    return stress / state.volume.numpy()[:, None, None]


def pair_distances(state: State, cutoff: float) -> np.ndarray:
    nl = NeighborList(cutoff).build(state)
    return nl.pair_vectors(state).norm(dim=-1)[nl.mask].numpy()


def assert_no_pair_at_a_cutoff(potential, state, margin=1e-4):
    """Plain truncation makes E jump at r_c: finite differences need every pair distance
    farther from every cutoff than the steps move it (≤ 1e-5)."""
    terms = getattr(potential, "terms", [potential])
    cutoffs = torch.cat([t.cutoff_matrix.flatten() for t in terms]).unique().numpy()
    r = pair_distances(state, potential.cutoff + 0.1)
    assert np.abs(r[:, None] - cutoffs[None]).min() > margin


# ---------------------------------------------------------------- forces, stress by FD
@pytest.mark.parametrize("system", ["periodic", "cluster", "slab", "tiny"])
@pytest.mark.parametrize("name", list(potentials()))
def test_forces_are_minus_energy_gradient(name, system):
    potential = potentials()[name]
    state = make_state([SYSTEMS[system](11)])
    assert_no_pair_at_a_cutoff(potential, state)
    result = evaluate(potential, state)
    fd = fd_forces(potential, state)
    scale = np.abs(fd).max()
    assert scale > 0.3  # a real test: forces are not all ~0
    np.testing.assert_allclose(result.forces.numpy(), fd, rtol=1e-6, atol=1e-6 * scale)
    # Newton's third law: no net force on an isolated or periodic system.
    assert np.abs(result.forces.sum(0).numpy()).max() < 1e-10 * scale


@pytest.mark.parametrize("system", ["periodic", "tiny"])
@pytest.mark.parametrize("name", list(potentials()))
def test_stress_is_strain_derivative(name, system):
    potential = potentials()[name]
    state = make_state([SYSTEMS[system](12)])
    assert_no_pair_at_a_cutoff(potential, state)
    result = evaluate(potential, state, stress=True)
    fd = fd_stress(potential, state)
    stress = result.stress.numpy()
    scale = np.abs(fd).max()
    assert scale > 0.1
    np.testing.assert_allclose(stress, fd, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(stress, np.swapaxes(stress, 1, 2), atol=1e-12 * scale)
    assert result.stress.dtype == result.energy.dtype == torch.float64


def test_stress_sign_is_ase_convention():
    """Compressed below the LJ minimum the stress is negative (positive pressure)."""
    state = make_state([periodic_system(0, spacing=0.95, noise=0.0)])
    stress = evaluate(LennardJones(cutoff=2.5, n_types=2), state, stress=True).stress[0]
    assert float(torch.trace(stress)) < 0


# ---------------------------------------------------------------------------- ASE parity
def rattled_argon(pbc=True) -> Atoms:
    atoms = bulk("Ar", "fcc", a=5.26) * (2, 2, 2)  # primitive: skewed cell of 8 atoms
    atoms.rattle(0.15, seed=4)
    if not pbc:
        atoms.pbc = False
        atoms.cell = np.zeros((3, 3))
    return atoms


def compare_with_ase(potential, atoms, ase_calc, stress=True, energies=True):
    atoms = atoms.copy()
    atoms.calc = ase_calc
    state = State.from_atoms(atoms)
    result = evaluate(potential, state, stress=stress)
    e_ref = atoms.get_potential_energy()
    scale = abs(e_ref) + 1e-3
    assert np.isclose(float(result.energy[0]), e_ref, rtol=1e-12, atol=1e-12 * scale)
    f_ref = atoms.get_forces()
    assert np.abs(f_ref).max() > 1e-3
    np.testing.assert_allclose(result.forces.numpy(), f_ref, rtol=1e-10,
                               atol=1e-10 * np.abs(f_ref).max())
    if energies:
        np.testing.assert_allclose(result.atom_energy.numpy(), atoms.get_potential_energies(),
                                   rtol=1e-10, atol=1e-12 * scale)
    if stress:
        s_ref = voigt_6_to_full_3x3_stress(atoms.get_stress())
        np.testing.assert_allclose(result.stress[0].numpy(), s_ref, rtol=1e-10,
                                   atol=1e-10 * np.abs(s_ref).max())


@pytest.mark.parametrize("pbc", [True, False])
def test_lennard_jones_equals_ase(pbc):
    """ASE's LJ (smooth=False) shifts u by u(r_c): hayabusa's "shift" truncation."""
    eps, sigma, rc = 0.0104, 3.4, 8.5
    compare_with_ase(LennardJones(eps, sigma, rc, truncation="shift"), rattled_argon(pbc),
                     AseLennardJones(epsilon=eps, sigma=sigma, rc=rc), stress=pbc)


def test_lennard_jones_none_differs_from_ase_by_the_shift():
    """Negative control: without the shift the energy is lower by ½ Σ_pairs u(r_c)."""
    eps, sigma, rc = 0.0104, 3.4, 8.5
    atoms = rattled_argon()
    state = State.from_atoms(atoms)
    n_pairs = (pair_distances(state, rc) < rc).sum() / 2
    u_c = 4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    e_none = float(evaluate(LennardJones(eps, sigma, rc, truncation="none"), state).energy[0])
    atoms.calc = AseLennardJones(epsilon=eps, sigma=sigma, rc=rc)
    assert np.isclose(e_none, atoms.get_potential_energy() + n_pairs * u_c, rtol=1e-12)
    assert abs(n_pairs * u_c) > 1e-3


def test_morse_equals_ase_on_a_cluster():
    """ASE's Morse has ε e^{ρ0(1−r/r0)}(e^{...}−2) with a smooth cutoff from rcut1·r0; with all
    distances below rcut1·r0 it is D = ε, α = ρ0/r0 untruncated."""
    eps, r0, rho0 = 0.7, 2.6, 4.5
    rng = np.random.default_rng(2)
    positions = np.array(list(itertools.product(range(2), repeat=3)), dtype=float) * 2.5
    atoms = Atoms("Cu8", positions=positions + 0.2 * rng.normal(size=positions.shape))
    d = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
    assert d.max() < 1.9 * r0
    compare_with_ase(Morse(D=eps, alpha=rho0 / r0, r0=r0, cutoff=d.max() + 0.5, truncation="none"),
                     atoms, AseMorse(epsilon=eps, r0=r0, rho0=rho0), stress=False)


def test_morse_equals_ase_in_a_crystal():
    """A rattled fcc crystal with no distance in ASE's smoothing window (between shells), so
    both define the same energy; checks periodic images and the stress too."""
    eps, r0, rho0 = 0.35, 2.7, 4.0
    rcut1, rcut2 = 4.7 / r0, 5.0 / r0
    atoms = bulk("Cu", "fcc", a=3.6) * (3, 3, 3)
    atoms.rattle(0.02, seed=6)
    d = pair_distances(State.from_atoms(atoms), 6.0)
    assert not ((d > rcut1 * r0 - 1e-3) & (d < rcut2 * r0)).any()
    assert (d < rcut1 * r0).sum() > 27 * 40  # three shells inside
    compare_with_ase(Morse(D=eps, alpha=rho0 / r0, r0=r0, cutoff=4.8, truncation="none"),
                     atoms, AseMorse(epsilon=eps, r0=r0, rho0=rho0, rcut1=rcut1, rcut2=rcut2))


# ------------------------------------------------------------------ independent numpy sum
def numpy_pair_reference(state: State, u_of, cutoffs, types):
    """E, F, per-atom energies and stress from ASE's neighbor list and a numpy pair sum."""
    pos, cell = state.positions.numpy(), state.cell[0].numpy()
    i, j, vec = primitive_neighbor_list("ijD", state.pbc[0].numpy(), complete_cell(cell), pos,
                                        float(cutoffs.max()))
    ti, tj = types[i], types[j]
    r = np.linalg.norm(vec, axis=1)
    keep = r < cutoffs[ti, tj]
    i, vec, r, ti, tj = i[keep], vec[keep], r[keep], ti[keep], tj[keep]
    u, du = u_of(r, ti, tj)
    n = len(pos)
    atom_energy = 0.5 * np.bincount(i, weights=u, minlength=n)
    forces = np.stack([np.bincount(i, weights=du / r * vec[:, d], minlength=n)
                       for d in range(3)], axis=1)
    stress = 0.5 * np.einsum("p,pa,pb->ab", du / r, vec, vec) / abs(np.linalg.det(cell))
    return atom_energy.sum(), forces, atom_energy, stress


def test_per_type_pair_matrices_equal_numpy_sum():
    rng = np.random.default_rng(8)
    n_types = 3
    eps = rng.uniform(0.5, 1.5, (n_types, n_types))
    sig = rng.uniform(0.85, 1.05, (n_types, n_types))
    rc = rng.uniform(2.0, 2.6, (n_types, n_types))
    eps, sig, rc = (x + x.T - np.diag(np.diag(x)) for x in (eps, sig, rc))
    positions, cell, pbc, _ = periodic_system(9)
    types = rng.integers(0, n_types, len(positions))
    state = make_state([(positions, cell, pbc, types)])

    def lj(r, sigma, epsilon):
        sr6 = (sigma / r) ** 6
        return 4 * epsilon * (sr6**2 - sr6), -24 * epsilon * (2 * sr6**2 - sr6) / r

    def u_of(r, ti, tj):  # shift_force, written out
        e, s, c = eps[ti, tj], sig[ti, tj], rc[ti, tj]
        u, du = lj(r, s, e)
        u_c, du_c = lj(c, s, e)
        return u - u_c - (r - c) * du_c, du - du_c

    potential = LennardJones(eps, sig, rc, truncation="shift_force")
    assert potential.n_types == 3 and potential.cutoff == pytest.approx(rc.max())
    assert torch.equal(potential.cutoff_matrix, torch.tensor(rc))
    result = evaluate(potential, state, stress=True)
    energy, forces, atom_energy, stress = numpy_pair_reference(state, u_of, rc, types)
    assert np.isclose(float(result.energy[0]), energy, rtol=1e-12)
    np.testing.assert_allclose(result.forces.numpy(), forces, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(result.atom_energy.numpy(), atom_energy, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.stress[0].numpy(), stress, rtol=1e-10, atol=1e-12)


def test_parameter_matrices_are_validated():
    with pytest.raises(InputError, match="symmetric"):
        LennardJones(epsilon=[[1.0, 2.0], [1.5, 1.0]], sigma=1.0)
    with pytest.raises(InputError, match="must be a scalar or a symmetric 3x3"):
        LennardJones(epsilon=[[1.0, 1.0], [1.0, 1.0]], sigma=[[1.0, 1.0, 1.0]] * 3)
    with pytest.raises(InputError, match="sigma"):
        LennardJones(epsilon=1.0, sigma=[[1.0, 1.0, 1.0]] * 2)
    with pytest.raises(InputError, match="truncation"):
        LennardJones(truncation="smooth")
    with pytest.raises(InputError, match="cutoff"):
        Morse(cutoff=[[2.0, -1.0], [-1.0, 2.0]])


# ------------------------------------------------------------------ truncation at r_c
def dimer(r: float, types=(0, 0)) -> State:
    direction = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    positions = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0] + r * direction])
    return make_state([(positions, np.zeros((3, 3)), np.zeros(3, dtype=bool), np.array(types))])


def dimer_energy_force(potential, r, types=(0, 0)):
    """Energy and the force on atom 1 along the bond (positive: repulsive)."""
    state = dimer(r, types)
    result = evaluate(potential, state)
    bond = (state.positions[1] - state.positions[0]) / r
    return float(result.energy[0]), float(result.forces[1] @ bond)


def lj_u_du(r, eps=1.0, sigma=1.0):
    sr6 = (sigma / r) ** 6
    return 4 * eps * (sr6**2 - sr6), -24 * eps * (2 * sr6**2 - sr6) / r


@pytest.mark.parametrize("r", [0.95, 1.12, 1.5, 2.2, 2.49])
@pytest.mark.parametrize("truncation", ["none", "shift", "shift_force"])
def test_dimer_follows_the_truncation_formula(truncation, r):
    rc = 2.5
    u, du = lj_u_du(r)
    u_c, du_c = lj_u_du(rc)
    expected_u = {"none": u, "shift": u - u_c, "shift_force": u - u_c - (r - rc) * du_c}
    expected_du = {"none": du, "shift": du, "shift_force": du - du_c}
    e, f = dimer_energy_force(LennardJones(cutoff=rc, truncation=truncation), r)
    assert np.isclose(e, expected_u[truncation], rtol=1e-12, atol=1e-15)
    assert np.isclose(f, -expected_du[truncation], rtol=1e-12, atol=1e-15)


def test_shift_force_goes_to_zero_continuously():
    rc = 2.5
    potential = LennardJones(cutoff=rc, truncation="shift_force")
    e, f = zip(*(dimer_energy_force(potential, rc - d) for d in (1e-2, 1e-3, 1e-4, 1e-6)),
               strict=True)
    # Energy vanishes quadratically, force linearly in the distance to r_c.
    u_dd = lj_second_derivative(rc)
    assert np.allclose(np.array(e) / np.array([1e-2, 1e-3, 1e-4, 1e-6]) ** 2, 0.5 * u_dd,
                       rtol=2e-2)
    assert np.allclose(np.array(f) / np.array([1e-2, 1e-3, 1e-4, 1e-6]), u_dd, rtol=2e-2)
    assert abs(e[-1]) < 1e-12 and abs(f[-1]) < 1e-6
    assert dimer_energy_force(potential, rc + 1e-9) == (0.0, 0.0)
    # Negative controls: "shift" keeps a force jump, "none" an energy jump at r_c.
    _, f_shift = dimer_energy_force(LennardJones(cutoff=rc, truncation="shift"), rc - 1e-9)
    assert np.isclose(f_shift, -lj_u_du(rc)[1], rtol=1e-6)
    e_none, _ = dimer_energy_force(LennardJones(cutoff=rc, truncation="none"), rc - 1e-9)
    assert np.isclose(e_none, lj_u_du(rc)[0], rtol=1e-6)


def lj_second_derivative(r, eps=1.0, sigma=1.0):
    sr6 = (sigma / r) ** 6
    return 24 * eps * (26 * sr6**2 - 7 * sr6) / r**2


def test_morse_dimer_minimum_and_depth():
    D, alpha, r0 = 0.8, 1.7, 1.2
    potential = Morse(D=D, alpha=alpha, r0=r0, cutoff=6.0, truncation="none")
    e, f = dimer_energy_force(potential, r0)
    assert np.isclose(e, -D, rtol=1e-14) and abs(f) < 1e-14
    # Curvature at the minimum: k = 2 D α².
    h = 1e-4
    e_plus, _ = dimer_energy_force(potential, r0 + h)
    e_minus, _ = dimer_energy_force(potential, r0 - h)
    assert np.isclose((e_plus + e_minus - 2 * e) / h**2, 2 * D * alpha**2, rtol=1e-6)


# ----------------------------------------------------------------------- Kob–Andersen
def test_kob_andersen_parameters():
    ka = kob_andersen()
    assert ka.truncation == "shift_force" and ka.n_types == 2
    assert torch.equal(ka.epsilon, torch.tensor([[1.0, 1.5], [1.5, 0.5]], dtype=torch.float64))
    assert torch.equal(ka.sigma, torch.tensor([[1.0, 0.8], [0.8, 0.88]], dtype=torch.float64))
    assert torch.allclose(ka.cutoff_matrix, 2.5 * ka.sigma, rtol=1e-15)
    assert ka.cutoff == pytest.approx(2.5)


@pytest.mark.parametrize("types, eps, sigma, r", [
    ((0, 0), 1.0, 1.0, 1.1), ((0, 1), 1.5, 0.8, 0.9), ((1, 0), 1.5, 0.8, 1.7),
    ((1, 1), 0.5, 0.88, 1.0), ((1, 1), 0.5, 0.88, 2.15),
])
def test_kob_andersen_dimers(types, eps, sigma, r):
    rc = 2.5 * sigma
    u, du = lj_u_du(r, eps, sigma)
    u_c, du_c = lj_u_du(rc, eps, sigma)
    e, f = dimer_energy_force(kob_andersen(), r, types)
    assert np.isclose(e, u - u_c - (r - rc) * du_c, rtol=1e-12, atol=1e-15)
    assert np.isclose(f, -(du - du_c), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("types, r", [((1, 1), 2.21), ((0, 1), 2.01), ((1, 0), 2.3)])
def test_kob_andersen_pairs_beyond_their_own_cutoff_vanish(types, r):
    """r is below the largest cutoff (2.5) but beyond 2.5 σ_αβ of this pair."""
    assert dimer_energy_force(kob_andersen(), r, types) == (0.0, 0.0)


# ------------------------------------------------------------------------------ batching
@pytest.mark.parametrize("name", list(potentials()))
def test_batch_equals_systems_alone(name):
    potential = potentials()[name]
    systems = [periodic_system(21), cluster_system(22), tiny_system(23), slab_system(24)]
    batch = evaluate(potential, make_state(systems), stress=True)
    offset = 0
    for s, system in enumerate(systems):
        alone = evaluate(potential, make_state([system]), stress=True)
        sel = slice(offset, offset + len(system[0]))
        offset += len(system[0])
        assert torch.allclose(batch.energy[s], alone.energy[0], rtol=1e-13, atol=1e-13)
        assert torch.allclose(batch.forces[sel], alone.forces, rtol=1e-13, atol=1e-12)
        assert torch.allclose(batch.atom_energy[sel], alone.atom_energy, rtol=1e-13,
                              atol=1e-13)
        if system[2].all():  # stress is defined for periodic cells
            assert torch.allclose(batch.stress[s], alone.stress[0], rtol=1e-13, atol=1e-13)
        # Per-atom energies add up to the system's energy.
        assert torch.allclose(alone.atom_energy.sum().double(), alone.energy[0], rtol=1e-13,
                              atol=1e-13)
    assert batch.energy.shape == (4,) and batch.energy.dtype == torch.float64
    assert batch.forces.shape == (offset, 3) and batch.stress.shape == (4, 3, 3)


def test_sum_potential_adds_its_terms():
    terms = [LennardJones(cutoff=2.5, truncation="shift", n_types=2),
             Morse(D=0.3, alpha=2.0, r0=1.1, cutoff=3.0, n_types=2)]
    total = SumPotential(*terms)
    assert total.cutoff == 3.0
    state = make_state([periodic_system(30), cluster_system(31)])
    nl = NeighborList(total.cutoff).build(state)
    parts = [t(state, nl, compute_stress=True) for t in terms]
    result = total(state, nl, compute_stress=True)
    for field in ("energy", "forces", "stress", "atom_energy"):
        expected = getattr(parts[0], field) + getattr(parts[1], field)
        got = getattr(result, field)
        if field == "stress":  # defined for the periodic system only
            expected, got = expected[0], got[0]
        assert torch.allclose(got, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("make", [
    lambda p: LennardJones(1.0, 1.0, 2.5, truncation="shift_force", n_types=2, precision=p),
    lambda p: kob_andersen(precision=p),
    lambda p: Morse(1.0, 3.0, 1.1, 2.5, n_types=2, precision=p),
])
def test_float32_precision_matches_float64(make):
    """float32 pair terms with float64 positions and accumulation stay close to float64."""
    state = make_state([periodic_system(seed=4, n=4), periodic_system(seed=5, n=3)],
                       atomic_numbers=None)
    state.type_ids = (torch.arange(state.n_atoms) % 5 == 0).long()
    ref = evaluate(make("float64"), state, stress=True)
    low = evaluate(make("float32"), state, stress=True)
    assert low.forces.dtype == torch.float64 and low.energy.dtype == torch.float64
    scale = ref.forces.abs().max()
    assert (low.forces - ref.forces).abs().max() < 1e-5 * scale
    assert torch.allclose(low.energy, ref.energy, rtol=1e-5, atol=1e-5 * state.n_atoms)
    assert torch.allclose(low.stress, ref.stress, rtol=1e-4, atol=1e-5)
    assert not torch.equal(low.forces, ref.forces)  # it really ran in float32
