"""The ``hayabusa`` command. Subcommands wire YAML configs to the library objects.

``hayabusa md CONFIG.yaml [--output DIR] [--overwrite] [--restart CHECKPOINT] [--device D]
[--steps N]`` runs molecular dynamics (see ``hayabusa.config`` for the file format) and writes
``DIR/log.hayabusa`` (thermo log), the trajectory, ``DIR/checkpoint.pt`` and a copy of the
config to ``DIR`` (default ``runs/<config stem>``).

The other commands (bench, train, test, label, analyze, report, study) live beside the code
they drive; see ``COMMAND_MODULES``. Any ``HayabusaError`` is printed as one line
``error: …`` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from . import __version__
from .errors import HayabusaError, InputError
from .files import prepare_output, write_atomic

LOG_NAME = "log.hayabusa"
CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_COPY_NAME = "config.yaml"
COMMAND_MODULES = ("bench.commands", "train.commands", "train.label", "analysis.run",
                   "viz.report", "study")


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HayabusaError as exc:
        message = " ".join(str(exc).split("\n")).strip() or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hayabusa", description="GPU-resident molecular dynamics for machine-learning "
        "interatomic potentials.")
    parser.add_argument("--version", action="version", version=f"hayabusa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    md = sub.add_parser("md", help="run molecular dynamics from a YAML config",
                        description="Run molecular dynamics from a YAML config.")
    md.add_argument("config", metavar="CONFIG.yaml", help="run configuration (YAML)")
    md.add_argument("--output", "-o", metavar="DIR",
                    help="output directory (default: runs/<config stem>)")
    md.add_argument("--overwrite", action="store_true",
                    help="replace the results of an earlier run in the output directory")
    md.add_argument("--restart", metavar="CHECKPOINT",
                    help="continue from a checkpoint: runs the steps left to run.steps and "
                         "appends to the log and trajectory")
    md.add_argument("--device", help="override the config's device (auto, cpu, cuda, cuda:N)")
    md.add_argument("--steps", type=int, metavar="N",
                    help="override run.steps (the total number of steps)")
    md.set_defaults(func=_cmd_md)

    # Every other command registers itself with ``add_parser(sub)`` in its own module.
    for module in COMMAND_MODULES:
        importlib.import_module(f".{module}", __package__).add_parser(sub)
    return parser


# ------------------------------------------------------------------------------------ md
def _cmd_md(args) -> int:
    import torch

    from .config import check_device, load_config, resolve_device

    cfg = load_config(args.config)
    if args.device is not None:
        try:
            cfg = cfg.model_copy(update={"device": check_device(args.device)})
        except ValueError as exc:
            raise InputError(f"--device: {exc}") from None
    if args.steps is not None:
        if args.steps < 0:
            raise InputError(f"--steps: must be >= 0, got {args.steps}")
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": args.steps})})
    device = resolve_device(cfg.device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32

    out = Path(args.output) if args.output else Path("runs") / Path(args.config).stem
    log_path, ckpt_path = out / LOG_NAME, out / CHECKPOINT_NAME
    traj = cfg.output.trajectory
    traj_path = out / traj.path if traj is not None else None
    results = [p for p in (log_path, ckpt_path, traj_path, out / CONFIG_COPY_NAME)
               if p is not None]
    restart = Path(args.restart) if args.restart else None
    if restart is not None and not restart.is_file():
        raise InputError(f"{restart}: checkpoint not found")
    existing = [p for p in results if p.exists()]
    if existing and restart is None and not args.overwrite:
        names = ", ".join(p.name for p in existing)
        raise InputError(f"{out} holds results of an earlier run ({names}); pass --overwrite "
                         f"to replace them or --restart {ckpt_path} to continue")

    def start_output() -> None:
        """Called once the system is built: replace old results (--overwrite), copy config."""
        prepare_output(out, existing if restart is None else ())
        if not (out / CONFIG_COPY_NAME).exists():
            text = Path(args.config).read_text(encoding="utf-8")
            write_atomic(out / CONFIG_COPY_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    sim = _build_simulation(cfg, device, dtype, out, restart, start_output)
    remaining = cfg.run.steps - sim.step
    if remaining < 0:
        raise InputError(f"{restart}: checkpoint is at step {sim.step}, beyond run.steps = "
                         f"{cfg.run.steps}; pass --steps N with N > {sim.step} to go on")
    sim.run(remaining)
    written = [p for p in (log_path, traj_path, ckpt_path) if p is not None and p.exists()]
    print(f"hayabusa md: {sim.step} steps done; outputs in {out}/ "
          f"({', '.join(p.name for p in written)})")
    return 0


def _build_simulation(cfg, device, dtype, out: Path, restart: Path | None, start_output):
    """Structure → State → potential → (minimise, velocities) → integrator → Simulation.

    ``start_output()`` runs after the system is built and before any reporter exists, so a
    config that fails to build leaves earlier results untouched."""
    from .md import FIRE, CheckpointWriter, ProgressBar, Simulation, ThermoLog, maxwell_boltzmann
    from .md.simulation import DEFAULT_SKIN
    from .md.trajectory import ExtxyzWriter, H5MDWriter
    from .state import State

    atoms, species = _structure(cfg)
    state = State.from_atoms(atoms, device=device, dtype=dtype, units=cfg.units, species=species)
    potential = _potential(cfg.potential, len(state.species)).to(device)

    if restart is None and cfg.minimize is not None:
        skin = cfg.neighbors.skin
        fire = FIRE(state, potential, cfg.units, fmax=cfg.minimize.fmax,
                    skin=DEFAULT_SKIN[cfg.units] if skin is None else skin,
                    neighbor_backend=cfg.neighbors.backend)
        converged = fire.run(cfg.minimize.max_steps)
        unit = "eV/Å" if cfg.units == "metal" else "ε/σ"
        fmax = float(fire.max_force.max())
        what = (f"converged in {fire.n_steps} steps" if converged else
                f"stopped at max_steps = {fire.n_steps}")
        print(f"FIRE: {what}, max force {fmax:.4g} {unit} (fmax {cfg.minimize.fmax:g} {unit}), "
              f"energy {float(fire.result.energy.sum()):.8g}", flush=True)
    if restart is None and cfg.velocities is not None:
        maxwell_boltzmann(state, cfg.velocities.temperature, cfg.units, seed=cfg.seed + 1,
                          remove_com=cfg.velocities.remove_com)

    integrator = _integrator(cfg.integrator, cfg.units, cfg.seed + 2)
    start_output()
    reporters = [ThermoLog(cfg.output.thermo_every, path=out / LOG_NAME, stream=sys.stdout,
                           overwrite=True),
                 ProgressBar()]
    traj = cfg.output.trajectory
    if traj is not None:
        writer = ExtxyzWriter if traj.format == "extxyz" else H5MDWriter
        reporters.append(writer(out / traj.path, traj.every, append=restart is not None))
    every = cfg.output.checkpoint_every or max(1, cfg.run.steps)
    reporters.append(CheckpointWriter(out / CHECKPOINT_NAME, every))
    sim = Simulation(state, potential, integrator, cfg.units, skin=cfg.neighbors.skin,
                     neighbor_backend=cfg.neighbors.backend, reporters=reporters,
                     block_steps=cfg.run.block_steps)
    if restart is not None:
        sim.load_checkpoint(restart)
    return sim


def _structure(cfg):
    """The ase.Atoms of the config and the species (type-id order) to use, or None."""
    from . import builders
    from .config import FileStructure, KobAndersenStructure

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


def _potential(p, n_types: int):
    from .config import KobAndersenPotential, LennardJonesPotential
    from .potentials import LennardJones, Morse, kob_andersen

    if isinstance(p, KobAndersenPotential):
        return kob_andersen(p.truncation, p.precision)
    if isinstance(p, LennardJonesPotential):
        return LennardJones(p.epsilon, p.sigma, p.cutoff, p.truncation, n_types=n_types,
                            precision=p.precision)
    return Morse(p.D, p.alpha, p.r0, p.cutoff, p.truncation, n_types=n_types,
                 precision=p.precision)


def _integrator(i, units: str, seed: int):
    from .md import CSVR, Langevin, NoseHooverChain, VelocityVerlet

    if i.type == "nve":
        return VelocityVerlet(i.timestep, units)
    if i.type == "langevin":
        return Langevin(i.timestep, i.temperature, i.friction, units, seed=seed)
    if i.type == "nose_hoover":
        return NoseHooverChain(i.timestep, i.temperature, i.tau, units,
                               chain_length=i.chain_length)
    return CSVR(i.timestep, i.temperature, i.tau, units, seed=seed)

