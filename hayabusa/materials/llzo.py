"""Garnet Li7La3Zr2O12 (LLZO) cells built from Wyckoff positions: cubic (Ia-3d) and tetragonal
(I4₁/acd).

Conventional cell: Li56 La24 Zr16 O96 (Z = 8, 192 atoms). Framework, Ia-3d (No. 230, ITA
setting, origin at -3): La 24c (1/8, 0, 1/4), Zr 16a (0, 0, 0), O 96h (x, y, z). Li sits in
tetrahedral 24d (3/8, 0, 1/4) and octahedral sites; an octahedral LiO6 site (48g centre,
(1/8, y, 1/4 - y)) shares faces with two 24d tetrahedra 1.99 Å away (a = 12.97 Å), and its
Li is split over the two 96h positions displaced towards either tetrahedron.

Li placement rule (cubic, seeded). A Li on the 96h position next to an occupied tetrahedron
would sit 1.64 Å from that Li, and the two 96h positions of one octahedron are 0.70 Å apart:
neither pair may be occupied. So: (1) ``round(tet_occupancy · 24)`` tetrahedra per cell are
occupied, chosen at random and then rearranged (seeded swaps) until few enough octahedra lie
between two occupied tetrahedra; (2) every other octahedron can hold one Li, on the 96h
position next to an empty tetrahedron (random one if both are empty), i.e. 2.34 Å from an
occupied neighbour; (3) randomly chosen octahedra of those hold the remaining Li. The closest
Li-Li pairs this allows are 24d-96h across a shared face at 2.34 Å, then 96h-96h between
neighbouring octahedra (>= 2.4 Å); the forbidden ones are <= 1.64 Å. ``LI_LI_MIN_A`` = 2.0 Å
lies between the two. Since each cell needs 56 - 48 = 8 tetrahedral Li at least, and at most
40/3 tetrahedral Li leave enough octahedra free (see ``TET_OCCUPANCY``), the tetrahedral
occupancy must lie in [1/3, 5/9].

Tetragonal LLZO keeps the framework and orders Li on 8a (tetrahedral) + 16f + 32g
(octahedral); it is the Ia-3d → I4₁/acd subgroup of the cubic cell (same origin and axes),
see ``tetragonal_llzo``.

Atom tags: 0 framework (La, Zr, O), 1 tetrahedral Li, 2 octahedral Li.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import ase
import numpy as np
from ase.neighborlist import neighbor_list
from ase.spacegroup import Spacegroup

from ..errors import InputError
from .checks import check_structure

#: cubic LLZO lattice constant (Å), the issue's value; refinements give 12.97-12.98 Å
CUBIC_A = 12.97
#: tetragonal LLZO lattice constants (Å) of Awaka et al., J. Solid State Chem. 182, 2046
#: (2009), doi:10.1016/j.jssc.2009.05.020 (as listed for that DOI in the OBELiX data set)
TETRAGONAL_A = 13.134
TETRAGONAL_C = 12.663
#: Ia-3d framework sites (fractional). La 24c and Zr 16a are fixed by symmetry; the O 96h
#: coordinates are those of the project's reference notes (shared/reference/
#: llzo-analysis-viz.md §1: a refinement value quoted there from memory, ⚠); at
#: a = 12.97 Å they give Zr-O 2.106 Å, La-O 2.503 and 2.594 Å and Li(24d)-O 1.913 Å,
#: checked in tests/test_materials.py.
LA_24C = (0.125, 0.0, 0.25)
ZR_16A = (0.0, 0.0, 0.0)
O_96H = (0.100, 0.196, 0.281)
LI_24D = (0.375, 0.0, 0.25)
#: distance (Å) of a 96h Li from its octahedron centre, towards one face-sharing tetrahedron:
#: the two 96h positions of an octahedron are 0.70 Å apart and a 96h Li is 1.64 / 2.34 Å from
#: the two 24d sites (model choice; refined 96h coordinates differ between refinements)
OCT_SHIFT_A = 0.35
#: default tetrahedral (24d) Li occupancy: 13 of 24 per cell. Refinements give about 0.56
#: (reference §1, ⚠); the placement rule allows at most 5/9 = 0.556 (the 24d sites linked
#: through octahedra form a 4-regular graph whose largest set without a shared octahedron
#: holds 12 of 24; each further tetrahedral Li blocks 4 octahedra, and 56 - n_tet octahedra
#: must stay free)
TET_OCCUPANCY = 0.54
#: the closest Li-Li pair any built bulk cell may have (Å); see the module docstring
LI_LI_MIN_A = 2.0
#: minimum distances (Å) per species pair for bulk cells: Li-Li as above; the others lie
#: 0.2-0.8 Å below the closest pairs of the built cells (cubic, a = 12.97 Å: Li-O 1.91,
#: Zr-O 2.11, La-O 2.50, O-O 2.88, Li-La 2.90, Li-Zr 3.09, La-Zr 3.63, La-La 3.97 Å;
#: tetragonal within 0.05 Å of these) and catch overlapping or misplaced atoms
BULK_MIN_DISTANCE = {
    ("Li", "Li"): LI_LI_MIN_A, ("Li", "O"): 1.7, ("La", "O"): 2.2, ("O", "Zr"): 1.9,
    ("O", "O"): 2.2, ("La", "Li"): 2.6, ("Li", "Zr"): 2.6, ("La", "La"): 3.2,
    ("La", "Zr"): 3.2, ("Zr", "Zr"): 3.2,
}
#: atoms of one formula unit Li7La3Zr2O12; a conventional cell holds Z = 8
FORMULA_UNIT = {"Li": 7, "La": 3, "Zr": 2, "O": 12}
FORMULA_UNITS_PER_CELL = 8

_CUBIC = Spacegroup(230)


def llzo_composition(n_cells: float) -> dict[str, int]:
    """Element counts of ``n_cells`` conventional LLZO cells (0.5: the primitive cell)."""
    return {s: int(round(n * FORMULA_UNITS_PER_CELL * n_cells)) for s, n in FORMULA_UNIT.items()}


def _reps(supercell) -> tuple[int, int, int]:
    reps = (supercell,) * 3 if np.isscalar(supercell) else tuple(supercell)
    if len(reps) != 3 or any(int(r) != r or r < 1 for r in reps):
        raise InputError(f"llzo: supercell must be a positive int or three of them, "
                         f"got {supercell!r}")
    return tuple(int(r) for r in reps)


@functools.lru_cache(maxsize=1)
def _octahedron_y() -> float:
    """y of the 48g octahedron centre (1/8, y, 1/4 - y): the centroid of its six O (in
    fractional coordinates, so the same for the cubic and the tetragonal metric)."""
    oxygen, _ = _CUBIC.equivalent_sites([O_96H])
    guess = np.array([0.125, 0.7, -0.45])
    d = (oxygen - guess + 0.5) % 1.0 - 0.5
    near = np.argsort(np.linalg.norm(d, axis=1))[:6]
    centre = guess + d[near].mean(axis=0)
    return float(centre[1])


def _tile(frac: np.ndarray, reps: tuple[int, int, int]) -> np.ndarray:
    """Fractional coordinates of one cell → those of the (n1, n2, n3) supercell."""
    shifts = np.stack(np.meshgrid(*[np.arange(n) for n in reps], indexing="ij"), -1)
    shifts = shifts.reshape(-1, 3)
    return ((frac[None, :, :] + shifts[:, None, :]) / np.array(reps)).reshape(-1, 3)


#: primitive (body-centred) cell vectors (rows) of the I lattice in units of the conventional
#: cell; the choice pymatgen's GrainBoundaryGenerator expects for a bcc primitive cell
BCC_PRIMITIVE = 0.5 * np.array([[1.0, 1.0, -1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]])


def _in_cell(frac_conv: np.ndarray, conv_cell: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Fractional coordinates in ``conv_cell`` → distinct fractional coordinates in ``cell``."""
    frac = (frac_conv @ conv_cell @ np.linalg.inv(cell)) % 1.0
    _, first = np.unique(np.round(frac, 6) % 1.0, axis=0, return_index=True)
    return frac[np.sort(first)]


