"""``hayabusa study CONFIG.yaml``: Li transport and segregation in LLZO, from one config
(``workflows.study_config``) to a report, in steps:

  build (structures) → relax (FIRE) → equilibrate (NVT) → produce (NVT, trajectory)
  → analyse (``analysis.analyze_run``) → report (``viz.write_report``)

Run directory (the contract read by hayabusa.analysis.run and hayabusa.viz.report; names in
``hayabusa.rundir``)::

  RUN_DIR/config.yaml, model_metrics.json?, parity.png?, .hayabusa-run.json
  RUN_DIR/<system>-<T>K/{log.hayabusa, traj.h5, start.extxyz, run.json}
  RUN_DIR/checkpoints/<system>.pt       last state of each batch (Simulation.load_checkpoint)
  RUN_DIR/analysis.json, */li_density.npz, report.html, view.html, plots/

Each batch holds one system at all its temperatures (per-system thermostat targets); every
system of the batch gets its own log, trajectory and run.json (reporters that write one
system of the batch). Trajectory frames cover the production phase only (its first frame is
the equilibrated state); the log holds both phases with continuous step numbers. Every check
runs before anything is written: the config, the model, the structures, earlier results.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import device_option
from ..errors import InputError, SimulationError
from ..files import write_atomic
from ..rundir import (
    ANALYSIS_NAME,
    CHECKPOINT_DIR,
    CONFIG_COPY_NAME,
    LOG_NAME,
    METRICS_NAME,
    PARITY_NAME,
    PLOTS_DIR,
    REPORT_NAME,
    RUN_JSON_NAME,
    START_NAME,
    STUDY_RUN_FILES,
    TRAJECTORY_NAME,
    VIEW_NAME,
    RunDirectory,
    new_run_id,
)
from .runs import make_integrator, relax
from .study_config import (
    FileSystem,
    GrainBoundary,
    LangevinSettings,
    ModelFiles,
    NoseHooverSettings,
    StudyConfig,
    TemperatureBatch,
    load_study,
    plan,
)


# ------------------------------------------------------------------------ build
@dataclass
class BuiltSystem:
    """A built system: its atoms and, for a grain boundary, the normal axis and plane
    positions (Å)."""

    atoms: Any  # ase.Atoms
    gb_normal_axis: int | None = None
    gb_planes_A: list[float] | None = None


def build_system(spec, seed: int) -> BuiltSystem:
    """The structure of ``spec`` (a ``systems`` entry)."""
    if isinstance(spec, FileSystem):
        from ..builders import read_structure

        return BuiltSystem(read_structure(spec.file, spec.index), spec.gb_normal_axis,
                           spec.gb_planes_A)
    from ..materials import cubic_llzo, llzo_grain_boundary

    if isinstance(spec, GrainBoundary):
        atoms = llzo_grain_boundary(spec.sigma, spec.plane, spec.lattice_constant_A, seed=seed,
                                    expand_times=spec.expand_times, in_plane=spec.in_plane)
        return BuiltSystem(atoms, int(atoms.info["gb_normal_axis"]),
                           [float(z) for z in atoms.info["gb_planes_A"]])
    kwargs = {"tet_occupancy": spec.tet_occupancy} if spec.tet_occupancy is not None else {}
    return BuiltSystem(cubic_llzo(spec.lattice_constant_A, seed=seed, supercell=spec.supercell,
                                  **kwargs))


def _check_species(where: str, atoms, model) -> None:
    from ase.data import chemical_symbols

    known = {int(z) for z in model.species}
    missing = sorted({int(z) for z in atoms.numbers} - known)
    if missing:
        raise InputError(f"{where}: element(s) "
                         f"{', '.join(chemical_symbols[z] for z in missing)} not among the "
                         f"model's species {[chemical_symbols[z] for z in sorted(known)]}")


# ------------------------------------------------------------------------ relax
def relax_system(structure: BuiltSystem, model, cfg: StudyConfig, device) -> tuple[int, str]:
    """FIRE at fixed cell, in place; returns (steps, the summary line)."""
    from ..state import State

    state = State.from_atoms(structure.atoms, device=device, species=model.species)
    _, steps, _, line = relax(state, model, "metal", cfg.relax.fmax_eV_per_A,
                              cfg.relax.max_steps, cfg.skin_A, cfg.neighbor_backend)
    structure.atoms.positions = state.positions.detach().cpu().double().numpy()
    return steps, line


def collapsed_pair(atoms, limit: float) -> str | None:
    """A description of the closest pair of ``atoms`` if it is nearer than ``limit`` Å
    (minimum image), else None."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, limit)
    if not len(d):
        return None
    k = int(d.argmin())
    sym = atoms.get_chemical_symbols()
    return (f"atoms {i[k]} ({sym[i[k]]}) and {j[k]} ({sym[j[k]]}) are {d[k]:.2f} Å apart "
            f"({len(d) // 2} pair(s) closer than collapse_distance_A = {limit:g} Å): the "
            f"potential let atoms collapse")


