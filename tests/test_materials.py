"""LLZO builders and structure checks: composition, charge, bond lengths, Li-Li exclusion,
space groups, seeds; grain-boundary bicrystals against pymatgen and bulk; checker messages."""

import itertools

import ase
import ase.data
import numpy as np
import pytest
import spglib
from ase.neighborlist import neighbor_list
from pymatgen.core import Structure
from pymatgen.core.interface import GrainBoundaryGenerator

from hayabusa.errors import InputError
from hayabusa.materials import (
    SYMMETRIC_TILT,
    check_structure,
    cubic_llzo,
    llzo_grain_boundary,
    tetragonal_llzo,
)
from hayabusa.materials.checks import close_pairs, element_counts, net_charge
from hayabusa.materials.grain_boundary import GB_MIN_DISTANCE, _bicrystal, _plane_distance
from hayabusa.materials.llzo import BULK_MIN_DISTANCE, LI_LI_MIN_A, OCT_SHIFT_A, _Sites

CELL = {"Li": 56, "La": 24, "Zr": 16, "O": 96}


def _framework(atoms):
    return atoms[[s != "Li" for s in atoms.get_chemical_symbols()]]


def _spacegroup(atoms) -> int:
    data = spglib.get_symmetry_dataset(
        (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
    return int(data.number)


def _neighbour_distances(atoms, centre_mask, symbol, cutoff):
    """Sorted distances [n_centres, k] from the masked atoms to ``symbol`` within cutoff."""
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    keep = centre_mask[i] & (atoms.numbers[j] == ase.data.atomic_numbers[symbol])
    return [np.sort(d[keep & (i == c)]) for c in np.flatnonzero(centre_mask)]


def _li_li_min(atoms) -> float:
    li = atoms[[s == "Li" for s in atoms.get_chemical_symbols()]]
    _, _, d = neighbor_list("ijd", li, 3.0)
    return float(d.min())


@pytest.fixture(scope="module")
def cubic():
    return cubic_llzo()


# --- bulk cubic ------------------------------------------------------------------------------

def test_cubic_cell_composition_charge_and_site_counts(cubic):
    assert len(cubic) == 192
    assert element_counts(cubic) == CELL
    assert net_charge(cubic) == 0
    tags = cubic.get_tags()
    assert (tags == 1).sum() == 13 and (tags == 2).sum() == 43  # 24d occupancy 13/24
    assert np.allclose(cubic.cell[:], np.eye(3) * 12.97)


def test_cubic_bond_lengths(cubic):
    zr = cubic.numbers == 40
    for row in _neighbour_distances(cubic, zr, "O", 2.5):  # ZrO6 octahedra
        assert len(row) == 6 and np.allclose(row, 2.106, atol=2e-3)
    tet = cubic.get_tags() == 1
    for row in _neighbour_distances(cubic, tet, "O", 2.3):  # LiO4 tetrahedra (24d)
        assert len(row) == 4 and np.allclose(row, 1.913, atol=2e-3)
    la = cubic.numbers == 57
    for row in _neighbour_distances(cubic, la, "O", 2.7):  # LaO8 dodecahedra
        assert len(row) == 8 and np.allclose(row, [2.503] * 4 + [2.594] * 4, atol=2e-3)


def test_candidate_li_sites_have_the_forbidden_pairs_the_rule_avoids():
    sites = _Sites((12.97,) * 3, (1, 1, 1))
    d_face = np.linalg.norm(sites.oct_to_tet, axis=2)
    assert np.allclose(d_face, 1.99, atol=0.01)  # octahedron centre to both tetrahedra
    both = np.arange(len(sites.oct))
    h0, h1 = sites.li_position(both, 0 * both), sites.li_position(both, 0 * both + 1)
    assert np.allclose(np.linalg.norm(h0 - h1, axis=1), 2 * OCT_SHIFT_A, atol=0.01)  # 0.70 Å
    near = np.linalg.norm(sites.oct_to_tet[:, 0] - (h0 - sites.oct), axis=1)
    far = np.linalg.norm(sites.oct_to_tet[:, 1] - (h0 - sites.oct), axis=1)
    assert np.allclose(near, 1.99 - OCT_SHIFT_A, atol=0.01)  # 1.64 Å: forbidden
    assert np.all(far > LI_LI_MIN_A) and np.all(near < LI_LI_MIN_A)


@pytest.mark.parametrize("seed", range(5))
def test_no_li_pair_closer_than_threshold(seed):
    atoms = cubic_llzo(seed=seed)
    assert _li_li_min(atoms) >= LI_LI_MIN_A
    assert element_counts(atoms) == CELL


def test_supercell_li_threshold_and_counts():
    atoms = cubic_llzo(seed=3, supercell=(2, 2, 2))
    assert len(atoms) == 8 * 192
    assert element_counts(atoms) == {k: 8 * v for k, v in CELL.items()}
    assert _li_li_min(atoms) >= LI_LI_MIN_A
    assert (atoms.get_tags() == 1).sum() == round(0.54 * 192)


def test_seeds_reproduce_and_differ():
    a, b, c = cubic_llzo(seed=7), cubic_llzo(seed=7), cubic_llzo(seed=8)
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.numbers, b.numbers)
    li_a = np.round(a.positions[a.numbers == 3], 6)
    li_c = np.round(c.positions[c.numbers == 3], 6)
    assert {tuple(p) for p in li_a} != {tuple(p) for p in li_c}


def test_framework_space_groups(cubic):
    assert _spacegroup(_framework(cubic)) == 230
    assert _spacegroup(_framework(cubic_llzo(supercell=(1, 1, 2)))) == 230
    tet = tetragonal_llzo()
    assert _spacegroup(_framework(tet)) == 142
    assert _spacegroup(tet) == 142  # the Li order is I4_1/acd too


def test_tetragonal_cell():
    atoms = tetragonal_llzo()
    assert element_counts(atoms) == CELL and net_charge(atoms) == 0
    assert np.allclose(atoms.cell.cellpar(), [13.134, 13.134, 12.663, 90, 90, 90])
    tags = atoms.get_tags()
    assert (tags == 1).sum() == 8 and (tags == 2).sum() == 48  # 8a + (16f + 32g)
    assert _li_li_min(atoms) >= LI_LI_MIN_A
    big = tetragonal_llzo(supercell=(1, 2, 1))
    assert len(big) == 384 and _spacegroup(_framework(big)) == 142


def test_tet_occupancy_bounds():
    every_oct = cubic_llzo(tet_occupancy=1 / 3)  # 8 tetrahedral Li: all 48 octahedra full
    assert (every_oct.get_tags() == 2).sum() == 48
    for bad in (0.3, 0.6):
        with pytest.raises(InputError, match="tet_occupancy must be in"):
            cubic_llzo(tet_occupancy=bad)
    with pytest.raises(InputError, match="supercell"):
        cubic_llzo(supercell=(1, 0, 1))


def test_primitive_cell():
    atoms = cubic_llzo(seed=2, primitive=True)
    assert len(atoms) == 96 and element_counts(atoms) == {k: v // 2 for k, v in CELL.items()}
    assert _spacegroup(_framework(atoms)) == 230
    assert np.allclose(atoms.cell.cellpar()[:3], 12.97 * np.sqrt(3) / 2)
    assert _li_li_min(atoms) >= LI_LI_MIN_A


# --- checker ---------------------------------------------------------------------------------

def test_checker_passes_and_names_each_failure(cubic):
    check_structure(cubic, CELL, BULK_MIN_DISTANCE)
    check_structure(cubic, "Li56La24Zr16O96", 1.5)
    with pytest.raises(InputError, match=r"composition check failed: .*Li: 55 instead of 56"):
        check_structure(cubic[1:], CELL)
    no_o = cubic.copy()
    del no_o[int(np.flatnonzero(no_o.numbers == 8)[0])]
    with pytest.raises(InputError, match=r"charge check failed: net formal charge \+2 e"):
        check_structure(no_o)
    close = cubic.copy()
    li = np.flatnonzero(close.numbers == 3)
    close.positions[li[1]] = close.positions[li[0]] + [1.2, 0, 0]
    pattern = rf"distance check failed: Li-Li pair, atoms {li[0]} and {li[1]}, at 1.200 Å"
    with pytest.raises(InputError, match=pattern):
        check_structure(close, min_distance=BULK_MIN_DISTANCE)
    with pytest.raises(InputError, match="element Na has no formal charge"):
        check_structure(cubic + ase.Atoms("Na", positions=[[0, 0, 6]]))
    assert close_pairs(cubic, BULK_MIN_DISTANCE)[0].size == 0


# --- grain boundaries ------------------------------------------------------------------------

def _cubic_rotations():
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return out


def _cubic_frame(zr_zr):
    """Cubic axes (rows) of a grain from its Zr-Zr <111> vectors: pairs at cos = -1/3 sum
    to a <100> axis."""
    u = zr_zr / np.linalg.norm(zr_zr, axis=1, keepdims=True)
    axes = []
    for p, q in itertools.combinations(u, 2):
        if abs(p @ q + 1 / 3) < 0.02:
            v = (p + q) / np.linalg.norm(p + q)
            if all(abs(abs(v @ w) - 1) > 1e-2 for w in axes):
                axes.append(v)
    x = axes[0]
    y = next(w for w in axes if abs(w @ x) < 0.02)
    return np.array([x, y, np.cross(x, y)])


def _disorientation_deg(atoms, margin=8.0):
    """Smallest rotation angle between the cubic frames of the two grains, from Zr atoms
    farther than ``margin`` Å from both GB planes."""
    far = _plane_distance(atoms.positions[:, 2], atoms.info["gb_planes_A"],
                          atoms.cell[2, 2]) > margin
    i, j, vec = neighbor_list("ijD", atoms, 6.0)
    zr = atoms.numbers == 40
    nn = np.abs(np.linalg.norm(vec, axis=1) - 12.97 * np.sqrt(3) / 4) < 0.05
    frames = [_cubic_frame(vec[zr[i] & zr[j] & nn & far[i] & (atoms.arrays["grain"][i] == g)])
              for g in (0, 1)]
    m = frames[1] @ frames[0].T
    return min(np.degrees(np.arccos(np.clip((np.trace(s @ m) - 1) / 2, -1, 1)))
               for s in _cubic_rotations())


GBS = {5: ((3, 1, 0), 36.87), 3: ((1, 1, 2), 60.0)}  # Σ3 [1-10] 109.47° ≡ 60° about <111>


@pytest.fixture(scope="module", params=sorted(GBS))
def gb(request):
    sigma = request.param
    return sigma, llzo_grain_boundary(sigma=sigma, plane=GBS[sigma][0])


def test_gb_neutral_and_no_close_pairs(gb):
    sigma, atoms = gb
    assert net_charge(atoms) == 0
    assert close_pairs(atoms, GB_MIN_DISTANCE)[0].size == 0
    check_structure(atoms, min_distance=GB_MIN_DISTANCE)
    assert len(atoms) <= 2000  # the demo size
    removed = atoms.info["removed"]
    before = atoms.info["atoms_before_removal"]
    n_removed = sum(removed["overlap"].values()) + sum(removed["neutrality"].values())
    assert n_removed > 0 and len(atoms) == sum(before.values()) - n_removed
    assert before == {k: v * sum(before.values()) // 192 for k, v in CELL.items()}


def test_gb_planes_recorded_and_grains_between_them(gb):
    _, atoms = gb
    cell = atoms.cell[:]
    assert atoms.info["gb_normal_axis"] == 2
    assert np.allclose(cell[2, :2], 0) and np.allclose(cell[:2, 2], 0)  # normal along z
    p0, p1 = atoms.info["gb_planes_A"]
    length = cell[2, 2]
    assert abs(((p1 - p0) % length) - length / 2) < 1.0  # two GBs, half a cell apart
    z = atoms.positions[:, 2]
    inside = ((z - p0) % length) < ((p1 - p0) % length)
    assert np.array_equal(inside, atoms.arrays["grain"] == 1)


def test_gb_grains_are_rotated_bulk(gb):
    sigma, atoms = gb
    assert _disorientation_deg(atoms) == pytest.approx(GBS[sigma][1], abs=0.05)
    far = _plane_distance(atoms.positions[:, 2], atoms.info["gb_planes_A"],
                          atoms.cell[2, 2]) > 8.0
    rows = _neighbour_distances(atoms, far & (atoms.numbers == 40), "O", 2.5)
    assert len(rows) > 10
    for row in rows:  # bulk ZrO6 octahedra away from the planes
        assert len(row) == 6 and np.allclose(row, 2.106, atol=2e-3)


@pytest.mark.parametrize("key", sorted(SYMMETRIC_TILT))
def test_gb_framework_equals_pymatgen_and_is_symmetric(key):
    sigma, plane = key
    axis, angle = SYMMETRIC_TILT[key]
    prim = _framework(cubic_llzo(primitive=True))
    bulk = Structure(prim.cell[:], prim.get_chemical_symbols(), prim.positions,
                     coords_are_cartesian=True)
    gen = GrainBoundaryGenerator(bulk)
    assert any(abs(angle - x) < 1e-6 for x in gen.get_rotation_angle_from_sigma(sigma, axis))
    ref = gen.gb_from_parameters(axis, angle, expand_times=1, plane=plane, normal=True,
                                 rm_ratio=0.0)
    ours = _bicrystal(bulk.copy(), axis, angle, plane, 1)
    assert np.allclose(ref.lattice.matrix, ours.lattice.matrix)
    d = ref.lattice.get_all_distances(ref.frac_coords, ours.frac_coords)
    assert len(ref) == len(ours) and d.min(axis=1).max() < 1e-4
    nearest = d.argmin(axis=1)
    assert [str(s) for s in ref.species] == [str(ours.species[k]) for k in nearest]
    assert sorted(map(abs, ref.join_plane)) == sorted(plane)  # symmetric: mirror-image plane
    assert tuple(ref.join_plane) != plane


def test_gb_size_knob_and_seed():
    one = llzo_grain_boundary(sigma=3, plane=(1, 1, 2))
    two = llzo_grain_boundary(sigma=3, plane=(1, 1, 2), expand_times=2)
    wide = llzo_grain_boundary(sigma=3, plane=(1, 1, 2), in_plane=(1, 2))
    n1 = sum(one.info["atoms_before_removal"].values())
    assert sum(two.info["atoms_before_removal"].values()) == 2 * n1
    assert two.info["removed"] == one.info["removed"]  # same two GBs, thicker grains
    assert len(wide) == 2 * len(one)
    assert np.isclose(two.cell[2, 2], 2 * one.cell[2, 2])
    again = llzo_grain_boundary(sigma=3, plane=(1, 1, 2))
    assert np.array_equal(again.positions, one.positions)
    other = llzo_grain_boundary(sigma=3, plane=(1, 1, 2), seed=1)
    assert not (len(other) == len(one) and np.allclose(other.positions, one.positions))


@pytest.mark.slow
def test_gb_science_cells_build_and_pass_checks():
    for sigma, kwargs in ((5, dict(expand_times=3)), (3, dict(expand_times=5))):
        atoms = llzo_grain_boundary(sigma=sigma, plane=GBS[sigma][0], **kwargs)
        assert len(atoms) >= 5000 and net_charge(atoms) == 0
        assert _disorientation_deg(atoms) == pytest.approx(GBS[sigma][1], abs=0.05)


def test_gb_bad_input():
    with pytest.raises(InputError, match=r"unsupported GB sigma=7 plane=\(3, 1, 0\)"):
        llzo_grain_boundary(sigma=7)
    with pytest.raises(InputError, match="expand_times must be a positive int"):
        llzo_grain_boundary(expand_times=0)
    with pytest.raises(InputError, match="in_plane must be two positive ints"):
        llzo_grain_boundary(in_plane=(1,))