class _Sites:
    """Framework atoms and candidate Li sites of a supercell of the conventional cell, or of
    the primitive (body-centred) cell when ``primitive``."""

    def __init__(self, cellpar: Sequence[float], reps: tuple[int, int, int],
                 primitive: bool = False):
        conv = np.diag(cellpar)
        self.cell = BCC_PRIMITIVE @ conv if primitive else conv * np.array(reps)[:, None]

        def place(site):
            frac, _ = _CUBIC.equivalent_sites([site])
            return _in_cell(frac, conv, self.cell) if primitive else _tile(frac, reps)

        frames = [(symbol, place(site))
                  for symbol, site in (("La", LA_24C), ("Zr", ZR_16A), ("O", O_96H))]
        self.framework = ase.Atoms(
            symbols=[s for s, f in frames for _ in f],
            scaled_positions=np.concatenate([f for _, f in frames]), cell=self.cell, pbc=True)
        y = _octahedron_y()
        self.tet = place(LI_24D) @ self.cell
        self.oct = place((0.125, y, 0.25 - y)) @ self.cell
        # each octahedron shares faces with two tetrahedra, 1.99 Å away at a = 12.97 Å
        sites = ase.Atoms(positions=np.concatenate([self.oct, self.tet]), cell=self.cell,
                          pbc=True)
        n_oct = len(self.oct)
        i, j, vec = neighbor_list("ijD", sites, 0.2 * min(cellpar))
        keep = (i < n_oct) & (j >= n_oct)
        i, j, vec = i[keep], j[keep] - n_oct, vec[keep]
        if np.bincount(i, minlength=n_oct).tolist() != [2] * n_oct:
            raise InputError("llzo: expected two face-sharing tetrahedra per octahedron")
        order = np.lexsort((j, i))
        self.oct_tets = j[order].reshape(n_oct, 2)  # [n_oct, 2] tetrahedron indices
        self.oct_to_tet = vec[order].reshape(n_oct, 2, 3)  # vectors centre → tetrahedron

    def li_position(self, octa: np.ndarray, side: np.ndarray) -> np.ndarray:
        """Positions [k, 3] of octahedral Li in octahedra ``octa``: shifted OCT_SHIFT_A
        towards tetrahedron ``side`` (0 or 1) of each, or at the centre where side is -1."""
        v = self.oct_to_tet[octa, np.maximum(side, 0)]
        shift = np.where(side >= 0, OCT_SHIFT_A, 0.0)[:, None]
        return self.oct[octa] + shift * v / np.linalg.norm(v, axis=1, keepdims=True)

    def build(self, tet_occupied: np.ndarray, octa: np.ndarray, side: np.ndarray) -> ase.Atoms:
        """Li on the given tetrahedra and octahedral positions, then the framework."""
        li = np.concatenate([self.tet[tet_occupied], self.li_position(octa, side)])
        atoms = ase.Atoms(symbols=["Li"] * len(li), positions=li, cell=self.cell, pbc=True)
        atoms.set_tags([1] * int(len(tet_occupied)) + [2] * len(octa))
        atoms += self.framework
        atoms.wrap()
        return atoms


