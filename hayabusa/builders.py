"""Structure builders: cubic lattices, the Kob–Andersen mixture, and file reading.

Every builder returns an ``ase.Atoms`` in a periodic box. Lengths are in the unit system of the
run: Å for ``metal``, σ for ``lj`` (the builders themselves are unit-agnostic; ``density`` is a
number density, atoms per length³, which in reduced units is ρ* = Nσ³/V).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ase
import ase.build
import ase.data
import ase.io
import numpy as np

from .errors import InputError
from .files import check_text_ends

#: atoms per conventional cubic cell of each lattice kind
ATOMS_PER_CELL = {"sc": 1, "bcc": 2, "fcc": 4}

#: Kob–Andersen species as chemical symbols: type id 0 = A ("H"), type id 1 = B ("He").
#: The symbols are labels only (H sorts before He, so the default type order is A, B);
#: masses are set to 1.0 (reduced units).
KA_SYMBOLS = ("H", "He")

# fractional coordinates of the basis of each conventional cubic cell
_BASIS = {
    "sc": np.zeros((1, 3)),
    "bcc": np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
    "fcc": np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]),
}
# nearest-neighbour distance of each lattice in units of its cubic lattice constant
_NN = {"sc": 1.0, "bcc": np.sqrt(3.0) / 2.0, "fcc": 1.0 / np.sqrt(2.0)}


def lattice(
    kind: str = "fcc",
    n_cells: int | Sequence[int] = 4,
    density: float | None = None,
    lattice_constant: float | None = None,
    symbol: str = "Ar",
    mass: float | None = None,
) -> ase.Atoms:
    """A periodic cubic lattice of ``n_cells`` conventional cells (int or (nx, ny, nz)).

    Give exactly one of ``density`` (number density, atoms/length³; the lattice constant is
    then a = (atoms_per_cell / density)^(1/3), e.g. ρ* = 0.8442 → a = 1.6796 σ for fcc) or
    ``lattice_constant`` (length). ``mass`` (amu or m) sets every atom's mass; by default ASE's
    atomic mass of ``symbol``.
    """
    if kind not in ATOMS_PER_CELL:
        raise InputError(f"lattice: unknown kind {kind!r}; expected one of {list(ATOMS_PER_CELL)}")
    reps = _n_cells(n_cells)
    if (density is None) == (lattice_constant is None):
        raise InputError("lattice: give exactly one of density or lattice_constant")
    if density is not None:
        if not density > 0:
            raise InputError(f"lattice: density must be > 0, got {density}")
        a = (ATOMS_PER_CELL[kind] / density) ** (1.0 / 3.0)
    else:
        if not lattice_constant > 0:
            raise InputError(f"lattice: lattice_constant must be > 0, got {lattice_constant}")
        a = float(lattice_constant)
    if symbol not in ase.data.atomic_numbers:
        raise InputError(f"lattice: unknown chemical symbol {symbol!r}")
    atoms = ase.build.bulk(symbol, kind, a=a, cubic=True).repeat(reps)
    atoms.pbc = True
    if mass is not None:
        if not mass > 0:
            raise InputError(f"lattice: mass must be > 0, got {mass}")
        atoms.set_masses(np.full(len(atoms), float(mass)))
    return atoms


def kob_andersen_mixture(
    n_atoms: int,
    density: float = 1.2,
    fraction_a: float = 0.8,
    seed: int = 0,
    displacement: float = 0.05,
) -> ase.Atoms:
    """A Kob–Andersen A:B mixture (reduced units) in a cubic periodic box of density ρ*.

    Type id 0 = A (symbol ``KA_SYMBOLS[0]``, "H"), 1 = B ("He"); masses 1.0;
    round(fraction_a · n_atoms) A atoms (80:20 by default). Atoms sit on the sites of the
    cubic lattice (sc, bcc or fcc, with random vacancies where the site count exceeds
    ``n_atoms``) that has the largest nearest-neighbour distance d at this density, species
    assigned at random, each displaced uniformly by at most ``displacement``·d per axis. Every
    pair is thus at least (1 − 2√3·displacement)·d apart (d ≈ 1.0 σ for 4096 atoms at
    ρ* = 1.2), so a thermostatted start or a short minimisation does not blow up. The same
    ``seed`` gives the same structure.
    """
    n_atoms = int(n_atoms)
    if n_atoms < 2:
        raise InputError(f"kob_andersen_mixture: n_atoms must be >= 2, got {n_atoms}")
    if not density > 0:
        raise InputError(f"kob_andersen_mixture: density must be > 0, got {density}")
    if not 0.0 < fraction_a < 1.0:
        raise InputError(f"kob_andersen_mixture: fraction_a must be in (0, 1), got {fraction_a}")
    if not 0.0 <= displacement < 0.25:
        raise InputError(
            f"kob_andersen_mixture: displacement must be in [0, 0.25), got {displacement}")
    rng = np.random.default_rng(seed)
    box = (n_atoms / density) ** (1.0 / 3.0)
    kind, m = _best_lattice(n_atoms)
    basis = _BASIS[kind]
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    sites = ((grid + basis[None]) / m).reshape(-1, 3)  # fractional coordinates
    chosen = np.sort(rng.choice(len(sites), size=n_atoms, replace=False))
    a = box / m
    d = _NN[kind] * a
    positions = sites[chosen] * box
    positions += rng.uniform(-displacement * d, displacement * d, size=positions.shape)
    n_a = int(round(fraction_a * n_atoms))
    n_a = min(max(n_a, 1), n_atoms - 1)
    types = np.zeros(n_atoms, dtype=np.int64)
    types[rng.permutation(n_atoms)[: n_atoms - n_a]] = 1
    numbers = np.array([ase.data.atomic_numbers[s] for s in KA_SYMBOLS])[types]
    atoms = ase.Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * box, pbc=True)
    atoms.set_masses(np.ones(n_atoms))
    atoms.wrap()
    return atoms


def read_images(path: str | os.PathLike, index: int | str = ":",
                what: str = "file") -> list[ase.Atoms]:
    """The frames ``index`` of any file ASE reads, as a list; InputError names the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: {what} not found")
    check_text_ends(path)
    try:
        images = ase.io.read(path, index=index)
    except Exception as exc:  # ASE raises many kinds; all mean "cannot read this file"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read frame(s) {index}: {detail}") from None
    return images if isinstance(images, list) else [images]


