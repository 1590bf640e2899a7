"""Structure builders: lattice density, Kob–Andersen composition/reproducibility/spacing, files."""

import ase.io
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from hayabusa.builders import KA_SYMBOLS, kob_andersen_mixture, lattice, read_structure
from hayabusa.errors import InputError
from hayabusa.state import State


@pytest.mark.parametrize("kind,per_cell", [("sc", 1), ("bcc", 2), ("fcc", 4)])
def test_lattice_density_sets_lattice_constant(kind, per_cell):
    atoms = lattice(kind, (2, 3, 4), density=0.8442, mass=1.0)
    assert len(atoms) == per_cell * 24
    assert len(atoms) / atoms.get_volume() == pytest.approx(0.8442, rel=1e-12)
    a = (per_cell / 0.8442) ** (1 / 3)
    np.testing.assert_allclose(atoms.cell.lengths(), [2 * a, 3 * a, 4 * a], rtol=1e-12)
    assert atoms.pbc.all()
    np.testing.assert_array_equal(atoms.get_masses(), 1.0)


def test_fcc_nearest_neighbours_and_default_mass():
    atoms = lattice("fcc", 3, lattice_constant=5.26, symbol="Ar")
    i, d = neighbor_list("id", atoms, 5.26 / np.sqrt(2) + 0.01)
    assert np.bincount(i).tolist() == [12] * len(atoms)  # fcc: 12 nearest neighbours
    np.testing.assert_allclose(d, 5.26 / np.sqrt(2), rtol=1e-12)
    assert atoms.get_masses()[0] == pytest.approx(39.948)


@pytest.mark.parametrize("kwargs", [dict(density=1.0, lattice_constant=1.0), dict(),
                                    dict(density=-1.0), dict(density=1.0, kind="hcp"),
                                    dict(density=1.0, n_cells=(2, 2)),
                                    dict(density=1.0, symbol="Xx")])
def test_lattice_rejects_bad_input(kwargs):
    with pytest.raises(InputError):
        lattice(**{"kind": "fcc", "n_cells": 2, **kwargs})


def test_kob_andersen_composition_density_masses():
    atoms = kob_andersen_mixture(1000, density=1.2, seed=3)
    symbols = atoms.get_chemical_symbols()
    assert symbols.count(KA_SYMBOLS[0]) == 800 and symbols.count(KA_SYMBOLS[1]) == 200
    assert len(atoms) / atoms.get_volume() == pytest.approx(1.2, rel=1e-12)
    np.testing.assert_allclose(atoms.cell.array, np.eye(3) * (1000 / 1.2) ** (1 / 3))
    np.testing.assert_array_equal(atoms.get_masses(), 1.0)
    frac = atoms.get_scaled_positions(wrap=False)
    assert (frac >= 0).all() and (frac < 1).all()
    # default type order of State is A (id 0), B (id 1)
    state = State.from_atoms(atoms, units="lj")
    assert state.type_ids.bincount().tolist() == [800, 200]
    odd = kob_andersen_mixture(97, fraction_a=0.8, seed=0).get_chemical_symbols()
    assert odd.count(KA_SYMBOLS[0]) == round(0.8 * 97)


def test_kob_andersen_is_reproducible_and_seeded():
    a = kob_andersen_mixture(500, seed=7)
    b = kob_andersen_mixture(500, seed=7)
    c = kob_andersen_mixture(500, seed=8)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.numbers, b.numbers)
    assert not np.array_equal(a.positions, c.positions)
    assert not np.array_equal(a.numbers, c.numbers)


@pytest.mark.parametrize("n_atoms", [256, 500, 4096])
def test_kob_andersen_minimum_distance(n_atoms):
    atoms = kob_andersen_mixture(n_atoms, density=1.2, seed=1)
    _, d = neighbor_list("id", atoms, 1.2)
    # nearest-neighbour spacing of a random close packing at rho=1.2 is ~0.75-0.8;
    # the builder guarantees (1 - 2 sqrt(3) 0.05) d_lattice >= 0.8 here
    assert d.min() > 0.8
    assert len(d) > 0


def test_kob_andersen_rejects_bad_input():
    for kwargs in (dict(n_atoms=1), dict(n_atoms=100, density=0), dict(n_atoms=100,
                   fraction_a=1.0), dict(n_atoms=100, displacement=0.3)):
        with pytest.raises(InputError):
            kob_andersen_mixture(**kwargs)


def test_read_structure_roundtrip_and_errors(tmp_path):
    atoms = lattice("bcc", 2, lattice_constant=3.3, symbol="Fe")
    frames = [atoms, lattice("sc", 2, lattice_constant=2.0, symbol="Cu")]
    path = tmp_path / "two.extxyz"
    ase.io.write(path, frames)
    last = read_structure(path)
    assert last.get_chemical_formula() == "Cu8"
    first = read_structure(path, index=0)
    np.testing.assert_allclose(first.positions, atoms.positions)

    with pytest.raises(InputError, match="missing.xyz: structure file not found"):
        read_structure(tmp_path / "missing.xyz")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is\nnot an xyz file\n")
    with pytest.raises(InputError, match="garbage.xyz: cannot read"):
        read_structure(garbage)
    with pytest.raises(InputError, match="two.extxyz"):
        read_structure(path, index=5)
