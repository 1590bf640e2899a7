"""Unlabelled LLZO configurations for the reference dataset (see examples/llzo/README.md).

    python examples/llzo/sample.py static DIR            # round 0: no model needed
    python examples/llzo/sample.py md MODEL DIR --round R   # MD snapshots with a trained model
    python examples/llzo/sample.py config DATA... --steps N --output CONFIG.yaml
    python examples/llzo/sample.py package RUN_DIR       # ship a run: model.pt, metrics, plot
    python examples/llzo/sample.py check MODEL           # NVE drift, NVT 900 K, ms per step
    python examples/llzo/sample.py stiffness             # the STIFFNESS numbers (SevenNet-0)

``static`` and ``md`` write DIR/<name>-0.extxyz and DIR/<name>-1.extxyz (name: static or
md<R>_<systems>), the frames dealt alternately into two halves so that two ``hayabusa label``
processes share the teacher's work. Every frame carries ``info["config_type"]`` (what it is
and how it was made). Seeded: the same command writes the same files (``md`` on the same
machine and torch version).

static (round 0): cubic cells (8 Li orderings x 300-1500 K rattles), 96-atom primitive cells,
strained cubic cells (isotropic +-2/4 %, uniaxial +-3 %, shear 2-4 %), tetragonal cells and
two frames each of the Sigma5(310) and Sigma3(112) bicrystals. A rattle at T displaces every
atom by a Gaussian of variance k_B T / kappa per component, kappa = STIFFNESS of its species
(the Einstein picture: the harmonic distribution at T around the built positions).

md (round R >= 1): NVT (CSVR, 1 fs) with the model of the previous round. ``--systems bulk``:
one batched State of cubic cells (two Li orderings per temperature, 300-1500 K), cubic cells
at +-3 % isotropic strain (900 K) and tetragonal cells (300, 900 K); snapshots every 100 fs
from 200 to 700 fs. ``--systems gb``: the Sigma5(310) and Sigma3(112) bicrystals relaxed as
make demo does (FIRE, 50 steps), then at 600 K; snapshots at 0, 100, 300 and 700 fs. A
frame with a pair closer than MIN_PAIR_A (a collapse of the bootstrap model) is dropped and
counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import ase
import ase.io
import ase.units
import numpy as np
import yaml
from ase.neighborlist import neighbor_list

from hayabusa.materials import cubic_llzo, llzo_grain_boundary, tetragonal_llzo
from hayabusa.materials.checks import close_pairs

#: diagonal force constants kappa (eV/Å²) per species, measured with SevenNet-0 on
#: cubic_llzo(seed=0) by ``python examples/llzo/sample.py stiffness`` (kappa = -Σ ΔF·u / Σ u²
#: over the atoms of a species for random 0.02 Å displacements u): Li 4.0, La 10.1, Zr 21.1,
#: O 8.9. At 300 K they give rattle amplitudes (per component) of Li 0.080, La 0.051,
#: Zr 0.035, O 0.054 Å; at 1500 K √5 times more.
STIFFNESS = {"Li": 4.0, "La": 10.1, "Zr": 21.1, "O": 8.9}
TEMPERATURES_K = (300, 600, 900, 1200, 1500)
#: a frame with any pair closer than this (Å) is dropped from MD sampling: the closest pairs
#: of the built cells are Li-O 1.91 and Li-Li 2.34 Å (hayabusa.materials.llzo)
MIN_PAIR_A = 1.2
MD_TIMESTEP_FS = 1.0
MD_TAU_FS = 100.0
MD_SKIN_A = 1.0
#: steps at which bulk and bicrystal snapshots are taken (1 fs steps)
MD_BULK_STEPS = (200, 300, 400, 500, 600, 700)
MD_GB_STEPS = (0, 100, 300, 700)
GB_TEMPERATURE_K = 600


def rattle(atoms: ase.Atoms, temperature_K: float, rng: np.random.Generator) -> ase.Atoms:
    """A copy of ``atoms`` with Gaussian displacements of variance k_B T / kappa (Å²)."""
    kappa = np.array([STIFFNESS[s] for s in atoms.get_chemical_symbols()])
    sigma = np.sqrt(ase.units.kB * temperature_K / kappa)
    out = atoms.copy()
    out.positions += rng.normal(size=out.positions.shape) * sigma[:, None]
    out.wrap()
    return out


def strained(atoms: ase.Atoms, strain) -> ase.Atoms:
    """A copy with cell and positions deformed by (1 + strain) ([3, 3], symmetric)."""
    out = atoms.copy()
    out.set_cell(out.cell.array @ (np.eye(3) + np.asarray(strain)), scale_atoms=True)
    return out


def _tagged(atoms: ase.Atoms, config_type: str) -> ase.Atoms:
    out = ase.Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    out.info["config_type"] = config_type
    return out


def _strains() -> list[tuple[str, np.ndarray]]:
    out = [(f"iso{e:+.0%}", e * np.eye(3)) for e in (-0.04, -0.02, 0.02, 0.04)]
    out += [(f"uni_{ax}{e:+.0%}", np.diag([e if k == i else 0 for k in range(3)]))
            for i, ax in enumerate("xyz") for e in (-0.03, 0.03)]
    for name, (i, j), e in (("xy", (0, 1), 0.02), ("yz", (1, 2), 0.04), ("xz", (0, 2), -0.03)):
        s = np.zeros((3, 3))
        s[i, j] = s[j, i] = e / 2
        out.append((f"shear_{name}{e:+.0%}", s))
    return out


def static_frames(seed: int = 0) -> list[ase.Atoms]:
    """Round-0 configurations (no model needed): rattled, strained, tetragonal, bicrystals."""
    rng = np.random.default_rng(seed)
    frames = []
    for li_seed in range(8):  # Li orderings x temperatures
        bulk = cubic_llzo(seed=li_seed)
        for t in TEMPERATURES_K:
            frames.append(_tagged(rattle(bulk, t, rng), f"cubic seed{li_seed} rattle{t}K"))
    for li_seed in range(8):
        t = TEMPERATURES_K[li_seed % len(TEMPERATURES_K)]
        prim = cubic_llzo(seed=li_seed, primitive=True)
        frames.append(_tagged(rattle(prim, t, rng), f"primitive seed{li_seed} rattle{t}K"))
    for k, (name, s) in enumerate(_strains()):
        t = (300, 600, 900)[k % 3]
        bulk = strained(cubic_llzo(seed=20 + k), s)
        frames.append(_tagged(rattle(bulk, t, rng), f"cubic seed{20 + k} {name} rattle{t}K"))
    tet = tetragonal_llzo()
    for t in (300, 600, 900, 1200):
        frames.append(_tagged(rattle(tet, t, rng), f"tetragonal rattle{t}K"))
    for e in (-0.02, 0.02):
        frames.append(_tagged(rattle(strained(tet, e * np.eye(3)), 600, rng),
                              f"tetragonal iso{e:+.0%} rattle600K"))
    for sigma, plane in ((5, (3, 1, 0)), (3, (1, 1, 2))):
        gb = llzo_grain_boundary(sigma=sigma, plane=plane)
        for t in (300, 900):
            frames.append(_tagged(rattle(gb, t, rng),
                                  f"gb sigma{sigma}({''.join(map(str, plane))}) rattle{t}K"))
    return frames


def _bulk_systems(round_: int) -> list[tuple[ase.Atoms, float, str]]:
    """(structure, temperature K, name) of the bulk MD systems of round ``round_``."""
    base = 100 * round_
    out = []
    for k, t in enumerate(TEMPERATURES_K):
        for j in range(2):
            out.append((cubic_llzo(seed=base + 2 * k + j), t, f"cubic seed{base + 2 * k + j}"))
    for k, e in enumerate((-0.03, 0.03)):
        out.append((strained(cubic_llzo(seed=base + 20 + k), e * np.eye(3)), 900,
                    f"cubic seed{base + 20 + k} iso{e:+.0%}"))
    for t in (300, 900):
        out.append((tetragonal_llzo(), t, "tetragonal"))
    return out


def _gb_systems(round_: int) -> list[tuple[ase.Atoms, float, str]]:
    base = 100 * round_
    return [(llzo_grain_boundary(sigma=5, plane=(3, 1, 0), seed=base), GB_TEMPERATURE_K,
             f"gb sigma5(310) seed{base}"),
            (llzo_grain_boundary(sigma=3, plane=(1, 1, 2), seed=base), GB_TEMPERATURE_K,
             f"gb sigma3(112) seed{base}")]


def _snapshots(model, systems, steps, seed: int, round_: int, relax: bool, log):
    """Frames of NVT MD (CSVR) of ``systems`` (one batched State) at the given step numbers;
    ``relax``: FIRE first (fmax 0.2 eV/Å, at most 50 steps, as make demo does)."""
    import torch

    from hayabusa import SimulationError, State
    from hayabusa.md import CSVR, FIRE, Simulation, maxwell_boltzmann

    state = State.from_atoms([s[0] for s in systems], species=model.species)
    if relax:
        fire = FIRE(state, model, fmax=0.2, skin=MD_SKIN_A)
        fire.run(50)
        log(f"FIRE: {fire.n_steps} steps, max force "
            f"{', '.join(f'{x:.2f}' for x in fire.max_force.tolist())} eV/Å")
    temps = torch.tensor([s[1] for s in systems], dtype=torch.float64)
    maxwell_boltzmann(state, temps, seed=seed)
    sim = Simulation(state, model, CSVR(MD_TIMESTEP_FS, temps, MD_TAU_FS, seed=seed),
                     skin=MD_SKIN_A)
    frames, dropped = [], 0
    try:
        for step in steps:
            sim.run(step - sim.step)
            log(f"step {sim.step}: T = "
                f"{', '.join(f'{x:.0f}' for x in sim.thermo()['temp'].tolist())} K")
            for (_, temp, name), atoms in zip(systems, sim.state.to_atoms(), strict=True):
                if len(close_pairs(atoms, MIN_PAIR_A)[0]):
                    dropped += 1
                    continue
                frames.append(_tagged(atoms, f"{name} md{temp:.0f}K round{round_} "
                                             f"t{sim.step * MD_TIMESTEP_FS:.0f}fs"))
    except SimulationError as exc:  # a blow-up ends the run; the snapshots so far count
        log(f"MD stopped at step {sim.step}: {exc}")
    log(f"{len(frames)} snapshots kept, {dropped} dropped (a pair closer than {MIN_PAIR_A} Å)")
    return frames


def md_frames(model_path, round_: int, systems=("bulk",), log=print) -> list[ase.Atoms]:
    """Snapshots of NVT MD with the model in ``model_path`` (see the module docstring);
    ``systems``: "bulk" and/or "gb"."""
    from hayabusa import load_model

    model = load_model(model_path)
    frames = []
    if "bulk" in systems:
        frames += _snapshots(model, _bulk_systems(round_), MD_BULK_STEPS, round_, round_,
                             False, log)
    if "gb" in systems:
        frames += _snapshots(model, _gb_systems(round_), MD_GB_STEPS, round_ + 1000, round_,
                             True, log)
    return frames


def write_halves(frames: list[ase.Atoms], folder: Path, name: str) -> list[Path]:
    """Frames 0, 2, 4, … to folder/name-0.extxyz and 1, 3, 5, … to name-1.extxyz."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for half in (0, 1):
        path = folder / f"{name}-{half}.extxyz"
        ase.io.write(path, frames[half::2], format="extxyz")
        paths.append(path)
    return paths


