"""ASE bridges: HayabusaCalculator equals the engine path and ASE's LJ; AseCalculatorPotential
equals the wrapped ASE calculator on a batch; potentials reject states they cannot handle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.stress import voigt_6_to_full_3x3_stress

from hayabusa.calculator import HayabusaCalculator
from hayabusa.errors import InputError
from hayabusa.neighbors import NeighborList
from hayabusa.potentials import AseCalculatorPotential, LennardJones, SumPotential, kob_andersen
from hayabusa.state import State

EPS, SIGMA, RC = 0.0104, 3.4, 8.5


def argon(seed=0):
    atoms = bulk("Ar", "fcc", a=5.3) * (2, 2, 3)
    atoms.cell[2] += [1.0, -0.5, 0.0]  # triclinic
    atoms.rattle(0.2, seed=seed)
    return atoms


def test_calculator_equals_engine_and_ase_lj():
    atoms = argon()
    atoms.calc = HayabusaCalculator(LennardJones(EPS, SIGMA, RC, truncation="shift"))
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    stress, energies = atoms.get_stress(), atoms.get_potential_energies()
    assert stress.shape == (6,) and forces.shape == (len(atoms), 3)

    # The engine path: State → NeighborList → potential.
    state = State.from_atoms(atoms)
    potential = LennardJones(EPS, SIGMA, RC, truncation="shift")
    result = potential(state, NeighborList(potential.cutoff).build(state), compute_stress=True)
    assert energy == float(result.energy[0])
    assert np.array_equal(forces, result.forces.numpy())
    assert np.allclose(voigt_6_to_full_3x3_stress(stress), result.stress[0].numpy(),
                       rtol=1e-15, atol=0)
    assert np.array_equal(energies, result.atom_energy.numpy())

    # ASE's own LJ (it shifts the pair energy by u(r_c), like truncation="shift").
    reference = atoms.copy()
    reference.calc = AseLennardJones(epsilon=EPS, sigma=SIGMA, rc=RC)
    assert np.isclose(energy, reference.get_potential_energy(), rtol=1e-12)
    f_ref = reference.get_forces()
    np.testing.assert_allclose(forces, f_ref, rtol=1e-10, atol=1e-10 * np.abs(f_ref).max())
    s_ref = reference.get_stress()
    np.testing.assert_allclose(stress, s_ref, rtol=1e-10, atol=1e-10 * np.abs(s_ref).max())
    np.testing.assert_allclose(energies, reference.get_potential_energies(), rtol=1e-10)
    assert atoms.get_potential_energy() == energy  # cached, consistent


def test_calculator_follows_moving_atoms():
    """Results are recomputed after the atoms change (ASE's cache is invalidated)."""
    atoms = argon(1)
    atoms.calc = HayabusaCalculator(LennardJones(EPS, SIGMA, RC))
    reference = atoms.copy()
    reference.calc = AseLennardJones(epsilon=EPS, sigma=SIGMA, rc=RC)
    for step in range(3):
        for a in (atoms, reference):
            a.positions[step] += [0.3, -0.2, 0.1]
        assert np.isclose(atoms.get_potential_energy(), reference.get_potential_energy(),
                          rtol=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), rtol=1e-9,
                                   atol=1e-12)


def test_calculator_on_a_molecule_has_no_stress():
    atoms = molecule("CH4")
    atoms.positions *= 2.0  # keep the LJ energies moderate
    atoms.calc = HayabusaCalculator(LennardJones(EPS, SIGMA, RC, n_types=2))
    reference = atoms.copy()
    reference.calc = AseLennardJones(epsilon=EPS, sigma=SIGMA, rc=RC)
    assert np.isclose(atoms.get_potential_energy(), reference.get_potential_energy(),
                      rtol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), rtol=1e-10,
                               atol=1e-14)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_calculator_rejects_more_species_than_the_potential_has():
    atoms = molecule("CH4")  # two species, LJ parameters for one type
    atoms.calc = HayabusaCalculator(LennardJones(EPS, SIGMA, RC))
    with pytest.raises(InputError, match="type id 1"):
        atoms.get_potential_energy()


