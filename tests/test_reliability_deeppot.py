"""DeePMD's smooth switching s(r) (``smooth_inverse``): 1/r below r_smth, zero from r_cut on,
C² in between (value, first and second derivative continuous at r_smth and r_cut, by
autograd), and the DeepPot-SE energy is C¹ where a neighbour crosses r_smth (forces on both
sides agree, and agree with the energy's finite differences)."""

import numpy as np
import pytest
import torch
from ase import Atoms

from hayabusa import NeighborList, State
from hayabusa.models import DeepPotSE, ModelPotential
from hayabusa.models.deeppot import smooth_inverse

R_SMTH, R_CUT = 2.0, 4.0
EPS = 1e-7


def derivatives(r: float) -> tuple[float, float, float]:
    """s, s′, s″ at r (autograd, float64)."""
    x = torch.tensor(r, dtype=torch.float64, requires_grad=True)
    s = smooth_inverse(x, R_SMTH, R_CUT)
    (d1,) = torch.autograd.grad(s, x, create_graph=True)
    (d2,) = torch.autograd.grad(d1, x) if d1.requires_grad else (torch.zeros(()),)
    return s.item(), d1.item(), d2.item()


def test_one_over_r_below_r_smth_and_zero_from_r_cut():
    r = torch.linspace(0.3, R_SMTH, 200, dtype=torch.float64)
    assert torch.equal(smooth_inverse(r, R_SMTH, R_CUT), 1 / r)
    r = torch.cat([torch.tensor([R_CUT], dtype=torch.float64),
                   torch.linspace(R_CUT, 9.0, 50, dtype=torch.float64)])
    assert torch.equal(smooth_inverse(r, R_SMTH, R_CUT), torch.zeros_like(r))
    between = torch.linspace(R_SMTH + 0.01, R_CUT - 0.01, 50, dtype=torch.float64)
    s = smooth_inverse(between, R_SMTH, R_CUT)
    assert bool(((s > 0) & (s < 1 / between)).all())


@pytest.mark.parametrize("r0, limits", [
    (R_SMTH, (1 / R_SMTH, -1 / R_SMTH**2, 2 / R_SMTH**3)),  # those of 1/r
    (R_CUT, (0.0, 0.0, 0.0)),
])
def test_value_and_two_derivatives_are_continuous(r0, limits):
    """Both one-sided limits of s, s′, s″ at r0 equal those of the neighbouring piece: the
    differences over ±1e-7 are O(1e-7) (a C¹-only switch has a jump of 6/(Δ²·r) in s″,
    0.75 at r_smth and 0.375 at r_cut here)."""
    left, right = derivatives(r0 - EPS), derivatives(r0 + EPS)
    for k, expected in enumerate(limits):
        assert left[k] == pytest.approx(expected, abs=1e-5), (k, left, right)
        assert right[k] == pytest.approx(expected, abs=1e-5), (k, left, right)


def test_derivatives_by_autograd_match_finite_differences_in_between():
    h = 1e-5
    for r in np.linspace(R_SMTH + 0.05, R_CUT - 0.05, 9):
        s, d1, d2 = derivatives(float(r))
        plus, minus = derivatives(float(r) + h), derivatives(float(r) - h)
        assert d1 == pytest.approx((plus[0] - minus[0]) / (2 * h), rel=1e-6, abs=1e-9)
        assert d2 == pytest.approx((plus[1] - minus[1]) / (2 * h), rel=1e-5, abs=1e-8)


def model():
    torch.manual_seed(2)
    m = DeepPotSE([29, 47], r_cut=R_CUT, r_smth=R_SMTH, embedding=(8, 16), axis_neurons=4,
                  fitting=(16, 16), neighbor_norm=20.0)
    with torch.no_grad():
        m.dstd[:] = 0.5
    return ModelPotential(m).eval()


def energy_and_force(m, r: float) -> tuple[float, float]:
    """Energy of a Cu–Ag pair at distance r, and the force on Ag along the bond."""
    state = State.from_atoms(Atoms("CuAg", positions=[[0, 0, 0], [r, 0.3, -0.2]]),
                             species=m.species)
    result = m(state, NeighborList(m.cutoff).build(state))
    return float(result.energy[0]), float(result.forces[1, 0])


def test_model_energy_is_c1_where_a_neighbour_crosses_r_smth():
    m = model()
    x0 = float(np.sqrt(R_SMTH**2 - 0.3**2 - 0.2**2))  # the x at which r = r_smth
    h = 1e-4
    (e_minus, f_minus), (e_left, f_left), (e_right, f_right) = (
        energy_and_force(m, x) for x in (x0 - h, x0 - EPS, x0 + EPS))
    slope = abs(f_left - f_minus) / (h - EPS)  # |dF/dx| just below r_smth
    print(f"F at r_smth −/+ 1e-7: {f_left:.12g} {f_right:.12g}; |dF/dx| ≈ {slope:.3g}")
    assert abs(f_left) > 1e-4  # the pair does interact here
    assert abs(f_right - f_left) < 10 * EPS * slope + 1e-13
    assert abs(e_right - e_left) < 10 * EPS * abs(f_left)
    # on each side the force is minus the energy's slope
    e_plus, _ = energy_and_force(m, x0 + h)
    assert -(e_left - e_minus) / (h - EPS) == pytest.approx(f_left, rel=1e-3)
    assert -(e_plus - e_right) / (h - EPS) == pytest.approx(f_right, rel=1e-3)
