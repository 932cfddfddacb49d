"""Sharded extraction: worker processes and machines filling one embedding cache.

Real teacher (the packaged MiniLM), real processes, tiny text lists.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_cli import in_process, one_error_line

from cubecore.core.config import TeacherParams
from cubecore.data.embcache import EmbeddingCache
from cubecore.data.extraction import embed_with_cache

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["Good morning!", "How is the weather today?", "It is sunny and warm, with a light breeze from the west.",
         "See you tomorrow.", "What are you reading these days?", "A book about the history of bridges.", "Hi",
         "Do you like tea or coffee better in the morning?", "Coffee.", "Why?", "It keeps me awake in meetings.",
         "That makes sense.", "Where did you grow up?", "In a small town by the sea, a long time ago.", "Nice!",
         "Do you still go back there?", "Every summer, with my family.", "Sounds lovely.", "It is.", "Bye!"]


def warnings_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_two_workers_write_the_bytes_of_one(tmp_path, minilm_dir, monkeypatch, caplog):
    """The teacher pads per length-sorted batch, so a text's vector depends on its batch (in bf16
    up to ~1e-3, in fp32 ~1e-7): workers must embed the chunks one worker would, unchanged."""
    from cubecore.data.teacher import Teacher

    monkeypatch.setenv("CUBECORE_SHARD_TEXTS", "7")  # 3 chunks for 2 workers
    params = TeacherParams(model=str(minilm_dir), batch_size=3, device="cpu", precision="bf16")
    results = {}
    for workers in (1, 2):
        teacher = Teacher(params)
        cache = EmbeddingCache(tmp_path / f"workers-{workers}", teacher.cache_namespace())
        cache.put(TEXTS[3:5], teacher.embed(TEXTS[3:5], progress=False))  # some hits: chunks are of the misses
        with caplog.at_level(logging.WARNING):
            results[workers] = embed_with_cache(TEXTS, teacher, cache, progress=False, workers=workers)
    (one, one_stats), (two, two_stats) = results[1], results[2]
    assert one_stats["cache_misses"] == len(TEXTS) - 2
    assert one.tobytes() == two.tobytes()
    assert (one_stats["chunks"], one_stats["worker_processes"]) == (3, 0)  # 1 worker: this process
    assert (two_stats["chunks"], two_stats["worker_processes"]) == (3, 2)
    for workers in (1, 2):  # one shard per chunk of 7 misses
        assert len(list((tmp_path / f"workers-{workers}").glob("*/*.keys.npy"))) == 1 + 3
    assert one_stats["bf16_worst_cosine_to_fp32"] == two_stats["bf16_worst_cosine_to_fp32"] >= 0.999
    assert not warnings_in(caplog)


def test_a_single_chunk_is_embedded_in_this_process_whatever_the_workers(tmp_path, minilm_teacher):
    """Parallelism is per chunk: 2 workers asked for one chunk start no process (bench/extract.py
    reports that rather than a speed-up)."""
    cache = EmbeddingCache(tmp_path, minilm_teacher.cache_namespace())
    _, stats = embed_with_cache(TEXTS, minilm_teacher, cache, progress=False, workers=2)
    assert (stats["chunks"], stats["worker_processes"]) == (1, 0)


def spawned_workers() -> list[int]:
    """Pids of this process's children started by multiprocessing's spawn (not its resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def test_a_killed_worker_stops_extract_with_one_error(tmp_path, minilm_teacher, monkeypatch):
    import signal
    import threading

    from cubecore.core.errors import CubecoreError

    def kill_one_worker():
        deadline = time.time() + 120
        while not spawned_workers() and time.time() < deadline:
            time.sleep(0.01)
        os.kill(spawned_workers()[0], signal.SIGKILL)

    monkeypatch.setenv("CUBECORE_SHARD_TEXTS", "2")
    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    cache = EmbeddingCache(tmp_path, minilm_teacher.cache_namespace())
    with pytest.raises(CubecoreError, match=r"an extract worker process died .*the \d+ texts embedded before are kept"):
        embed_with_cache(TEXTS, minilm_teacher, cache, progress=False, workers=2)
    killer.join()
    for keys in cache.directory.glob("*.keys.npy"):  # what was finished is whole
        assert keys.with_name(keys.name.replace(".keys.npy", ".sum.json")).exists()


# --- many machines: `python -m cubecore embed --shard i/n` into one cache --------------------

def tiny_project(root: Path, cache: Path) -> Path:
    """A folder with params.yaml: 30 chatterbot pairs, the ``minilm_teacher`` fixture's settings."""
    root.mkdir()
    params = {"base": {"cache_dir": str(cache)}, "data": {"max_pairs": 16},
              "teacher": {"batch_size": 2, "device": "cpu", "precision": "fp32"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def launch(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUBECORE_SHARD_TEXTS": "6"}
    return subprocess.Popen([sys.executable, *args], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert "warning" not in err.lower() and "damaged" not in err, err
    return out


def test_concurrent_shard_writers_then_extract_finds_every_text(tmp_path, minilm_teacher, caplog):
    """Shards 1/2 and 2/2 run at once into one cache; extract then embeds nothing, sees no
    damage, and writes the bytes one process on an empty cache computes (the same chunks)."""
    from cubecore.core.config import load_params
    from cubecore.data.extraction import extract

    project = tiny_project(tmp_path / "project", tmp_path / "cache")
    writers = {shard: launch(project, "-m", "cubecore", "embed", "--shard", shard) for shard in ("1/2", "2/2")}
    for shard, writer in writers.items():
        assert finish(writer).startswith(f"shard {shard}: ")

    with caplog.at_level(logging.WARNING):
        metrics, speed = extract(load_params(project / "params.yaml"), project / "data/extract", progress=False)
    assert not warnings_in(caplog)
    texts = metrics["extract"]["distinct_texts"]
    assert speed["extract"]["cache_misses"] == 0 and speed["extract"]["cache_hits"] == texts > 2 * 6

    texts = [json.loads(line)["text"] for line in (project / "data/extract/texts.jsonl").open()]
    cold = np.concatenate([minilm_teacher.embed(texts[i:i + 6], progress=False) for i in range(0, len(texts), 6)])
    assert np.load(project / "data/extract/embeddings.npy").tobytes() == cold.tobytes()


WRITER = """
import sys
import numpy as np
from cubecore.data.embcache import EmbeddingCache

cache = EmbeddingCache(sys.argv[1], "ns")
texts = [f"text {i}" for i in range(200)]
for start in range(0, 200, 10):
    cache.put(texts[start:start + 10], np.arange(start, start + 10, dtype=np.float32)[:, None].repeat(4, 1))
"""


def test_two_processes_writing_the_same_texts_corrupt_nothing(tmp_path, caplog):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env) for _ in range(2)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    with caplog.at_level(logging.WARNING):
        cache = EmbeddingCache(tmp_path, "ns")
        got, found = cache.get([f"text {i}" for i in range(200)], 4)
    assert found.all() and not warnings_in(caplog)
    assert len(list(cache.directory.glob("*.keys.npy"))) == 2 * 20 and len(cache) == 200
    np.testing.assert_array_equal(got[:, 0], np.arange(200))


@pytest.mark.parametrize("shard", ["0/2", "3/2", "1/0", "-1/2", "a/b", "2", "1/2/3", ""])
def test_a_bad_shard_is_one_error_line(tmp_path, monkeypatch, capsys, shard):
    code, out, err = in_process(tmp_path, monkeypatch, capsys, "embed", f"--shard={shard}")
    assert code == 2 and out == ""
    assert "argument --shard:" in one_error_line(err) and repr(shard) in err


# --- the cache under concurrent writers --------------------------------------------------------

KILLER = """
import os, signal, sys
import numpy as np
from cubecore.core import artifacts
from cubecore.data.embcache import EmbeddingCache

cache = EmbeddingCache(sys.argv[1], "ns")
cache.put(["kept"], np.ones((1, 4), np.float32))
renames, real = 0, os.replace
def dying(src, dst):
    global renames
    renames += 1
    if renames == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
artifacts.os.replace = dying
cache.put(["lost", "also lost"], np.full((2, 4), 2.0, np.float32))
"""


@pytest.mark.parametrize("killed_before_rename", [1, 2, 3])
def test_a_killed_writer_leaves_nothing_visible_and_its_debris_is_swept(tmp_path, killed_before_rename, caplog):
    """SIGKILL just before each of a shard's three file renames: readers see only whole shards."""
    done = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path), str(killed_before_rename)],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr
    with caplog.at_level(logging.WARNING):
        cache = EmbeddingCache(tmp_path, "ns")
        got, found = cache.get(["kept", "lost", "also lost"], 4)
    assert found.tolist() == [True, False, False] and got[0].tolist() == [1.0] * 4
    assert not warnings_in(caplog)
    for keys in cache.directory.glob("*.keys.npy"):  # every visible shard is whole and checksummed
        assert keys.with_name(keys.name.replace(".keys.npy", ".sum.json")).exists()
    cache.put(["lost"], np.full((1, 4), 3.0, np.float32))  # the debris is in nobody's way
    assert EmbeddingCache(tmp_path, "ns").get(["lost"], 4)[1].all()

    visible = {keys.name.removesuffix(".keys.npy") for keys in cache.directory.glob("*.keys.npy")}
    whole = {cache.directory / f"{name}{suffix}" for name in visible
             for suffix in (".emb.npy", ".keys.npy", ".sum.json")}
    debris = {p for p in cache.directory.iterdir() if p.is_file()} - whole
    assert debris  # the kill left temp or orphaned files
    EmbeddingCache(tmp_path, "ns")  # fresh debris stays: its writer may still be at work
    assert all(p.exists() for p in debris)
    for path in debris:
        os.utime(path, (time.time() - 2 * 3600,) * 2)
    reopened = EmbeddingCache(tmp_path, "ns")  # an hour later it is swept; whole shards stay
    assert not any(p.exists() for p in debris)
    assert all(p.exists() for p in whole)
    assert reopened.get(["kept", "lost"], 4)[1].all()


def test_a_text_in_two_shards_reads_the_same_everywhere(tmp_path):
    """Two writers embedded one text; whichever order a reader met the shards in, it reads the
    copy in the shard whose name sorts first."""
    first, second = EmbeddingCache(tmp_path, "ns"), EmbeddingCache(tmp_path, "ns")
    first.put(["x", "a"], np.full((2, 4), 1.0, np.float32))
    second.put(["x", "b"], np.full((2, 4), 2.0, np.float32))
    earliest = min(first.directory.glob("*.keys.npy"))
    expected = np.load(earliest.with_name(earliest.name.replace(".keys.npy", ".emb.npy")))[0, 0]
    first.refresh()
    second.refresh()
    fresh = EmbeddingCache(tmp_path, "ns")
    for reader in (first, second, fresh):
        got, found = reader.get(["x", "a", "b"], 4)
        assert found.all() and got[0, 0] == expected
        assert len(reader) == 3


def test_fidelity_is_recorded_under_a_lock(tmp_path):
    """A second writer waits for the lock before reading fidelity.json, so the worse of two
    concurrent figures is never lost."""
    cache = EmbeddingCache(tmp_path, "ns")
    cache.record_fidelity(0.9995)
    code = (f"from cubecore.data.embcache import EmbeddingCache; "
            f"EmbeddingCache({str(tmp_path)!r}, 'ns').record_fidelity(0.9991)")
    with open(cache.directory / "fidelity.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        writer = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)})
        time.sleep(2)
        assert writer.poll() is None, "the writer did not wait for the lock"
        assert json.loads(cache.fidelity_file.read_text())["bf16_worst_cosine_to_fp32"] == 0.9995
    assert writer.wait(timeout=60) == 0
    assert cache.fidelity() == 0.9991