def copper_batch():
    first = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1)
    first.rattle(0.05, seed=2)
    second = bulk("Cu", "fcc", a=3.7) * (2, 2, 2)  # primitive, skewed, other size
    second.cell[0] += [0.1, 0.0, -0.05]
    second.rattle(0.08, seed=3)
    return [first, second]


def test_ase_calculator_potential_equals_emt_on_a_batch():
    structures = copper_batch()
    state = State.from_atoms(structures)
    result = AseCalculatorPotential(EMT())(state, None, compute_stress=True)
    assert result.energy.shape == (2,) and result.stress.shape == (2, 3, 3)
    offset = 0
    for s, atoms in enumerate(structures):
        atoms = atoms.copy()
        atoms.calc = EMT()
        sel = slice(offset, offset + len(atoms))
        offset += len(atoms)
        assert np.isclose(float(result.energy[s]), atoms.get_potential_energy(), rtol=1e-12,
                          atol=1e-12)
        f_ref = atoms.get_forces()
        assert np.abs(f_ref).max() > 1e-2
        np.testing.assert_allclose(result.forces[sel].numpy(), f_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(result.stress[s].numpy(),
                                   voigt_6_to_full_3x3_stress(atoms.get_stress()), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(result.atom_energy[sel].numpy(),
                                   atoms.get_potential_energies(), rtol=1e-10, atol=1e-12)
    assert offset == state.n_atoms
    # The two structures really differ (results are not one structure's, repeated).
    assert abs(float(result.energy[0] / len(structures[0])
                     - result.energy[1] / len(structures[1]))) > 1e-3


def test_ase_calculator_potential_round_trips_through_hayabusa_calculator():
    """EMT wrapped twice (ASE → hayabusa Potential → ASE calculator) is still EMT."""
    atoms = copper_batch()[1]
    atoms.calc = HayabusaCalculator(AseCalculatorPotential(EMT()))
    reference = atoms.copy()
    reference.calc = EMT()
    assert np.isclose(atoms.get_potential_energy(), reference.get_potential_energy(),
                      rtol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), reference.get_stress(), rtol=1e-10,
                               atol=1e-12)


def _three_species_state():
    water = molecule("H2O")
    methane = molecule("CH4")
    return State.from_atoms([water, methane], species=["H", "O", "C"])  # C has type id 2


def test_check_state_rejects_type_ids_beyond_the_parameter_matrix():
    state = _three_species_state()
    potential = LennardJones(epsilon=[[1.0, 1.0], [1.0, 1.0]], sigma=1.0)
    with pytest.raises(InputError) as info:
        potential.check_state(state)
    message = str(info.value)
    assert "system 1, atom 0" in message and "type id 2" in message and "2 types" in message
    assert "\n" not in message
    with pytest.raises(InputError, match="system 1, atom 0"):
        SumPotential(LennardJones(n_types=3), kob_andersen()).check_state(state)
    # Enough types: no error.
    LennardJones(n_types=3).check_state(state)
    kob_andersen().check_state(State.from_atoms(molecule("H2O"), species=["O", "H"]))


def test_check_state_rejects_unknown_species():
    state = _three_species_state()
    potential = LennardJones(n_types=3)
    potential.species = (1, 8)  # a potential that knows H and O only
    with pytest.raises(InputError) as info:
        potential.check_state(state)
    assert "system 1, atom 0" in str(info.value) and "C" in str(info.value)


def test_calculator_float32_is_close_to_float64():
    atoms = argon(4)
    atoms.calc = HayabusaCalculator(LennardJones(EPS, SIGMA, RC), dtype=torch.float32)
    reference = atoms.copy()
    reference.calc = HayabusaCalculator(LennardJones(EPS, SIGMA, RC))
    assert np.isclose(atoms.get_potential_energy(), reference.get_potential_energy(),
                      rtol=1e-5)
    f_ref = reference.get_forces()
    np.testing.assert_allclose(atoms.get_forces(), f_ref, atol=1e-4 * np.abs(f_ref).max())