def _choose_tetrahedra(sites: _Sites, n_tet: int, n_oct_needed: int,
                       rng: np.random.Generator, max_sweeps: int = 500) -> np.ndarray:
    """A random set of ``n_tet`` tetrahedra leaving >= n_oct_needed octahedra with at least
    one empty tetrahedron: random start, then seeded Metropolis swaps on the number of
    blocked octahedra (both tetrahedra occupied), stopped as soon as few enough are blocked."""
    n_t = len(sites.tet)
    pairs = sites.oct_tets
    partners = np.zeros((n_t, 4), int)  # the tetrahedra linked to each through an octahedron
    fill = np.zeros(n_t, int)
    for t1, t2 in pairs:
        partners[t1, fill[t1]], partners[t2, fill[t2]] = t2, t1
        fill[t1] += 1
        fill[t2] += 1
    occ = np.zeros(n_t, bool)
    occ[rng.choice(n_t, n_tet, replace=False)] = True
    n_occ_partners = occ[partners].sum(axis=1)
    blocked = int(np.sum(occ[pairs[:, 0]] & occ[pairs[:, 1]]))
    max_blocked = len(pairs) - n_oct_needed
    temperature = 1.0
    for _ in range(max_sweeps * n_t):
        if blocked <= max_blocked:
            return np.flatnonzero(occ)
        t = rng.choice(np.flatnonzero(occ))
        u = rng.choice(np.flatnonzero(~occ))
        delta = n_occ_partners[u] - np.sum(partners[u] == t) - n_occ_partners[t]
        if delta <= 0 or rng.random() < np.exp(-delta / temperature):
            occ[t], occ[u] = False, True
            np.add.at(n_occ_partners, partners[t], -1)
            np.add.at(n_occ_partners, partners[u], 1)
            blocked += int(delta)
        temperature = max(0.05, 0.999 * temperature)
    raise InputError(f"cubic_llzo: found no placement of {n_tet} tetrahedral Li leaving "
                     f"{n_oct_needed} octahedral sites free of close pairs; lower tet_occupancy")


