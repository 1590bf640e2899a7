"""Visualisation: self-contained HTML 3D views, PNG plots and the study report."""

from .parity import ParityPanel, plot_parity
from .plots import plot_arrhenius, plot_msd, plot_segregation, plot_structure
from .report import write_report
from .view3d import li_paths_view, view_figure

__all__ = ["ParityPanel", "li_paths_view", "plot_arrhenius", "plot_msd", "plot_parity",
           "plot_segregation", "plot_structure", "view_figure", "write_report"]