def check_collapse(state, names: list[str], out: Path, limit: float) -> None:
    """SimulationError naming the run and the atoms if two atoms of a finished run are
    closer than ``limit`` Å."""
    for name, atoms in zip(names, state.to_atoms(), strict=True):
        pair = collapsed_pair(atoms, limit)
        if pair is not None:
            raise SimulationError(f"{name}: at the end of the run {pair}, so the run is "
                                  f"unphysical; its trajectory is in {out / name}")


# --------------------------------------------------------- equilibrate, produce
def thermostat_of(cfg: StudyConfig, temperatures: list[float], seed: int):
    """The integrator of ``cfg`` with one target per system of the batch."""
    t = cfg.thermostat
    if isinstance(t, NoseHooverSettings):
        return make_integrator("nose_hoover", cfg.timestep_fs, "metal", temperatures,
                               tau=t.tau_fs, chain_length=t.chain_length)
    if isinstance(t, LangevinSettings):
        return make_integrator("langevin", cfg.timestep_fs, "metal", temperatures,
                               friction=t.friction_per_fs, seed=seed)
    return make_integrator("csvr", cfg.timestep_fs, "metal", temperatures, tau=t.tau_fs,
                           seed=seed)


def _run_json(batch: TemperatureBatch, s: int, structure: BuiltSystem, cfg: StudyConfig,
              run_id: str) -> str:
    meta = {"system": batch.system, "temperature_K": float(batch.temperatures[s]),
            "timestep_fs": cfg.timestep_fs, "n_atoms": len(structure.atoms),
            "equilibration_steps": cfg.equilibration_steps,
            "production_steps": cfg.production_steps, "trajectory_every": cfg.trajectory_every,
            "thermostat": cfg.thermostat.model_dump(), "model_file": cfg.model.file,
            "velocity_seed": batch.seed(cfg.seed, s), "run_id": run_id,
            "batch": {"name": batch.name, "system_index": s,
                      "n_systems": len(batch.temperatures)}}
    if structure.gb_planes_A is not None:
        meta.update(gb_normal_axis=structure.gb_normal_axis,
                    gb_planes_A=[float(z) for z in structure.gb_planes_A])
    return json.dumps(meta, indent=1)


