"""hayabusa label: EMT labels equal ASE's EMT, an exact extxyz round trip through load_frames,
analytic Lennard-Jones labels through module:Name, errors that name the frame and leave no
file behind; the teachers SevenNet-0 and CHGNet give forces = −∇E and stress = (1/V) ∂E/∂ε."""

import json
import textwrap

import ase.io
import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator

from hayabusa import InputError
from hayabusa.cli import main
from hayabusa.train import load_frames
from hayabusa.train.label import label_file, make_reference


def cu_frames():
    """Rattled strained Cu bulk (3D-periodic, with stale labels), a Cu slab (periodic in x, y
    only) and a free Cu-Ni cluster."""
    rng = np.random.default_rng(7)
    bulk_cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
    strain = np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))
    bulk_cu.set_cell(bulk_cu.cell.array @ (strain + strain.T) / 2, scale_atoms=True)
    bulk_cu.rattle(0.1, seed=1)
    bulk_cu.info["config_type"] = "bulk"
    bulk_cu.calc = SinglePointCalculator(bulk_cu, energy=123.0, forces=np.ones((16, 3)),
                                         stress=np.ones(6))
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.pbc = (True, True, False)
    del slab.info["adsorbate_info"]
    slab.rattle(0.05, seed=2)
    cluster = bulk("Cu", "fcc", a=3.61, cubic=True)
    cluster.numbers[1] = 28
    cluster.center(vacuum=4.0)
    cluster.pbc = False
    cluster.rattle(0.05, seed=3)
    return [bulk_cu, slab, cluster]