def cubic_llzo(a: float = CUBIC_A, seed: int = 0, supercell: int | Sequence[int] = (1, 1, 1),
               tet_occupancy: float = TET_OCCUPANCY, primitive: bool = False) -> ase.Atoms:
    """Cubic LLZO (Ia-3d framework), 192 atoms per conventional cell, Li placed by the seeded
    rule of the module docstring.

    a: lattice constant (Å); supercell: repeats (int or three ints) of the conventional cell;
    tet_occupancy: fraction of 24d sites holding Li (1/3 to 5/9). primitive: the 96-atom
    body-centred cell instead (supercell must be 1; its Li arrangement repeats by the
    I-centring translation in the conventional cell, so 6 of 12 24d sites hold Li at the default
    occupancy). Tags: 1 Li on 24d, 2 Li on 96h. The same seed gives the same cell; the result
    passed ``check_structure``.
    """
    if not a > 0:
        raise InputError(f"cubic_llzo: a must be > 0 Å, got {a}")
    reps = _reps(supercell)
    if primitive and reps != (1, 1, 1):
        raise InputError(f"cubic_llzo: primitive=True needs supercell 1, got {supercell!r}")
    n_cells = 0.5 if primitive else int(np.prod(reps))
    n_li = int(FORMULA_UNIT["Li"] * FORMULA_UNITS_PER_CELL * n_cells)
    sites = _Sites((a, a, a), reps, primitive)
    n_tet = int(round(tet_occupancy * len(sites.tet)))
    n_oct_needed = n_li - n_tet
    if not 8 * n_cells <= n_tet <= 40 * n_cells / 3:
        raise InputError(f"cubic_llzo: tet_occupancy must be in [1/3, 5/9], got {tet_occupancy}")
    rng = np.random.default_rng(seed)
    tet = _choose_tetrahedra(sites, n_tet, n_oct_needed, rng)
    occ = np.zeros(len(sites.tet), bool)
    occ[tet] = True
    empty = ~occ[sites.oct_tets]  # [n_oct, 2]: which face-sharing tetrahedra are empty
    free = np.flatnonzero(empty.any(axis=1))
    octa = np.sort(rng.choice(free, n_oct_needed, replace=False))
    # the 96h position next to an empty tetrahedron; a random one of two empty ones
    side = np.where(empty[octa].all(axis=1), rng.integers(0, 2, len(octa)),
                    np.argmax(empty[octa], axis=1))
    atoms = sites.build(tet, octa, side)
    atoms.info.update(structure="cubic LLZO", seed=int(seed), supercell=reps,
                      primitive=bool(primitive))
    check_structure(atoms, llzo_composition(n_cells), BULK_MIN_DISTANCE, label="cubic_llzo")
    return atoms


def tetragonal_llzo(a: float = TETRAGONAL_A, c: float = TETRAGONAL_C,
                    supercell: int | Sequence[int] = (1, 1, 1)) -> ase.Atoms:
    """Tetragonal LLZO (I4₁/acd, No. 142, origin choice 2), 192 atoms per cell, Li ordered.

    Built as the Ia-3d → I4₁/acd subgroup (c along the cubic z axis, same origin): La 24c →
    8b + 16e, Zr 16a → 16c, O 96h → 3 × 32g with the cubic fractional coordinates; Li on the
    8a tetrahedra (0, 1/4, 3/8), which share no octahedron, and on all 48 octahedra: the 32
    next to an 8a Li (32g) shifted OCT_SHIFT_A away from it, the 16 between two empty
    tetrahedra (16f) at the centre. The free coordinates are those of this cubic-derived model,
    not a tetragonal refinement (see docs/llzo.md). a, c: lattice constants (Å).
    """
    if not (a > 0 and c > 0):
        raise InputError(f"tetragonal_llzo: a and c must be > 0 Å, got a={a}, c={c}")
    reps = _reps(supercell)
    sites = _Sites((a, a, c), reps)
    site_8a, _ = Spacegroup(142, setting=2).equivalent_sites([(0.0, 0.25, 0.375)])
    frac_tet = sites.tet @ np.linalg.inv(sites.cell)
    frac_8a = _tile(site_8a, reps)
    d = (frac_tet[:, None, :] - frac_8a[None, :, :] + 0.5) % 1.0 - 0.5
    occ = (np.abs(d).max(axis=2) < 1e-6).any(axis=1)
    occ_pair = occ[sites.oct_tets]  # [n_oct, 2]
    # 32g: away from the 8a Li (towards the other tetrahedron); 16f: both empty, centre
    side = np.where(occ_pair[:, 0], 1, np.where(occ_pair[:, 1], 0, -1))
    atoms = sites.build(np.flatnonzero(occ), np.arange(len(sites.oct)), side)
    atoms.info.update(structure="tetragonal LLZO", supercell=reps)
    check_structure(atoms, llzo_composition(int(np.prod(reps))), BULK_MIN_DISTANCE,
                    label="tetragonal_llzo")
    return atoms
