"""Neighbor lists: cell list and brute force in PyTorch, optional vesin; Verlet skin; the
grouped-by-type view models read."""

from .neighbor_list import Edges, NeighborList
from .pairs import Pairs, brute_force_pairs, cell_list_pairs
from .typed import TypedNeighbors, TypedRequest

__all__ = ["Edges", "NeighborList", "Pairs", "TypedNeighbors", "TypedRequest",
           "brute_force_pairs", "cell_list_pairs"]
