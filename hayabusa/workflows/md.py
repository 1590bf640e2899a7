"""``hayabusa md CONFIG.yaml [--output DIR] [--overwrite] [--restart CHECKPOINT] [--device D]
[--steps N]``: molecular dynamics from a YAML config (``hayabusa.config``).

Writes ``DIR/log.hayabusa`` (thermo log), the trajectory, ``DIR/checkpoint.pt``, a copy of
the config and the run manifest (``hayabusa.rundir``) to ``DIR`` (default
``runs/<config stem>``). Every check runs before anything is written or removed: the config,
the output paths (inside DIR), the structure, the potential, a restart's checkpoint (it must
be of this system and of the run whose results DIR holds).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import device_option, load_config
from ..errors import InputError
from ..files import write_atomic
from ..rundir import CHECKPOINT_NAME, CONFIG_COPY_NAME, LOG_NAME, RunDirectory
from .runs import make_integrator, relax


def run_md(config_path, output=None, overwrite: bool = False, restart=None,
           device: str | None = None, steps: int | None = None):
    """Run the md config ``config_path``; returns the finished Simulation."""
    import torch

    from ..md import CheckpointWriter, ProgressBar, Simulation, ThermoLog, maxwell_boltzmann
    from ..md.simulation import DEFAULT_SKIN, read_checkpoint
    from ..md.trajectory import ExtxyzWriter, H5MDWriter
    from ..state import State

    cfg = load_config(config_path)
    if steps is not None:
        if steps < 0:
            raise InputError(f"--steps: must be >= 0, got {steps}")
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": steps})})
    dev = device_option(device, cfg.device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    out = Path(output) if output else Path("runs") / Path(config_path).stem
    rundir = RunDirectory(out, "md", resume_option="--restart")
    traj = cfg.output.trajectory
    traj_path = rundir.inside(traj.path, "output.trajectory.path") if traj else None
    planned = [LOG_NAME, CHECKPOINT_NAME, CONFIG_COPY_NAME] + \
        ([str(traj_path.relative_to(out))] if traj_path else [])
    if traj_path is not None and traj_path.name in (LOG_NAME, CHECKPOINT_NAME,
                                                    CONFIG_COPY_NAME):
        raise InputError(f"output.trajectory.path: {traj.path!r} is the name of another "
                         f"output of the run")
    checkpoint = read_checkpoint(restart) if restart is not None else None
    rundir.check(planned, overwrite=overwrite,
                 restart_run_id=checkpoint["run_id"] if checkpoint else None)

    atoms, species = _structure(cfg)
    potential = _potential(cfg.potential)
    if species is None and potential.species is not None:
        species = list(potential.species)
    state = State.from_atoms(atoms, device=dev, dtype=dtype, units=cfg.units, species=species)
    if potential.n_types is None and potential.species is None:
        potential = _potential(cfg.potential, len(state.species))
    potential = potential.to(dev)
    skin = DEFAULT_SKIN[cfg.units] if cfg.neighbors.skin is None else cfg.neighbors.skin
    if checkpoint is None and cfg.minimize is not None:
        print(relax(state, potential, cfg.units, cfg.minimize.fmax, cfg.minimize.max_steps,
                    skin, cfg.neighbors.backend)[3], flush=True)
    if checkpoint is None and cfg.velocities is not None:
        maxwell_boltzmann(state, cfg.velocities.temperature, cfg.units, seed=cfg.seed + 1,
                          remove_com=cfg.velocities.remove_com)
    i = cfg.integrator
    integrator = make_integrator(i.type, i.timestep, cfg.units, getattr(i, "temperature", None),
                                 getattr(i, "tau", None), getattr(i, "friction", None),
                                 getattr(i, "chain_length", 3), cfg.seed + 2)
    sim = Simulation(state, potential, integrator, cfg.units, skin=skin,
                     neighbor_backend=cfg.neighbors.backend, block_steps=cfg.run.block_steps)
    if checkpoint is not None:
        sim.load_checkpoint(restart)
    remaining = cfg.run.steps - sim.step
    if remaining < 0:
        raise InputError(f"{restart}: checkpoint is at step {sim.step}, beyond run.steps = "
                         f"{cfg.run.steps}; pass --steps N with N > {sim.step} to go on")

    rundir.start(sim.run_id, planned, overwrite=overwrite and checkpoint is None)
    if not (out / CONFIG_COPY_NAME).exists():
        text = Path(config_path).read_text(encoding="utf-8")
        write_atomic(out / CONFIG_COPY_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    append = checkpoint is not None
    reporters = []  # the trajectory first: appending to it is checked before anything is logged
    if traj is not None:
        writer = ExtxyzWriter if traj.format == "extxyz" else H5MDWriter
        reporters.append(writer(traj_path, traj.every, overwrite=not append, append=append))
    every = cfg.output.checkpoint_every or max(1, cfg.run.steps)
    reporters += [ThermoLog(cfg.output.thermo_every, path=out / LOG_NAME, stream=sys.stdout,
                            overwrite=True),
                  ProgressBar(), CheckpointWriter(out / CHECKPOINT_NAME, every)]
    sim.reporters = reporters
    sim.run(remaining)
    written = [p for p in (out / LOG_NAME, traj_path, out / CHECKPOINT_NAME)
               if p is not None and p.exists()]
    print(f"hayabusa md: {sim.step} steps done; outputs in {out}/ "
          f"({', '.join(p.name for p in written)})")
    return sim


def _structure(cfg):
    """The ase.Atoms of the config and the species (type-id order) to use, or None."""
    from .. import builders
    from ..config import FileStructure, KobAndersenStructure

    s = cfg.structure
    lj = cfg.units == "lj"
    if isinstance(s, KobAndersenStructure):
        atoms = builders.kob_andersen_mixture(s.n_atoms, s.density, s.fraction_a, seed=cfg.seed)
        return atoms, list(builders.KA_SYMBOLS)
    if isinstance(s, FileStructure):
        atoms = builders.read_structure(s.file, s.index)
        mass = s.mass if s.mass is not None else (1.0 if lj and not atoms.has("masses") else None)
        if mass is not None:
            atoms.set_masses([mass] * len(atoms))
    else:
        mass = s.mass if s.mass is not None else (1.0 if lj else None)
        atoms = builders.lattice(s.builder, s.n_cells, density=s.density,
                                 lattice_constant=s.lattice_constant, symbol=s.symbol, mass=mass)
    species = getattr(cfg.potential, "species", None)
    if cfg.potential.type == "kob_andersen":
        species = list(builders.KA_SYMBOLS)
    return atoms, species


def _potential(p, n_types: int | None = None):
    """The potential of a config's ``potential`` section (pair potentials: ``n_types`` types;
    None: decided later from the structure)."""
    from ..config import KobAndersenPotential, LennardJonesPotential, ModelFilePotential
    from ..models import load_model
    from ..potentials import LennardJones, Morse, kob_andersen

    if isinstance(p, ModelFilePotential):
        return load_model(p.file)
    if isinstance(p, KobAndersenPotential):
        return kob_andersen(p.truncation, p.precision)
    if isinstance(p, LennardJonesPotential):
        return LennardJones(p.epsilon, p.sigma, p.cutoff, p.truncation, n_types=n_types,
                            precision=p.precision)
    return Morse(p.D, p.alpha, p.r0, p.cutoff, p.truncation, n_types=n_types,
                 precision=p.precision)


def _cmd_md(args) -> int:
    run_md(args.config, args.output, args.overwrite, args.restart, args.device, args.steps)
    return 0


def add_parser(sub) -> None:
    md = sub.add_parser("md", help="run molecular dynamics from a YAML config",
                        description="Run molecular dynamics from a YAML config.")
    md.add_argument("config", metavar="CONFIG.yaml", help="run configuration (YAML)")
    md.add_argument("--output", "-o", metavar="DIR",
                    help="output directory (default: runs/<config stem>)")
    md.add_argument("--overwrite", action="store_true",
                    help="replace the results of an earlier run in the output directory (only "
                         "the files hayabusa wrote there)")
    md.add_argument("--restart", metavar="CHECKPOINT",
                    help="continue from a checkpoint of this system and of the run whose "
                         "results the output directory holds: runs the steps left to "
                         "run.steps and appends to the log and trajectory")
    md.add_argument("--device", help="override the config's device (auto, cpu, cuda, cuda:N)")
    md.add_argument("--steps", type=int, metavar="N",
                    help="override run.steps (the total number of steps)")
    md.set_defaults(func=_cmd_md)
