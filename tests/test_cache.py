"""The core preprocessed-sample cache: signed entries, no code execution, private folders, keys, LRU, concurrency."""

from __future__ import annotations

import os
import pickle
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from mmapps.config import RunConfig
from mmapps.data.cache import SampleCache, default_cache_dir, open_cache
from mmapps.data.cache_secret import KEY_ENV, CacheKeyError, load_secret


@pytest.fixture(autouse=True)
def _key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "config" / "cache.key"
    monkeypatch.setenv(KEY_ENV, str(key))
    return key


def _cache(root: Path, config: dict | None = None, **kwargs) -> SampleCache:
    return SampleCache(root, "toy", config or {"size": 32}, load_secret(root), **kwargs)


class Counting:
    """A deterministic 'preprocessing' that counts its calls."""

    def __init__(self, shape: tuple[int, ...] = (1, 8, 8)) -> None:
        self.calls, self.shape = 0, shape

    def __call__(self):
        self.calls += 1
        return {"image": np.full(self.shape, self.calls, np.float32)}, {"calls": self.calls, "spacing": (0.1, 0.2)}


def _source(tmp_path: Path, name: str = "a.dcm", data: bytes = b"one") -> Path:
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _only_entry(root: Path) -> Path:
    (entry,) = list(root.rglob("*.mmc"))
    return entry


def test_hit_returns_what_the_miss_returned(tmp_path: Path) -> None:
    cache, compute, src = _cache(tmp_path / "c"), Counting(), _source(tmp_path)
    cold = cache.get_or_compute([src], compute)
    warm = _cache(tmp_path / "c").get_or_compute([src], compute)  # a new run: a new cache object
    assert compute.calls == 1
    assert np.array_equal(cold.arrays["image"], warm.arrays["image"]) and warm.arrays["image"].dtype == np.float32
    assert cold.meta == warm.meta == {"calls": 1, "spacing": [0.1, 0.2]}  # plain JSON either way
    assert warm.arrays["image"].flags.writeable  # torch.from_numpy without a warning


def test_tampered_entry_is_refused_counted_and_rebuilt(tmp_path: Path) -> None:
    root, compute, src = tmp_path / "c", Counting(), _source(tmp_path)
    _cache(root).get_or_compute([src], compute)
    entry = _only_entry(root)
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0x40  # one bit of one pixel: still a valid safetensors file, wrong data
    entry.write_bytes(bytes(data))
    cache = _cache(root)
    result = cache.get_or_compute([src], compute)
    assert compute.calls == 2 and result.arrays["image"][0, 0, 0] == 2  # rebuilt, not served
    assert cache.stats.refused == 1 and "signature mismatch" in cache.stats.summary()
    again = _cache(root)
    again.get_or_compute([src], compute)
    assert again.stats.hits == 1 and compute.calls == 2  # the rebuilt entry is valid


def test_entry_signed_by_another_key_or_copied_under_another_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, compute = tmp_path / "c", Counting()
    a, b = _source(tmp_path, "a.dcm", b"a"), _source(tmp_path, "b.dcm", b"b")
    mine = _cache(root)
    mine.get_or_compute([a], compute)
    mine.get_or_compute([b], compute)
    name_a, name_b = mine.key([a]), mine.key([b])
    mine.path_of(name_b).write_bytes(mine.path_of(name_a).read_bytes())  # a valid entry replayed under another name
    assert mine.get(name_b) is None and mine.stats.refused == 1
    # an attacker with write access to the folder but not the key: entries under their own key
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "attacker.key"))
    theirs = SampleCache(root, "toy", {"size": 32}, load_secret(root))
    theirs.put(name_a, {"image": np.zeros((1, 8, 8), np.float32)}, {"calls": -1})
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "config" / "cache.key"))
    victim = _cache(root)
    assert victim.get(name_a) is None and victim.stats.refused == 1


