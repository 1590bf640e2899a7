"""Coincident-site-lattice symmetric tilt grain boundaries of cubic LLZO as periodic bicrystals.

Recipe (``llzo_grain_boundary``):

1. Bulk: the 96-atom primitive cubic LLZO cell (``cubic_llzo(primitive=True)``, seeded Li).
2. Grains: pymatgen's ``GrainBoundaryGenerator.get_trans_mat`` gives the integer matrices of
   the two CSL-oriented grains for the rotation axis, angle and plane (c normal to the plane);
   each grain is the bulk cell times its matrix, expanded ``expand_times`` along c, and the
   two are stacked along c exactly as ``GrainBoundaryGenerator.gb_from_parameters`` stacks
   them (tests/test_materials.py checks that the framework atoms coincide with pymatgen's own
   bicrystal). pymatgen's generator itself cannot be handed the Li-ordered bulk: it reads the
   lattice type and the primitive-to-conventional relation from the symmetry of its input,
   which the Li order breaks.
3. The cell is rotated so the GB normal is z (c = (0, 0, L)); two GB planes per cell, their z
   (Å) in ``info["gb_planes_A"]``; ``in_plane`` repeats along a and b.
4. Overlaps: while any pair is closer than ``GB_MIN_DISTANCE`` (per species pair), remove the
   atom in most such pairs; ties go to the species removed first in ``REMOVAL_ORDER``
   (Li, O, La, Zr: keep the cation framework), then to the atom nearest a GB plane.
5. Neutrality (formal charges Li+1 La+3 Zr+4 O-2): a net charge +q is removed as q Li nearest
   the GB planes; -q as ceil(q/2) O nearest the planes (and one Li more if q is odd).
6. ``check_structure``: net charge 0 and every pair above ``GB_MIN_DISTANCE``.

Both grains keep the bulk Li arrangement (rotated). Per-atom array ``grain``: 1 for the grain
between ``gb_planes_A[0]`` and ``gb_planes_A[1]`` (going up in z), 0 for the other; tags as
in the bulk (1 tetrahedral Li, 2 octahedral Li, 0 framework).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import ase
import numpy as np

from ..errors import InputError
from .checks import FORMAL_CHARGES, check_structure, close_pairs, element_counts, net_charge
from .llzo import BCC_PRIMITIVE, BULK_MIN_DISTANCE, CUBIC_A, cubic_llzo

if TYPE_CHECKING:  # pymatgen is imported only where a bicrystal is built (it is a large
    from pymatgen.core import Structure  # import, and absent from the lent GPU image)

#: supported symmetric tilt GBs: (Σ, plane) → (rotation axis, angle in degrees). Σ5(310)[001]:
#: 2·atan(1/3) = 36.87°; Σ3(112)[1-10]: 2·atan(√2) = 109.47° (both in pymatgen's
#: ``get_rotation_angle_from_sigma`` lists; tests check the bicrystal is symmetric)
SYMMETRIC_TILT = {
    (5, (3, 1, 0)): ((0, 0, 1), math.degrees(2 * math.atan(1 / 3))),
    (3, (1, 1, 2)): ((1, -1, 0), math.degrees(2 * math.atan(math.sqrt(2)))),
}
#: minimum distances (Å) per species pair in a GB cell: the bulk table (Li-Li 2.0 Å, ...)
GB_MIN_DISTANCE = dict(BULK_MIN_DISTANCE)
#: species removed first when an atom sits in as many close pairs as another
REMOVAL_ORDER = ("Li", "O", "La", "Zr")


def _wrap(structure: Structure, matrix=None) -> Structure:
    """Fractional coordinates wrapped into [0, 1) (optionally on another lattice matrix)."""
    from pymatgen.core import Lattice, Structure

    frac = structure.frac_coords % 1.0
    frac[np.isclose(frac, 1.0)] = 0.0
    lattice = Lattice(structure.lattice.matrix if matrix is None else matrix)
    return Structure(lattice, structure.species, frac,
                     site_properties=structure.site_properties)


def _bicrystal(bulk: Structure, axis, angle: float, plane, expand_times: int) -> Structure:
    """The two-grain cell of ``gb_from_parameters(normal=True, vacuum_thickness=0,
    ab_shift=(0, 0), rm_ratio=0)`` for a primitive bcc-lattice ``bulk``; site properties are
    carried over and ``grain`` is added (0 bottom, 1 top)."""
    from pymatgen.core import Structure
    from pymatgen.core.interface import GrainBoundaryGenerator

    kwargs = dict(trans_cry=BCC_PRIMITIVE, lat_type="c", surface=plane, max_search=20)
    t1, t2 = GrainBoundaryGenerator.get_trans_mat(axis, angle, normal=True, **kwargs)
    top = _wrap(bulk * t1)
    bottom = _wrap(bulk * t2, top.lattice.matrix)  # grain 2 on the common CSL lattice
    # in-plane offset of the top grain that pymatgen takes from the oblique (normal=False) cell
    oblique = (bulk * GrainBoundaryGenerator.get_trans_mat(axis, angle, normal=False,
                                                           **kwargs)[0]).lattice.matrix
    n = np.cross(oblique[0], oblique[1])
    n /= np.linalg.norm(n)
    ab_adjust = (oblique[2] - np.dot(n, oblique[2]) * n) / np.dot(n, oblique[2])
    for grain, structure in ((0, bottom), (1, top)):
        structure.add_site_property("grain", [grain] * len(structure))
        structure.make_supercell([1, 1, expand_times])
    top, bottom = _wrap(top), _wrap(bottom)
    c_adjust = (max(bottom.frac_coords[:, 2]) - max(top.frac_coords[:, 2])) / 2.0
    half = top.lattice.matrix
    whole = half.copy()
    whole[2] = 2 * half[2]
    shift = half[2] * (1 + c_adjust) + ab_adjust * np.linalg.norm(half[2] * (1 + c_adjust))
    coords = np.concatenate([bottom.cart_coords, top.cart_coords + shift])
    properties = {k: bottom.site_properties[k] + top.site_properties[k]
                  for k in bottom.site_properties}
    return _wrap(Structure(whole, bottom.species + top.species, coords,
                           coords_are_cartesian=True, site_properties=properties))


def _plane_distance(z: np.ndarray, planes: Sequence[float], length: float) -> np.ndarray:
    """Periodic distance (Å) of heights ``z`` from the nearest GB plane."""
    d = np.abs(np.asarray(z)[:, None] - np.asarray(planes)[None, :])
    return np.min(np.minimum(d, length - d), axis=1)


def _gb_planes(atoms: ase.Atoms) -> list[float]:
    """z (Å) of the two GB planes, midway between the facing edges of the grains: [bottom of
    grain 1, top of grain 1 (across the periodic boundary, in [0, L))]."""
    z = atoms.positions[:, 2]
    length = atoms.cell[2, 2]
    grain = atoms.arrays["grain"]
    lo0, hi0 = z[grain == 0].min(), z[grain == 0].max()
    lo1, hi1 = z[grain == 1].min(), z[grain == 1].max()
    return [float(0.5 * (hi0 + lo1)), float((0.5 * (hi1 + lo0 + length)) % length)]


def _removal_key(atoms: ase.Atoms, planes, length: float):
    """Sort key of atoms for removal: species order, then distance from the nearest plane."""
    rank = np.array([REMOVAL_ORDER.index(s) for s in atoms.get_chemical_symbols()])
    return rank, _plane_distance(atoms.positions[:, 2], planes, length)


def _remove_overlaps(atoms: ase.Atoms, min_distance, planes) -> dict[str, int]:
    """Delete atoms until no pair is closer than ``min_distance``; returns removed counts.
    (Deleting atoms creates no new close pair, so the pair list is found once.)"""
    i, j, _, _ = close_pairs(atoms, min_distance)
    rank, dist = _removal_key(atoms, planes, atoms.cell[2, 2])
    victims = []
    while len(i):
        count = np.bincount(np.concatenate([i, j]), minlength=len(atoms))
        victim = int(np.lexsort((dist, rank, -count))[0])
        victims.append(victim)
        keep = (i != victim) & (j != victim)
        i, j = i[keep], j[keep]
    symbols = atoms.get_chemical_symbols()
    removed: dict[str, int] = {}
    for v in victims:
        removed[symbols[v]] = removed.get(symbols[v], 0) + 1
    del atoms[victims]
    return removed


def _neutralise(atoms: ase.Atoms, planes) -> dict[str, int]:
    """Delete Li (net charge > 0) or O (< 0) nearest the GB planes until the net formal
    charge is zero; returns removed counts."""
    removed: dict[str, int] = {}
    length = atoms.cell[2, 2]
    q = net_charge(atoms)
    n_o = (-q + 1) // 2 if q < 0 else 0
    n_li = q + 2 * n_o
    for symbol, n in (("O", n_o), ("Li", n_li)):
        if n == 0:
            continue
        idx = np.flatnonzero(atoms.symbols == symbol)
        if len(idx) < n:
            raise InputError(f"llzo_grain_boundary: cannot neutralise {q:+d} e by removing "
                             f"{n} {symbol}: only {len(idx)} left")
        dist = _plane_distance(atoms.positions[idx, 2], planes, length)
        del atoms[idx[np.argsort(dist, kind="stable")[:n]]]
        removed[symbol] = n
    return removed


def llzo_grain_boundary(
    sigma: int = 5,
    plane: Sequence[int] = (3, 1, 0),
    a: float = CUBIC_A,
    seed: int = 0,
    expand_times: int = 1,
    in_plane: Sequence[int] = (1, 1),
    min_distance=None,
) -> ase.Atoms:
    """A periodic LLZO bicrystal with two symmetric tilt GBs normal to z (recipe: module
    docstring).

    sigma, plane: one of ``SYMMETRIC_TILT`` (Σ5 (3, 1, 0), Σ3 (1, 1, 2)); a: cubic lattice
    constant (Å); seed: Li arrangement of the bulk; expand_times: grain thickness in CSL
    periods along the normal; in_plane: repeats along a and b. Size: Σ5(310) 1920 and Σ3(112)
    1152 atoms × expand_times × in_plane repeats before removals. min_distance: per-pair
    minima (Å), default ``GB_MIN_DISTANCE``. ``info``: gb_normal_axis (2), gb_planes_A (z of
    both planes), sigma, plane, rotation_axis, rotation_angle_deg, removed (per step and
    species).
    """
    plane = tuple(int(x) for x in plane)
    key = (int(sigma), plane)
    if key not in SYMMETRIC_TILT:
        raise InputError(f"llzo_grain_boundary: unsupported GB sigma={sigma} plane={plane}; "
                         f"expected one of {sorted(SYMMETRIC_TILT)}")
    if int(expand_times) != expand_times or expand_times < 1:
        raise InputError(f"llzo_grain_boundary: expand_times must be a positive int, "
                         f"got {expand_times!r}")
    reps = tuple(in_plane)
    if len(reps) != 2 or any(int(r) != r or r < 1 for r in reps):
        raise InputError(f"llzo_grain_boundary: in_plane must be two positive ints, "
                         f"got {in_plane!r}")
    min_distance = GB_MIN_DISTANCE if min_distance is None else min_distance
    axis, angle = SYMMETRIC_TILT[key]
    primitive = cubic_llzo(a=a, seed=seed, primitive=True)
    from pymatgen.core import Structure

    bulk = Structure(primitive.cell[:], primitive.get_chemical_symbols(), primitive.positions,
                     coords_are_cartesian=True,
                     site_properties={"tag": primitive.get_tags().tolist()})
    gb = _bicrystal(bulk, axis, angle, plane, int(expand_times))
    atoms = ase.Atoms(symbols=[str(sp) for sp in gb.species], positions=gb.cart_coords,
                      cell=gb.lattice.matrix, pbc=True, tags=gb.site_properties["tag"])
    atoms.new_array("grain", np.asarray(gb.site_properties["grain"], dtype=int))
    rcell, _ = atoms.cell.standard_form()  # a along x, b in xy, c (normal to a, b) along z
    atoms.set_cell(rcell, scale_atoms=True)
    atoms = atoms.repeat((int(reps[0]), int(reps[1]), 1))
    atoms.wrap()
    planes = _gb_planes(atoms)
    before = element_counts(atoms)
    removed_overlap = _remove_overlaps(atoms, min_distance, planes)
    removed_charge = _neutralise(atoms, planes)
    atoms.info.update(
        structure=f"LLZO Sigma{sigma}({''.join(map(str, plane))}) symmetric tilt bicrystal",
        sigma=int(sigma), plane=plane, rotation_axis=axis, rotation_angle_deg=angle,
        seed=int(seed), expand_times=int(expand_times), in_plane=reps, gb_normal_axis=2,
        gb_planes_A=planes, atoms_before_removal=before,
        removed={"overlap": removed_overlap, "neutrality": removed_charge})
    check_structure(atoms, min_distance=min_distance, charges=FORMAL_CHARGES,
                    label=f"llzo_grain_boundary(sigma={sigma}, plane={plane})")
    return atoms
