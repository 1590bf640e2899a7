"""Neighbor lists: cell list and brute force in PyTorch, optional vesin; Verlet skin."""

from .neighbor_list import NeighborList
from .pairs import Pairs, brute_force_pairs, cell_list_pairs

__all__ = ["NeighborList", "Pairs", "brute_force_pairs", "cell_list_pairs"]