def run_batch(batch: TemperatureBatch, structure: BuiltSystem, model, cfg: StudyConfig,
              out: Path, device, progress=None, run_id: str | None = None) -> dict:
    """Equilibrate and produce ``batch``; writes each run directory (their files carry
    ``run_id``, default a new one). Returns {"steps", "seconds" (both phases), "ns_per_day"
    (per system), "katom_steps_per_s"}."""
    import ase.io
    import torch

    from ..md import CheckpointWriter, Simulation, ThermoLog, maxwell_boltzmann
    from ..md.trajectory import H5MDWriter
    from ..state import State

    atoms = structure.atoms
    velocities = []
    for k, temp in enumerate(batch.temperatures):
        one = State.from_atoms(atoms, device=device, species=model.species)
        velocities.append(maxwell_boltzmann(one, temp, "metal", seed=batch.seed(cfg.seed, k))
                          .velocities)
    state = State.from_atoms([atoms] * len(batch.temperatures), device=device,
                             species=model.species)
    state.velocities.copy_(torch.cat(velocities))
    # a stochastic thermostat draws per system from one seed per batch
    integrator = thermostat_of(cfg, batch.temperatures, batch.seed(cfg.seed, 0) + 500)
    sim = Simulation(state, model, integrator, "metal", skin=cfg.skin_A,
                     neighbor_backend=cfg.neighbor_backend, block_steps=cfg.block_steps,
                     run_id=run_id)
    run_id = sim.run_id
    logs, trajectories = [], []
    for s, name in enumerate(batch.run_names):
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / START_NAME, lambda tmp: ase.io.write(tmp, atoms, format="extxyz"))
        text = _run_json(batch, s, structure, cfg, run_id)
        write_atomic(run_dir / RUN_JSON_NAME, lambda tmp, t=text: tmp.write_text(t))
        logs.append(ThermoLog(cfg.thermo_every, path=run_dir / LOG_NAME, stream=None,
                              system=s))
        trajectories.append(H5MDWriter(run_dir / TRAJECTORY_NAME, cfg.trajectory_every,
                                       system=s))
    total = cfg.equilibration_steps + cfg.production_steps
    checkpoints = CheckpointWriter(out / CHECKPOINT_DIR / f"{batch.name}.pt",
                                   cfg.checkpoint_every or max(1, total))
    extra = [progress] if progress is not None else []
    seconds = 0.0
    if cfg.equilibration_steps:
        if progress is not None:
            progress.describe(f"{batch.name} equilibration")
        sim.reporters = [*logs, checkpoints, *extra]
        sim.run(cfg.equilibration_steps)
        seconds += sim.performance["loop_time_s"]
    if progress is not None:
        progress.describe(f"{batch.name} production")
    if sim.step > 0:  # first frame: the equilibrated state (at step 0 run() reports it)
        for writer in trajectories:
            writer.report(sim)
    sim.reporters = [*logs, *trajectories, checkpoints, *extra]
    sim.run(cfg.production_steps)
    seconds += sim.performance["loop_time_s"]
    if cfg.collapse_distance_A > 0:
        check_collapse(sim.state, batch.run_names, out, cfg.collapse_distance_A)
    rate = total / seconds
    return {"steps": total, "seconds": seconds, "ns_per_day": rate * cfg.timestep_fs * 0.0864,
            "katom_steps_per_s": rate * state.n_atoms / 1e3}


# ---------------------------------------------------------------------- outputs
def model_metrics(model: ModelFiles, metadata: dict | None = None) -> dict | None:
    """The test metrics of ``model.metrics_file`` ({"energy_meV_per_atom": {"mae", "rmse"},
    …}, from its "test" entry if it has one) and the labels sentence: ``model.labels``, else
    the file's "labels", else the model file's ``metadata["labels"]``."""
    if model.metrics_file is None:
        return None
    path = model.metrics_file
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the model metrics ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of metrics")
    test = data.get("test", data)
    metrics = {k: v for k, v in test.items() if isinstance(v, dict) and "mae" in v} \
        if isinstance(test, dict) else {}
    if not metrics:
        raise InputError(f"{path}: no test metrics (expected a 'test' entry or entries like "
                         f"'forces_meV_per_A': {{'mae': …, 'rmse': …}})")
    labels = model.labels or data.get("labels") or (metadata or {}).get("labels")
    if labels:
        metrics["labels"] = str(labels)
    return metrics


def study_outputs(cfg: StudyConfig) -> tuple[list[str], dict]:
    """(files, folders → patterns) a study writes into its run directory."""
    files = [CONFIG_COPY_NAME, METRICS_NAME, PARITY_NAME, ANALYSIS_NAME, REPORT_NAME,
             VIEW_NAME]
    dirs = {CHECKPOINT_DIR: ["*.pt"], PLOTS_DIR: ["*.png"]}
    for batch in plan(cfg):
        for name in batch.run_names:
            dirs[name] = list(STUDY_RUN_FILES)
    return files, dirs


def _copy(src: str, dst: Path) -> None:
    data = Path(src).read_bytes()
    write_atomic(dst, lambda tmp: tmp.write_bytes(data))