class _Payload:
    """Unpickling this creates the marker file: the proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_dropped_into_the_cache_never_runs(tmp_path: Path) -> None:
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(_Payload(control)))  # the payload is real: unpickled, it creates its file
    assert control.exists()
    root, compute, src = tmp_path / "c", Counting(), _source(tmp_path)
    cache = _cache(root)
    cache.get_or_compute([src], compute)
    marker = tmp_path / "payload-ran"
    bomb = pickle.dumps(_Payload(marker))
    entry = _only_entry(root)
    entry.write_bytes(bomb)  # in place of the real entry, under its exact name
    (entry.parent / "extra.pkl").write_bytes(bomb)  # and beside it, as the old cache named them
    (root / "toy" / "0123.npz").write_bytes(bomb)
    fresh = _cache(root)
    result = fresh.get_or_compute([src], compute)
    assert not marker.exists()
    assert fresh.stats.refused == 1 and "not an mmapps cache entry" in fresh.stats.summary()
    assert compute.calls == 2 and result.arrays["image"][0, 0, 0] == 2


def test_folders_are_private_and_the_key_lives_outside(tmp_path: Path, _key_file: Path) -> None:
    root = tmp_path / "c"
    _cache(root).get_or_compute([_source(tmp_path)], Counting())
    entry = _only_entry(root)
    for folder in (root, root / "toy", entry.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(_key_file.stat().st_mode) == 0o600 and root not in _key_file.parents


def test_unsafe_key_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _key_file: Path) -> None:
    root = tmp_path / "c"
    load_secret(root)
    os.chmod(_key_file, 0o644)
    with pytest.raises(CacheKeyError, match="chmod 600"):
        load_secret(root)
    os.chmod(_key_file, 0o640)  # group read: a team sharing a cache on purpose
    assert len(load_secret(root)) == 32
    monkeypatch.setenv(KEY_ENV, str(root / "cache.key"))
    with pytest.raises(CacheKeyError, match="inside the cache folder"):
        load_secret(root)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    os.chmod(bad, 0o600)
    monkeypatch.setenv(KEY_ENV, str(bad))
    with pytest.raises(CacheKeyError, match="hexadecimal"):
        load_secret(root)


def test_key_changes_with_mtime_size_config_and_extra(tmp_path: Path) -> None:
    src = _source(tmp_path)
    cache = _cache(tmp_path / "c")
    base = cache.key([src])
    assert cache.key([src]) == base and cache.key([str(src)]) == base
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 1))
    touched = cache.key([src])
    src.write_bytes(b"one!")  # size
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))
    resized = cache.key([src])
    other_config = _cache(tmp_path / "c", {"size": 64}).key([src])
    extra = cache.key([src], extra={"start": 1})
    absent = cache.key([src, None])
    assert len({base, touched, resized, other_config, extra, absent}) == 6
    link = tmp_path / "link.dcm"
    link.symlink_to(src)
    assert cache.key([link]) == resized  # the resolved path


def test_content_mode_survives_touch_and_copy_and_misses_on_new_bytes(tmp_path: Path) -> None:
    src = _source(tmp_path, data=b"same bytes")
    cache, compute = _cache(tmp_path / "c", key_mode="content"), Counting()
    cache.get_or_compute([src], compute)
    os.utime(src, ns=(1, 10**18))
    copy = _source(tmp_path, "copy.dcm", b"same bytes")
    assert cache.key([copy]) == cache.key([src])
    _cache(tmp_path / "c", key_mode="content").get_or_compute([copy], compute)
    assert compute.calls == 1
    copy.write_bytes(b"other bytes")
    cache.get_or_compute([copy], compute)
    assert compute.calls == 2
    assert _cache(tmp_path / "c").key([src]) != cache.key([src])  # stat and content keys never collide


def test_lru_eviction_keeps_the_folder_under_its_cap(tmp_path: Path) -> None:
    root = tmp_path / "c"
    entry_bytes = 4 * 64 * 64 + 200  # float32 (1, 64, 64) + header
    cache = _cache(root, max_bytes=10 * entry_bytes)
    sources = [_source(tmp_path, f"{i}.dcm", bytes([i])) for i in range(14)]
    for i, src in enumerate(sources[:8]):
        cache.get_or_compute([src], Counting((1, 64, 64)))
        os.utime(cache.path_of(cache.key([src])), (1000 + i, 1000 + i))  # distinct, ordered last uses
    assert cache.get(cache.key([sources[0]])) is not None  # use the oldest: an LRU keeps it
    for src in sources[8:]:
        cache.get_or_compute([src], Counting((1, 64, 64)))
    total = sum(p.stat().st_size for p in root.rglob("*.mmc"))
    assert total <= 10 * entry_bytes and cache.store.evicted >= 4
    kept = {i for i, src in enumerate(sources) if cache.path_of(cache.key([src])).exists()}
    assert 0 in kept and {1, 2, 3}.isdisjoint(kept) and set(range(8, 14)) <= kept


def _write_many(root: Path, src: Path, value: float) -> None:
    for _ in range(30):
        cache = SampleCache(root, "toy", {"size": 32}, load_secret(root))
        cache.put(cache.key([src]), {"image": np.full((1, 256, 256), value, np.float32)}, {"writer": value})


def test_two_processes_writing_the_same_entry(tmp_path: Path) -> None:
    import multiprocessing

    root, src = tmp_path / "c", _source(tmp_path)
    load_secret(root)  # one key for both, as for one user's two runs
    context = multiprocessing.get_context("fork")  # as DataLoader workers are started on Linux
    procs = [context.Process(target=_write_many, args=(root, src, v)) for v in (1.0, 2.0)]
    for proc in procs:
        proc.start()
    cache = _cache(root)
    while any(p.is_alive() for p in procs):
        found = cache.get(cache.key([src]))  # readers meanwhile see a whole entry or none
        if found is not None:
            value = float(found.arrays["image"][0, 0, 0])
            assert np.all(found.arrays["image"] == value) and found.meta == {"writer": value}
        time.sleep(0.002)
    for proc in procs:
        proc.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    final = cache.get(cache.key([src]))
    assert final is not None and float(final.meta["writer"]) in (1.0, 2.0)
    assert cache.stats.refused == 0 and not list(root.rglob("*.tmp"))


def test_torn_write_is_rebuilt(tmp_path: Path) -> None:
    root, compute, src = tmp_path / "c", Counting(), _source(tmp_path)
    _cache(root).get_or_compute([src], compute)
    entry = _only_entry(root)
    entry.write_bytes(entry.read_bytes()[:100])  # what a kill mid-write without rename would leave
    cache = _cache(root)
    cache.get_or_compute([src], compute)
    assert compute.calls == 2 and cache.stats.refused == 1


def test_unwritable_folder_is_counted_not_raised(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    (root / "toy").write_text("a file where the domain folder should be")
    cache, compute = _cache(root), Counting()
    result = cache.get_or_compute([_source(tmp_path)], compute)
    assert result.arrays["image"][0, 0, 0] == 1 and cache.stats.write_errors == 1 and "write(s) failed" in cache.stats.summary()


def test_open_cache_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMAPPS_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    on = open_cache(RunConfig(domain="toy"), "toy", {})
    assert on is not None and on.root == tmp_path / "env" and on.key_mode == "stat"
    off = open_cache(RunConfig(domain="toy", cache={"enabled": False}), "toy", {})
    assert off is None
    cfg = RunConfig(domain="toy", cache={"dir": tmp_path / "cfg", "key": "content", "max_size_gb": 0.5})
    chosen = open_cache(cfg, "toy", {})
    assert chosen.root == tmp_path / "cfg" and chosen.key_mode == "content" and chosen.store.max_bytes == 2**29
    legacy = open_cache(RunConfig(domain="toy", data={"cache_dir": tmp_path / "old"}), "toy", {})
    assert legacy.root == tmp_path / "old"
    monkeypatch.delenv("MMAPPS_CACHE_DIR")
    monkeypatch.setenv("MMAPPS_CACHE", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / "samples"


def test_non_json_metadata_is_refused_at_write(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "c")
    with pytest.raises(TypeError, match="plain JSON metadata only"):
        cache.get_or_compute([_source(tmp_path)], lambda: ({"a": np.zeros(2)}, {"obj": object()}))
    assert not list((tmp_path / "c").rglob("*.mmc"))


def test_code_digest_follows_the_source_of_the_named_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from mmapps.data.cache import code_digest

    module = tmp_path / "toy_reader_for_cache.py"
    module.write_text("SCALE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    before = code_digest("toy_reader_for_cache", "json")
    assert code_digest("toy_reader_for_cache", "json") == before
    module.write_text("SCALE = 2  # a changed reader\n")
    assert code_digest("toy_reader_for_cache", "json") != before