def read_structure(path: str | os.PathLike, index: int = -1) -> ase.Atoms:
    """Read one structure (frame ``index``, default the last) from any file ASE reads."""
    images = read_images(path, index, "structure file")
    if len(images) != 1:  # a slice index gives several
        raise InputError(f"{path}: index must select one frame, got {index!r}")
    if len(images[0]) == 0:
        raise InputError(f"{path}: frame {index} has no atoms")
    return images[0]


def _n_cells(n_cells) -> tuple[int, int, int]:
    reps = (n_cells,) * 3 if np.isscalar(n_cells) else tuple(n_cells)
    if len(reps) != 3 or any(int(r) != r or r < 1 for r in reps):
        raise InputError(f"lattice: n_cells must be a positive int or three of them, "
                         f"got {n_cells!r}")
    return tuple(int(r) for r in reps)


def _best_lattice(n_atoms: int) -> tuple[str, int]:
    """The cubic lattice (kind, cells per side) holding ≥ n_atoms sites with the largest
    nearest-neighbour distance at fixed box size."""
    best = None
    for kind, per_cell in ATOMS_PER_CELL.items():
        m = max(1, int(np.ceil((n_atoms / per_cell) ** (1.0 / 3.0) - 1e-9)))
        while per_cell * m**3 < n_atoms:
            m += 1
        nn = _NN[kind] / m
        if best is None or nn > best[0] + 1e-12:
            best = (nn, kind, m)
    return best[1], best[2]