#: what the bootstrap models change in train.yaml: smaller fitting net and descriptor, and
#: DeePMD's energy prefactor limit (the rounds of the shipped dataset were run so)
BOOTSTRAP_MODEL = {"axis_neurons": 4, "fitting": [32, 32, 32]}
BOOTSTRAP_TRAINING = {"energy_prefactor": [0.02, 1.0]}


def train_config(data: list[str], steps: int, output: Path) -> None:
    """examples/llzo/train.yaml with other data files, ``steps`` and BOOTSTRAP_MODEL /
    BOOTSTRAP_TRAINING: the config of a bootstrap round."""
    cfg = yaml.safe_load((Path(__file__).parent / "train.yaml").read_text(encoding="utf-8"))
    cfg["data"]["files"] = [str(Path(p).resolve()) for p in data]
    cfg["model"].update(BOOTSTRAP_MODEL)
    cfg["training"].update(BOOTSTRAP_TRAINING, steps=steps)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def frame_errors(model, frame) -> dict:
    """Errors of ``model`` on one labelled frame: energy (meV/atom, signed), force and stress
    component RMSE (meV/Å, GPa)."""
    from hayabusa.train.trainer import FrameSet, predict

    p = predict(model, FrameSet([frame], model.species, model.cutoff), [0], 10**9)
    out = {"n_atoms": len(frame.atoms),
           "energy_error_meV_per_atom": float(1e3 * (p.energy - p.energy_ref)[0]),
           "forces_rmse_meV_per_A": float(1e3 * np.sqrt(((p.forces - p.forces_ref) ** 2).mean()))}
    if len(p.stress):
        out["stress_rmse_GPa"] = float(np.sqrt(((p.stress - p.stress_ref) ** 2).mean())
                                       / ase.units.GPa)
    return out