def test_emt_labels_equal_ase_emt_and_load_frames_reads_them_back_exactly(tmp_path):
    src, out = tmp_path / "in.xyz", tmp_path / "out.xyz"
    ase.io.write(src, cu_frames())
    line = label_file(src, out, make_reference("emt"))
    inputs, back = ase.io.read(src, ":"), load_frames(out)
    assert len(back) == 3
    per_atom = []
    for atoms, frame in zip(inputs, back, strict=True):
        atoms.calc = EMT()
        assert frame.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(frame.forces, atoms.get_forces(), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(frame.atoms.positions, atoms.positions)
        np.testing.assert_array_equal(frame.atoms.cell.array, atoms.cell.array)
        np.testing.assert_array_equal(frame.atoms.pbc, atoms.pbc)
        if atoms.pbc.all():
            np.testing.assert_allclose(frame.stress, atoms.get_stress(voigt=False), rtol=0,
                                       atol=1e-12)
        else:
            assert frame.stress is None  # slab and cluster: no stress label
        assert frame.atoms.info["label_reference"].endswith("not DFT")
        assert frame.atoms.info["label_version"] == f"ase {ase.__version__}"
        per_atom.append(frame.energy / len(atoms))
    assert back[0].atoms.info["config_type"] == "bulk"  # other info survives; stale labels not
    assert abs(back[0].energy - 123.0) > 1.0
    assert line.startswith("hayabusa label: 3 frames, 32 atoms labelled with ASE EMT")
    assert f"energy {min(per_atom):.4f} … {max(per_atom):.4f} eV/atom" in line


def test_module_name_reference_gives_analytic_lennard_jones_labels(tmp_path, capsys):
    sigma, epsilon, rc, r = 2.0, 0.3, 6.0, 2.3
    dimer = ase.Atoms("Ar2", positions=[[0, 0, 0], [r, 0, 0]], cell=[12, 12, 12], pbc=False)
    ase.io.write(tmp_path / "in.xyz", dimer)
    args = json.dumps({"sigma": sigma, "epsilon": epsilon, "rc": rc})
    assert main(["label", str(tmp_path / "in.xyz"), str(tmp_path / "out.extxyz"), "--reference",
                 "ase.calculators.lj:LennardJones", "--reference-args", args]) == 0
    assert capsys.readouterr().out.startswith("hayabusa label: 1 frames, 2 atoms")
    (frame,) = load_frames(tmp_path / "out.extxyz")
    v = lambda x: 4 * epsilon * ((sigma / x) ** 12 - (sigma / x) ** 6)  # noqa: E731
    f = 24 * epsilon / r * (2 * (sigma / r) ** 12 - (sigma / r) ** 6)  # −dV/dr
    assert frame.energy == pytest.approx(v(r) - v(rc), abs=1e-12)
    np.testing.assert_allclose(frame.forces, [[-f, 0, 0], [f, 0, 0]], rtol=0, atol=1e-12)
    assert frame.atoms.info["label_reference"].startswith(
        "ase.calculators.lj:LennardJones(sigma=2.0, epsilon=0.3, rc=6.0)")


def test_module_function_reference(tmp_path, monkeypatch):
    (tmp_path / "my_teacher.py").write_text(textwrap.dedent("""
        from ase.calculators.lj import LennardJones

        def doubled(epsilon):
            return LennardJones(sigma=1.0, epsilon=2 * epsilon, rc=3.0)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    atoms = bulk("Ar", "fcc", a=1.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=4)
    ase.io.write(tmp_path / "in.xyz", atoms)
    atoms = ase.io.read(tmp_path / "in.xyz")  # positions as written (8 decimals)
    reference = make_reference("my_teacher:doubled", {"epsilon": 0.5})
    assert reference.version == "my_teacher (not an installed package)"
    label_file(tmp_path / "in.xyz", tmp_path / "out.xyz", reference)
    (frame,) = load_frames(tmp_path / "out.xyz")
    atoms.calc = LennardJones(sigma=1.0, epsilon=1.0, rc=3.0)
    assert frame.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(frame.forces, atoms.get_forces(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(frame.stress, atoms.get_stress(voigt=False), rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec, args, match", [
    ("dft", {}, "unknown reference 'dft'"),
    ("emt", {"cutoff": 5}, r"unknown key\(s\) \['cutoff'\] for emt"),
    ("no_such_module_h2:Calc", {}, "cannot import no_such_module_h2"),
    ("ase.calculators.emt:Nope", {}, "has no class or function 'Nope'"),
    ("builtins:dict", {}, "returned dict, not an ASE calculator"),
    ("ase.calculators.lj:LennardJones", {"sigma": "x"},
     r"LennardJones\(sigma='x'\) failed: can't multiply"),
    ("sevennet", {"model": "7net-omat"}, "not bundled in the sevenn wheel"),
    ("sevennet", {"model": "7net-mf-0"}, "needs modal, one of"),
    ("chgnet", {"model": "9.9"}, "not bundled in the chgnet wheel"),
])
def test_bad_reference_is_an_input_error(spec, args, match):
    with pytest.raises(InputError, match=match):
        make_reference(spec, args)


def test_input_errors_name_the_file_and_frame_and_write_nothing(tmp_path, capsys):
    frames = cu_frames()
    frames.insert(1, bulk("Li", "bcc", a=3.5, cubic=True))
    src, out = tmp_path / "in.xyz", tmp_path / "out.xyz"
    ase.io.write(src, frames)
    emt = make_reference("emt")
    with pytest.raises(InputError, match=r"missing\.xyz: input file not found"):
        label_file(tmp_path / "missing.xyz", out, emt)
    with pytest.raises(InputError, match=rf"{src}, frame 1: ASE EMT does not know .*'Li'"):
        label_file(src, out, emt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xyz"]  # nothing half-written
    assert main(["label", str(src), str(out), "--reference", "emt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "frame 1" in err and "Li" in err
    with pytest.raises(InputError, match="output must be extxyz"):
        label_file(src, tmp_path / "out.traj", emt)
    assert main(["label", str(src), str(out), "--reference", "emt", "--reference-args",
                 "{cutoff"]) == 2
    assert "--reference-args: not JSON" in capsys.readouterr().err
    assert main(["label", str(src), str(out), "--reference", "emt", "--device", "tpu"]) == 2
    assert "--device: must be auto, cpu" in capsys.readouterr().err


def test_no_overwrite_and_a_failing_calculator_keeps_the_old_output(tmp_path, monkeypatch):
    (tmp_path / "fussy.py").write_text(textwrap.dedent("""
        from ase.calculators.emt import EMT

        class Fussy(EMT):
            def calculate(self, atoms=None, properties=None, system_changes=None):
                if len(atoms) > 12:
                    raise RuntimeError("too many atoms for me\\nsecond line")
                super().calculate(atoms, properties, system_changes)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    frames = cu_frames()
    src, out = tmp_path / "in.xyz", tmp_path / "out.xyz"
    ase.io.write(src, frames[2:] + frames[:2])  # 4, 16 and 12 atoms: frame 1 fails
    out.write_text("old result\n")
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        label_file(src, out, make_reference("emt"))
    with pytest.raises(InputError,
                       match=rf"^{src}, frame 1: fussy:Fussy cannot label it: too many atoms "
                             r"for me$"):
        label_file(src, out, make_reference("fussy:Fussy"), overwrite=True)
    assert out.read_text() == "old result\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".py" and p.is_file()) == \
        ["in.xyz", "out.xyz"]
    label_file(src, out, make_reference("emt"), overwrite=True)
    assert len(load_frames(out)) == 3


# ----------------------------------------------------------------------------- teachers
def li_la_zr_o_cell():
    """Ten atoms: a rattled 2×1×1 cubic perovskite, A sites La and Li, B sites Zr, O."""
    a = 4.15
    symbols, positions = [], []
    for i, A in enumerate(("La", "Li")):
        symbols += [A, "Zr", "O", "O", "O"]
        positions += [[i, 0, 0], [i + .5, .5, .5], [i + .5, .5, 0], [i + .5, 0, .5],
                      [i, .5, .5]]
    atoms = ase.Atoms(symbols, positions=np.array(positions) * a, cell=[2 * a, a, a], pbc=True)
    atoms.rattle(0.08, seed=3)
    return atoms


@pytest.fixture(scope="module", params=["sevennet", "chgnet"])
def teacher(request):
    return make_reference(request.param, device="cpu")


def test_teacher_forces_and_stress_are_derivatives_of_its_energy(teacher):
    """Central differences (h = 3e-3) along random unit directions: dE/dα = −F·u for atom
    displacements u, dE/dα = V σ:ε for symmetric strains ε. The teachers compute in float32,
    so the differences agree to ~1e-3 of the signal (measured ≤ 0.005 eV/Å for forces and
    ≤ 0.02 eV for strains); a sign or factor error would be off by the whole signal."""
    atoms = li_la_zr_o_cell()
    atoms.calc = teacher.calculator
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    rng, h = np.random.default_rng(0), 3e-3

    def energy(positions=None, cell=None):
        b = atoms.copy()
        if positions is not None:
            b.positions = positions
        if cell is not None:
            b.set_cell(cell, scale_atoms=True)
        b.calc = teacher.calculator
        return b.get_potential_energy()

    for _ in range(2):
        u = rng.normal(size=forces.shape)
        u /= np.linalg.norm(u)
        slope = (energy(atoms.positions + h * u) - energy(atoms.positions - h * u)) / (2 * h)
        assert abs(np.sum(forces * u)) > 1.5
        assert slope == pytest.approx(-np.sum(forces * u), abs=0.015)
    cell = atoms.cell.array
    for _ in range(2):
        eps = rng.normal(size=(3, 3))
        eps = (eps + eps.T) / np.linalg.norm(eps + eps.T)
        slope = (energy(cell=cell @ (np.eye(3) + h * eps))
                 - energy(cell=cell @ (np.eye(3) - h * eps))) / (2 * h)
        signal = atoms.get_volume() * np.sum(stress * eps)
        assert abs(signal) > 0.8
        assert slope == pytest.approx(signal, abs=0.04)


def test_teacher_labels_frames_and_says_what_they_are(teacher, tmp_path):
    cell = li_la_zr_o_cell()
    moved = cell.copy()
    moved.rattle(0.05, seed=9)
    ase.io.write(tmp_path / "in.xyz", [cell, moved])
    label_file(tmp_path / "in.xyz", tmp_path / "out.xyz", teacher)
    for atoms, frame in zip(ase.io.read(tmp_path / "in.xyz", ":"),
                            load_frames(tmp_path / "out.xyz"), strict=True):
        atoms.calc = teacher.calculator
        assert frame.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(frame.forces, atoms.get_forces(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(frame.stress, atoms.get_stress(voigt=False), rtol=0,
                                   atol=1e-12)
        info = frame.atoms.info
        assert info["label_reference"].startswith(teacher.name)
        assert "foundation-model surrogate of PBE/PBE+U (Materials Project MPtrj" in \
            info["label_reference"]
        assert info["label_reference"].endswith(", not DFT")
        assert info["label_version"] == teacher.version


def test_teacher_refuses_an_element_it_does_not_know(teacher, tmp_path):
    unknown = min(set(range(1, 119)) - teacher.species)
    cell, odd = li_la_zr_o_cell(), li_la_zr_o_cell()
    odd.numbers[0] = unknown
    ase.io.write(tmp_path / "in.xyz", [cell, odd])
    with pytest.raises(InputError, match=rf"in\.xyz, frame 1: .* does not know element\(s\) "
                                         rf"\['{ase.data.chemical_symbols[unknown]}'\]"):
        label_file(tmp_path / "in.xyz", tmp_path / "out.xyz", teacher)
    assert not (tmp_path / "out.xyz").exists()
