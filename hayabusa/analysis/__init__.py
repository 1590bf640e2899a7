"""Trajectory analysis for ion transport and segregation: windowed FFT MSD, tracer and charge
diffusion over the diffusive window with block-averaged errors, Nernst–Einstein conductivity,
Haven ratio, Arrhenius fits, thermo summary and equilibration check, partial RDFs, density
grids, site jumps, GB segregation profiles and Li clusters.

``analyze_run(RUN_DIR)`` analyses a study directory (see ``hayabusa.analysis.run``)."""

from .clusters import find_clusters
from .density import density_grid, grid_shape
from .diffusion import (
    charge_diffusion,
    diffusion_from_msd,
    diffusive_window,
    fit_arrhenius,
    fit_msd,
    haven_ratio,
    nernst_einstein,
    pymatgen_window,
    tracer_diffusion,
)
from .msd import (
    collective_msd,
    local_slope,
    msd_by_species,
    remove_drift,
    select_axes,
    windowed_msd,
)
from .rdf import rdf
from .run import analyze_run
from .segregation import gb_profile
from .sites import Sites, assign_sites, count_jumps, garnet_li_sites, li_hop_length
from .thermo import read_thermo, thermo_summary
from .trajectory import Trajectory, read_trajectory, unwrap

__all__ = [
    "Sites", "Trajectory", "analyze_run", "assign_sites", "charge_diffusion", "collective_msd",
    "count_jumps", "density_grid", "diffusion_from_msd", "diffusive_window", "find_clusters",
    "fit_arrhenius", "fit_msd", "gb_profile", "garnet_li_sites", "grid_shape", "haven_ratio",
    "li_hop_length", "local_slope", "msd_by_species", "nernst_einstein", "pymatgen_window",
    "rdf", "read_thermo", "read_trajectory", "remove_drift", "select_axes", "thermo_summary",
    "tracer_diffusion", "unwrap", "windowed_msd",
]