def group_of(config_type: str) -> str:
    """A coarse group of a frame's config_type: structure kind, how it was made."""
    words = config_type.split()
    kind = words[0] if words[0] != "gb" else f"gb {words[1].split('(')[0]}"
    how = "md" if " md" in config_type else "rattle"
    strained = any(w.startswith(("iso", "uni_", "shear_")) for w in words)
    return f"{kind}{' strained' if strained else ''} {how}"


def package(run: Path, folder: Path) -> dict:
    """Ship a ``hayabusa train`` run of folder/train.yaml into ``folder``: model.pt with
    metadata saying what the labels are (covered by its checksum), parity.png, and
    model_metrics.json (the run's train/valid/test metrics, per-frame errors of the test
    frames, the labels sentence, the split, checksums of model and dataset)."""
    from hayabusa import load_model
    from hayabusa.files import write_atomic
    from hayabusa.models import save_model
    from hayabusa.train import load_frames, split
    from hayabusa.train.config import data_files, load_train_config

    config = folder / "train.yaml"
    cfg = load_train_config(config)
    (dataset,) = data_files(cfg, config)
    frames = load_frames(dataset)
    refs = {f.atoms.info.get("label_reference") for f in frames}
    versions = {f.atoms.info.get("label_version") for f in frames}
    if len(refs) != 1 or len(versions) != 1 or None in refs:
        raise SystemExit(f"{dataset}: frames labelled by more than one reference: {refs}")
    ref, version = refs.pop(), versions.pop()
    fractions = (cfg.data.split.train, cfg.data.split.valid, cfg.data.split.test)
    sets = split(list(range(len(frames))), fractions, seed=cfg.seed)
    model = load_model(run / "model.pt")
    if not ref.startswith("SevenNet-0") or "surrogate of PBE" not in ref:
        raise SystemExit(f"{dataset}: labels are not SevenNet-0's: {ref}")
    labels = "SevenNet-0 (surrogate of PBE), not DFT"
    metadata = {"labels": labels, "label_reference": ref, "label_version": version,
                "dataset": dataset.name, "dataset_sha256": _sha256(dataset),
                "trained_with": f"hayabusa train {config.name} (seed {cfg.seed})"}
    save_model(model, folder / "model.pt", metadata=metadata)
    shutil.copyfile(run / "parity.png", folder / "parity.png")
    run_metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    model = load_model(folder / "model.pt")
    report = {
        "labels": labels, "label_reference": ref, "label_version": version,
        "dataset": {"file": dataset.name, "sha256": metadata["dataset_sha256"],
                    "frames": len(frames), "atoms": sum(len(f.atoms) for f in frames)},
        "model": {"file": "model.pt", "sha256": _sha256(folder / "model.pt"),
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "config": model.config},
        "split": {"seed": cfg.seed, "fractions": list(fractions),
                  **{name: len(s) for name, s in zip(("train", "valid", "test"), sets,
                                                      strict=True)}},
        **{name: run_metrics[name] for name in ("train", "valid", "test") if name in run_metrics},
        "run": run_metrics.get("run", {}),
        "test_frames": [{"index": int(i), "config_type": frames[i].atoms.info.get("config_type"),
                         **frame_errors(model, frames[i])} for i in sets[2]],
        "all_frames_by_group": _by_group(model, frames),
    }
    text = json.dumps(report, indent=2) + "\n"
    write_atomic(folder / "model_metrics.json", lambda tmp: tmp.write_text(text, "utf-8"))
    return report


