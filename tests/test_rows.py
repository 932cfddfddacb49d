"""Bounded-memory reads and searches: chunked results equal the whole-matrix ones, and a
memory-mapped matrix's rows are read without its pages entering the resident set."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cubecore.core import artifacts
from cubecore.core.errors import CubecoreError
from cubecore.data import rows
from cubecore.evaluation.baselines import Moments
from cubecore.evaluation.nearest import nearest
from cubecore.evaluation.scoring import retrieval_ranks


def rss_file_kb() -> int:
    """Resident file-backed pages of this process (Linux /proc), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status")


def test_gather_equals_fancy_indexing_and_maps_nothing(tmp_path):
    matrix = np.random.default_rng(0).standard_normal((40_000, 384), dtype=np.float32)  # 61 MB
    artifacts.write_embeddings(tmp_path / "e.npy", matrix)
    mapped = artifacts.read_embeddings(tmp_path / "e.npy")
    ids = np.random.default_rng(1).permutation(len(matrix))[:30_000]
    ids[100:5_000] = np.arange(7_000, 11_900)  # a run of consecutive rows, read in one call
    np.testing.assert_array_equal(rows.gather(mapped, ids[:64]), matrix[ids[:64]])  # code paths run once
    before = rss_file_kb()
    np.testing.assert_array_equal(rows.gather(mapped, ids), matrix[ids])
    grown = []
    for start, chunk in rows.chunks(mapped, ids, chunk=4096):  # measured while each chunk is in use
        np.testing.assert_array_equal(chunk, matrix[ids[start:start + len(chunk)]])
        grown.append(rss_file_kb() - before)
    assert max(grown) < 8_000  # 45 MB of scattered rows read: the map's pages never became resident
    np.testing.assert_array_equal(rows.gather(mapped[10:], ids[:50]), matrix[10:][ids[:50]])  # a view: indexed


def test_a_truncated_file_is_an_error_naming_it(tmp_path):
    artifacts.write_embeddings(tmp_path / "e.npy", np.ones((100, 8), dtype=np.float32))
    mapped = artifacts.read_embeddings(tmp_path / "e.npy")
    with open(tmp_path / "e.npy", "r+b") as file:  # cut after the map was made: row 99 is gone
        file.truncate(mapped.offset + 99 * 32)
    assert rows.gather(mapped, np.array([3, 98])).tolist() == [[1.0] * 8] * 2
    with pytest.raises(CubecoreError, match=r"e\.npy: ends before row 99.*truncated"):
        rows.gather(mapped, np.array([98, 99]))


def test_mapped_rows_read_what_indexing_reads_and_stay_unresident(tmp_path):
    matrix = np.random.default_rng(0).standard_normal((40_000, 384), dtype=np.float32)  # 61 MB
    artifacts.write_embeddings(tmp_path / "e.npy", matrix)
    ids = np.random.default_rng(1).integers(0, len(matrix), 30_000)
    train = rows.MappedRows(artifacts.read_embeddings(tmp_path / "e.npy"), ids)
    assert len(train) == 30_000 and train.shape == (30_000, 384)
    assert torch.equal(train[:64], torch.from_numpy(matrix[ids[:64]]))  # code paths run once
    before = rss_file_kb()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    for start in range(0, len(order), 64):  # an epoch of batches, read from the map
        batch = order[start:start + 64]
        assert torch.equal(train[batch], torch.from_numpy(matrix[ids[batch.numpy()]]))
        assert rss_file_kb() - before < 8_000  # the whole file is read, none of it mapped
    assert torch.equal(train[5:9], torch.from_numpy(matrix[ids[5:9]]))
    assert torch.equal(torch.cat(list(rows.blocks(train, chunk=7_000))), train[:])
    assert torch.equal(torch.cat(list(rows.blocks(train[:], chunk=7_000))), train[:])


@pytest.mark.parametrize("k, block, budget", [(1, 7, 20), (3, 16, 1000), (5, 1000, 1 << 20)])
def test_chunked_nearest_equals_the_whole_matrix(k, block, budget):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(100, 16, generator=g).numpy()
    ids = np.sort(np.random.default_rng(2).choice(100, 60, replace=False))
    queries = torch.randn(23, 16, generator=g) * 3
    scores, where = nearest(queries, bank, ids, k, block=block, budget=budget)
    full = F.normalize(queries, dim=-1) @ F.normalize(torch.from_numpy(bank[ids]), dim=-1).T
    top, index = full.topk(k, dim=1)
    assert torch.equal(where, index)
    assert torch.allclose(scores, top, atol=1e-6)


def test_nearest_caps_k_at_the_bank():
    scores, where = nearest(torch.randn(4, 8), np.random.rand(3, 8).astype(np.float32), np.arange(3), k=10)
    assert scores.shape == where.shape == (4, 3)


def test_retrieval_chunks_rows_to_the_budget(monkeypatch):
    """The default chunk keeps rows x candidates within the budget (ranks unchanged)."""
    g = torch.Generator().manual_seed(0)
    pred, candidates = torch.randn(50, 8, generator=g), torch.randn(40, 8, generator=g)
    true = torch.randint(0, 40, (50,), generator=g)
    expected = retrieval_ranks(pred, candidates, true, chunk=50)
    seen = []
    real_matmul = torch.Tensor.__matmul__
    monkeypatch.setattr("cubecore.evaluation.scoring.SCORES_BUDGET", 100)
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: seen.append(len(a)) or real_matmul(a, b))
    assert torch.equal(retrieval_ranks(pred, candidates, true), expected)
    assert max(seen) == 2  # 100 // 40 rows per chunk


def test_ridge_from_chunked_moments_equals_the_direct_solve():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g) + 0.3
    y = x @ torch.randn(6, 6, generator=g) + 0.5 + 0.1 * torch.randn(300, 6, generator=g)
    xd, yd = x.double(), y.double()
    xc, yc = xd - xd.mean(0), yd - yd.mean(0)
    weight = torch.linalg.solve(xc.T @ xc + 2.0 * torch.eye(6, dtype=torch.float64), xc.T @ yc)
    chunked = Moments.of(x, y, chunk=7).solve(2.0)
    assert torch.allclose(chunked.weight, weight.float(), atol=1e-5)
    assert torch.allclose(chunked.bias, (yd.mean(0) - xd.mean(0) @ weight).float(), atol=1e-5)
    halves = Moments.of(x, y, torch.arange(0, 120)) + Moments.of(x, y, torch.arange(120, 300))
    assert torch.allclose(halves.solve(2.0).weight, Moments.of(x, y).solve(2.0).weight, atol=1e-6)