def run_study(config_path, output=None, overwrite: bool = False, device: str | None = None,
              progress_bar: bool | None = None) -> Path:
    """Run the study of ``config_path`` into ``output`` (default ``runs/<config stem>``);
    returns the path of report.html. ``progress_bar``: None shows it on a terminal."""
    from .. import load_model
    from ..analysis.run import analyze_run
    from ..md import ProgressBar
    from ..viz.report import write_report

    cfg = load_study(config_path)
    dev = device_option(device, cfg.device)
    out = Path(output) if output is not None else Path("runs") / Path(config_path).stem
    rundir = RunDirectory(out, "study", noun="study")
    files, dirs = study_outputs(cfg)
    rundir.check(files, dirs, overwrite=overwrite)
    model = load_model(cfg.model.file, device=dev)
    metrics = model_metrics(cfg.model, model.metadata)
    structures = {}
    for k, (name, spec) in enumerate(cfg.systems.items()):
        try:
            structures[name] = build_system(spec, cfg.seed + k)
        except InputError as exc:
            raise InputError(f"{config_path}: systems.{name}: {exc}") from None
        _check_species(f"{config_path}: systems.{name}", structures[name].atoms, model)

    run_id = new_run_id()
    rundir.start(run_id, files, dirs, overwrite=overwrite)
    _copy(config_path, out / CONFIG_COPY_NAME)
    if metrics is not None:
        text = json.dumps(metrics, indent=1)
        write_atomic(out / METRICS_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if cfg.model.parity_plot_file is not None:
        _copy(cfg.model.parity_plot_file, out / PARITY_NAME)

    batches = plan(cfg)
    per_batch = cfg.equilibration_steps + cfg.production_steps
    progress = ProgressBar(max(10, cfg.block_steps), total=per_batch * len(batches),
                           force=bool(progress_bar))
    progress.show = progress.show if progress_bar is None else bool(progress_bar)
    t0 = time.perf_counter()
    try:
        for name, structure in structures.items():
            if cfg.relax is not None:
                progress.describe(f"{name} FIRE")
                steps, line = relax_system(structure, model, cfg, dev)
                progress.write(f"{name}: {line}")
                pair = cfg.collapse_distance_A > 0 and \
                    collapsed_pair(structure.atoms, cfg.collapse_distance_A)
                if pair:
                    raise SimulationError(f"systems.{name}: after {steps} FIRE steps {pair}")
            for batch in (b for b in batches if b.system == name):
                n_atoms = len(structure.atoms) * len(batch.temperatures)
                perf = run_batch(batch, structure, model, cfg, out, dev, progress, run_id)
                progress.write(f"{batch.name}: {len(batch.temperatures)} × "
                               f"{len(structure.atoms)} atoms ({n_atoms} in the batch), "
                               f"{perf['steps']} steps in {perf['seconds']:.1f} s "
                               f"({perf['ns_per_day']:.3g} ns/day, "
                               f"{perf['katom_steps_per_s']:.3g} katom-step/s)")
    finally:
        progress.close()
    t1 = time.perf_counter()
    print(f"MD done in {t1 - t0:.0f} s; analysing …", flush=True)
    analyze_run(out, overwrite=True)
    t2 = time.perf_counter()
    report = write_report(out, overwrite=True)
    print(f"analysis {t2 - t1:.0f} s, report {time.perf_counter() - t2:.0f} s", flush=True)
    return report


# ------------------------------------------------------------------------------ CLI
def _cmd_study(args) -> int:
    report = run_study(args.config, args.output, args.overwrite, args.device)
    print(f"Report: {report}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="LLZO study: MD at several temperatures, analysis, report",
                       description="Build the systems of CONFIG.yaml, run NVT MD at every "
                                   "temperature (one batched State per system), analyse the "
                                   "runs and write an HTML report.")
    p.add_argument("config", metavar="CONFIG.yaml", help="study configuration (YAML)")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="run directory (default: runs/<config stem>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier study in the run directory (only "
                        "the files hayabusa wrote there)")
    p.add_argument("--device", help="override the config's device (auto, cpu, cuda, cuda:N)")
    p.set_defaults(func=_cmd_study)