def check(model_path, nve_ps: float = 5.0, nvt_ps: float = 5.0, gb_ps: float = 2.0,
          teacher: bool = False, log=print) -> dict:
    """Stability and speed of a model, one CPU thread: NVE drift of the conserved energy on a
    cubic cell (dt 1 and 2 fs, from 600 K velocities), NVT (CSVR, 2 fs) at 900 K on a cubic
    cell and on the Sigma5(310) bicrystal as built (temperature, closest pair, Li and
    framework MSD, ms per MD step). ``teacher``: also the model's errors against SevenNet-0 on
    the last frame of each NVT run (configurations the model made itself)."""
    import time

    import torch

    from hayabusa import State, load_model
    from hayabusa.md import CSVR, Simulation, VelocityVerlet, maxwell_boltzmann
    from hayabusa.train import load_frames
    from hayabusa.train.label import label, make_reference, write_extxyz

    torch.set_num_threads(1)
    model = load_model(model_path)
    out: dict = {"model": str(model_path), "threads": 1}

    def simulation(atoms, integrator, temperature, seed=0):
        state = State.from_atoms(atoms, species=model.species)
        maxwell_boltzmann(state, temperature, seed=seed)
        return Simulation(state, model, integrator, skin=MD_SKIN_A)

    for dt in (1.0, 2.0):
        sim = simulation(cubic_llzo(seed=1), VelocityVerlet(dt), 600.0)
        steps, every = int(round(nve_ps * 1000 / dt)), int(round(50 / dt))
        times, econs = [], []
        for _ in range(steps // every + 1):
            if times:
                sim.run(every)
            else:
                sim.run(0)
            times.append(sim.time / 1000)
            econs.append(float(sim.thermo()["conserved"][0]) / sim.state.n_atoms)
        slope = float(np.polyfit(times, econs, 1)[0])
        out[f"nve_dt{dt:g}fs"] = {
            "ps": times[-1], "drift_meV_per_atom_per_ps": 1e3 * slope,
            "max_deviation_meV_per_atom": 1e3 * float(np.max(np.abs(np.array(econs) - econs[0]))),
            "final_temperature_K": float(sim.thermo()["temp"][0])}
        log(f"NVE dt {dt:g} fs: {out[f'nve_dt{dt:g}fs']}")
    for name, atoms, ps in (("cubic", cubic_llzo(seed=1), nvt_ps),
                            ("gb_sigma5", llzo_grain_boundary(sigma=5, plane=(3, 1, 0)), gb_ps)):
        sim = simulation(atoms, CSVR(2.0, 900.0, MD_TAU_FS, seed=1), 900.0, seed=1)
        li = sim.state.atomic_numbers == 3
        start = sim.state.positions.clone()
        rows, seconds = [], 0.0
        sim.run(0)
        for _ in range(int(round(ps * 4))):  # every 250 fs
            t0 = time.perf_counter()
            sim.run(125)
            seconds += time.perf_counter() - t0
            d2 = ((sim.state.positions - start) ** 2).sum(-1)
            temp = float(sim.thermo()["temp"][0])
            closest = float(neighbor_list("d", sim.state.to_atoms()[0], 3.0).min())
            rows.append({"ps": sim.time / 1000, "T_K": temp, "closest_pair_A": closest,
                         "msd_li_A2": float(d2[li].mean()),
                         "msd_framework_A2": float(d2[~li].mean())})
            log(f"NVT 900 K {name}: {rows[-1]}")
        out[f"nvt900_{name}"] = {"atoms": len(atoms), "rows": rows,
                                 "ms_per_step": 1e3 * seconds / sim.step}
        if teacher:
            import tempfile

            reference = make_reference("sevennet")
            last = _tagged(sim.state.to_atoms()[0], f"{name} model md900K t{sim.time:.0f}fs")
            with tempfile.TemporaryDirectory() as tmp:
                path = write_extxyz(Path(tmp) / "last.extxyz", label([last], reference))
                (frame,) = load_frames(path)
            out[f"nvt900_{name}"]["vs_sevennet_last_frame"] = frame_errors(model, frame)
            log(f"vs SevenNet-0 at {sim.time:.0f} fs: {frame_errors(model, frame)}")
    return out


def _by_group(model, frames) -> dict:
    """RMS errors over all frames (train, valid and test together) per ``group_of``."""
    rows: dict[str, list] = {}
    for f in frames:
        rows.setdefault(group_of(f.atoms.info["config_type"]), []).append(frame_errors(model, f))
    out = {}
    for name, errs in sorted(rows.items()):
        n = np.array([e["n_atoms"] for e in errs])
        out[name] = {
            "frames": len(errs), "atoms": int(n.sum()),
            "energy_rmse_meV_per_atom": float(np.sqrt(np.mean(
                [e["energy_error_meV_per_atom"] ** 2 for e in errs]))),
            "energy_mean_error_meV_per_atom": float(np.mean(
                [e["energy_error_meV_per_atom"] for e in errs])),
            "forces_rmse_meV_per_A": float(np.sqrt(np.sum(
                n * np.array([e["forces_rmse_meV_per_A"] for e in errs]) ** 2) / n.sum())),
            "stress_rmse_GPa": float(np.sqrt(np.mean(
                [e["stress_rmse_GPa"] ** 2 for e in errs])))}
    return out


def stiffness(displacement_A: float = 0.02, seed: int = 0) -> dict[str, float]:
    """kappa (eV/Å²) per species from SevenNet-0 forces (the STIFFNESS recipe)."""
    from hayabusa.train.label import make_reference

    calc = make_reference("sevennet").calculator
    atoms = cubic_llzo(seed=seed)
    atoms.calc = calc
    f0 = atoms.get_forces().copy()
    u = np.random.default_rng(seed).normal(0, displacement_A, atoms.positions.shape)
    moved = atoms.copy()
    moved.positions += u
    moved.calc = calc
    df = moved.get_forces() - f0
    symbols = np.array(atoms.get_chemical_symbols())
    return {s: float(-(df[symbols == s] * u[symbols == s]).sum() / (u[symbols == s] ** 2).sum())
            for s in STIFFNESS}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("static", help="round-0 configurations")
    s.add_argument("folder", type=Path)
    m = sub.add_parser("md", help="MD snapshots with a trained model")
    m.add_argument("model")
    m.add_argument("folder", type=Path)
    m.add_argument("--round", type=int, required=True, dest="round_")
    m.add_argument("--systems", default="bulk", help="bulk, gb or bulk,gb")
    c = sub.add_parser("config", help="a training config for a bootstrap round")
    c.add_argument("data", nargs="+")
    c.add_argument("--steps", type=int, required=True)
    c.add_argument("--output", type=Path, required=True)
    k = sub.add_parser("package", help="ship a training run: model.pt, model_metrics.json, "
                                       "parity.png")
    k.add_argument("run", type=Path, help="output folder of hayabusa train")
    k.add_argument("--folder", type=Path, default=Path(__file__).parent)
    h = sub.add_parser("check", help="NVE drift, NVT 900 K stability and MD speed of a model")
    h.add_argument("model")
    h.add_argument("--output", type=Path, help="also write the results as JSON")
    h.add_argument("--teacher", action="store_true",
                   help="also errors against SevenNet-0 on the last NVT frames")
    sub.add_parser("stiffness", help="measure STIFFNESS with SevenNet-0")
    args = p.parse_args(argv)
    if args.command == "static":
        frames = static_frames()
        paths = write_halves(frames, args.folder, "static")
    elif args.command == "md":
        frames = md_frames(args.model, args.round_, args.systems.split(","),
                           log=lambda line: print(line, file=sys.stderr, flush=True))
        paths = write_halves(frames, args.folder,
                             f"md{args.round_}_{args.systems.replace(',', '_')}")
    elif args.command == "package":
        report = package(args.run, args.folder)
        print(json.dumps({k: report[k] for k in ("labels", "test")}, indent=2))
        return 0
    elif args.command == "check":
        result = check(args.model, teacher=args.teacher,
                       log=lambda line: print(line, flush=True))
        if args.output is not None:
            args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return 0
    elif args.command == "config":
        train_config(args.data, args.steps, args.output)
        print(f"wrote {args.output}")
        return 0
    else:
        print(" ".join(f"{k} {v:.1f}" for k, v in stiffness().items()), "eV/Å²")
        return 0
    n_atoms = sum(len(a) for a in frames)
    print(f"{len(frames)} frames, {n_atoms} atoms: {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
