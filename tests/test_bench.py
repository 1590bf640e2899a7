"""`hayabusa bench` runs end to end (tiny sizes on the CPU): table on stdout, JSON on disk."""

import json

import pytest
import torch

from hayabusa.bench import commands, peers
from hayabusa.bench.timing import bytes_per_atom_step
from hayabusa.cli import main


def test_bench_lj_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "lj", "--atoms", "256", "--steps", "6", "--warmup", "2",
                 "--block-steps", "3", "--device", "cpu", "--dtype", "float64",
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "atom-steps/s" in text and "copy bandwidth" in text
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu" and report["environment"]["commit"]
    row = report["rows"][0]
    assert row["atoms"] == 256 and row["steps"] == 6
    assert row["atom_steps_per_s"] > 0
    assert row["achieved_bytes_per_s"] == row["bytes_per_atom_step"] * row["atom_steps_per_s"]


def test_bench_kalj_batches_replicas(tmp_path):
    out = tmp_path / "kalj.json"
    assert main(["bench", "kalj", "--replicas", "3", "--atoms-per-replica", "64", "--steps", "4",
                 "--warmup", "1", "--block-steps", "2", "--device", "cpu", "--json",
                 str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["systems"] == 3 and row["atoms"] == 192


def test_bytes_model():
    assert bytes_per_atom_step(100, "min_image") == 4 * 100 + 240
    assert bytes_per_atom_step(100, "matrix") == 33 * 100 + 240


def test_bench_reports_a_missing_peer(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(peers, "torchsim_version", lambda: None)
    out = tmp_path / "bench.json"
    assert main(["bench", "lj", "--atoms", "32", "--steps", "2", "--warmup", "1",
                 "--block-steps", "1", "--device", "cpu", "--peers", "torchsim",
                 "--json", str(out)]) == 0
    assert "peer TorchSim: not run — torch_sim not importable" in capsys.readouterr().out
    assert "missing" in json.loads(out.read_text())["peers"][0]


def test_bench_peer_rows_carry_the_speed_ratio(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_peer(atoms_list, device, ensemble, steps, warmup, temperature, dtype):
        seen.update(atoms=sum(len(a) for a in atoms_list), ensemble=ensemble, steps=steps)
        return {"peer": "Fake 1.0", "atoms": seen["atoms"], "systems": len(atoms_list),
                "ms_per_step": 1.0, "atom_steps_per_s": 10.0}

    monkeypatch.setitem(commands.PEERS, "torchsim", fake_peer)
    out = tmp_path / "kalj.json"
    assert main(["bench", "kalj", "--replicas", "2", "--atoms-per-replica", "64", "--steps", "2",
                 "--warmup", "1", "--block-steps", "1", "--device", "cpu", "--peers",
                 "torchsim", "--peer-steps", "7", "--json", str(out)]) == 0
    assert seen == {"atoms": 128, "ensemble": "nvt", "steps": 7}
    report = json.loads(out.read_text())
    peer = report["peers"][0]
    assert peer["speedup"] == pytest.approx(report["rows"][0]["atom_steps_per_s"] / 10.0)
    assert "Fake 1.0" in capsys.readouterr().out


def test_bench_rejects_an_unknown_peer(capsys):
    assert main(["bench", "lj", "--atoms", "32", "--device", "cpu", "--peers", "lammps"]) == 2
    assert "--peers: unknown peer 'lammps'" in capsys.readouterr().err


def test_peer_kob_andersen_pair_function_matches_ours():
    """The pair function given to TorchSim is our Kob–Andersen potential, energy-shifted."""
    from hayabusa.potentials import kob_andersen

    pot = kob_andersen(truncation="shift")
    r = torch.linspace(0.7, 2.6, 50, dtype=torch.float64)[:, None]
    for (zi, zj), (eps, sig) in peers.KA_PAIRS.items():
        a, b = zi - 1, zj - 1  # our type ids
        assert (float(pot.epsilon[a, b]), float(pot.sigma[a, b])) == (eps, sig)
        p = {name: getattr(pot, name)[a, b].expand_as(r) for name in pot.param_names}
        u, _ = pot.pair(r, p)
        ours = torch.where(r < pot.cutoff_matrix[a, b], u - pot.u_at_cutoff[a, b], 0.0)[:, 0]
        theirs = peers._ka_pair_energy(r[:, 0], torch.full_like(r[:, 0], zi),
                                       torch.full_like(r[:, 0], zj))
        torch.testing.assert_close(theirs, ours, rtol=1e-12, atol=1e-12)
        assert theirs[r[:, 0] > 2.5 * sig].abs().max() == 0


@pytest.mark.parametrize("block_steps", [0, 2])
def test_bench_model_rows_and_json(tmp_path, capsys, block_steps):
    out = tmp_path / "model.json"
    assert main(["bench", "model", "--atoms", "108", "--r-cut", "3.6", "--skin", "0.4",
                 "--steps", "4", "--block-steps", str(block_steps),
                 "--train-steps", "1", "--device", "cpu", "--precisions", "float64,mixed",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["precision"]: r for r in report["md"]}
    assert set(rows) == {"float64", "mixed"}
    for r in rows.values():
        assert r["atoms"] == 108 and r["atom_steps_per_s"] > 0 and r["model_ms"] > 0
        assert r["steps_run_as"] == "eager steps"  # CUDA graphs on a GPU only
        if block_steps:  # blocks on the CPU too: fixed sections wider than any atom needs
            assert r["blocks_run"] == 2 and r["blocks_undone"] == 0
            assert min(r["section_widths"]) > 12  # 12 nearest
    assert [r["precision"] for r in report["training"]] == ["float64", "mixed"]
    assert report["training"][0]["frames_per_s"] > 0
    assert "overhead %" in capsys.readouterr().out


def test_deepmd_ghosts_and_neighbor_list_match_the_periodic_list():
    """The extended system handed to deepmd-kit has, for every atom, exactly the neighbours
    that hayabusa's periodic list finds within r_cut, at the same distances."""
    from hayabusa.bench.model import copper, extended_system, nearest_neighbors
    from hayabusa.neighbors import NeighborList
    from hayabusa.state import State

    atoms = copper(256, seed=3)
    atoms.positions += 2 * atoms.cell[0]  # unwrapped input
    r_cut = 5.3  # four shells: 54 neighbours
    pos = torch.tensor(atoms.positions)
    box = torch.tensor(atoms.cell.lengths())
    ext, mapping = extended_system(pos, box, r_cut)
    assert torch.equal(mapping[:256], torch.arange(256))
    nlist = nearest_neighbors(ext[:256], ext, 64, r_cut)
    state = State.from_atoms(atoms)
    nl = NeighborList(r_cut).build(state)
    vec = nl.pair_vectors(state)
    ours = torch.where(nl.mask, vec.norm(dim=-1), torch.inf)
    ours = torch.sort(torch.where(ours < r_cut, ours, torch.inf), dim=1).values
    d = torch.where(nlist >= 0, (ext[nlist.clamp(min=0)] - ext[:256, None]).norm(dim=-1),
                    torch.inf)
    theirs = torch.sort(d, dim=1).values
    k = int(torch.isfinite(ours).sum(1).max())
    assert k == int((nlist >= 0).sum(1).max()) and k == 54
    torch.testing.assert_close(theirs[:, :k], ours[:, :k], rtol=0, atol=1e-9)
    # the ghosts copy the atoms they map to, shifted by lattice vectors
    shift = (ext - pos[mapping] + 2 * box) / box
    torch.testing.assert_close(shift, torch.round(shift), rtol=0, atol=1e-9)
