"""ObjectStorageMirror and FileSystemStoragePathSource on fsspec's in-memory object store.

`memory://` is a real fsspec file system (the code path s3fs and gcsfs take, without the
network); the loopback S3 server tests are in tests/integration/test_s3_storage.py. Clocks
are injected: `clock` steps by hand, `wall_clock` decides whether objects look old.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from servingd.core.servable_data import ServableData
from servingd.core.status import InvalidArgument
from servingd.sources.file_system_storage_path_source import (
    All,
    FileSystemStoragePathSource,
    FileSystemStoragePathSourceConfig,
    Latest,
    ServableToMonitor,
)
from servingd.sources.object_storage import (
    LISTING_FILE,
    ObjectStorageMirror,
    cache_root,
    check_supported,
    open_filesystem,
    read_cached_listing,
)
from servingd.sources.stability import Readiness

SETTLE = 0.5
OLD = 3600.0  # wall_clock offset that makes every object look settled at first sight


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Calls:
    """Counts the listings and downloads the memory file system serves."""

    def __init__(self) -> None:
        self.finds: list[str] = []
        self.gets: list[str] = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counted = Calls()
    find, get = MemoryFileSystem.find, MemoryFileSystem.get

    def counting_find(self: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        counted.finds.append(path)
        return find(self, path, *args, **kwargs)

    def counting_get(self: Any, rpath: Any, lpath: Any, *args: Any, **kwargs: Any) -> Any:
        counted.gets.extend(rpath if isinstance(rpath, list) else [rpath])
        return get(self, rpath, lpath, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "find", counting_find)
    monkeypatch.setattr(MemoryFileSystem, "get", counting_get)
    return counted


@pytest.fixture
def base() -> Iterator[str]:
    """A fresh prefix in the (process-wide) memory store, removed afterwards."""
    uri = f"memory://bucket-{uuid.uuid4().hex[:8]}/models/half"
    yield uri
    fs = fsspec.filesystem("memory")
    bucket = uri.split("/")[2]
    if fs.exists(f"/{bucket}"):
        fs.rm(f"/{bucket}", recursive=True)


def upload(uri: str, files: dict[str, bytes]) -> None:
    fsspec.filesystem("memory").pipe({f"{uri}/{key}": data for key, data in files.items()})


def delete(uri: str, key: str) -> None:
    fsspec.filesystem("memory").rm(f"{uri}/{key}", recursive=True)


def has_model(version_dir: str) -> bool:
    return os.path.isfile(os.path.join(version_dir, "model.onnx"))


def mirror(base: str, cache: Path, *, wall_offset: float = OLD, clock: Clock | None = None) -> Any:
    return ObjectStorageMirror(
        base,
        str(cache),
        settle_seconds=SETTLE,
        is_version_complete=has_model,
        clock=clock or Clock(),
        wall_clock=lambda: time.time() + wall_offset,
    )


def check(m: ObjectStorageMirror, *children: str) -> list[Readiness]:
    """One pass as the source makes it: list, check each child, end."""
    listed = m.list_children()
    dirs = {c: os.path.join(m.local_root, c) for c in listed}
    m.begin_pass()
    result = [m.check(dirs[c]) if c in dirs else Readiness.INCOMPLETE for c in children]
    m.end_pass(list(dirs.values()))
    return result


# ----- the mirror ---------------------------------------------------------------------------


def test_settled_version_is_downloaded_once_into_the_cache(
    base: str, tmp_path: Path, calls: Calls
) -> None:
    upload(base, {"1/model.onnx": b"onnx-bytes", "1/assets/vocab.txt": b"a\nb\n"})
    m = mirror(base, tmp_path)

    assert check(m, "1") == [Readiness.READY]
    local = Path(tmp_path, "memory", *base.split("://")[1].split("/"), "1")
    assert m.local_root == str(local.parent)
    assert (local / "model.onnx").read_bytes() == b"onnx-bytes"
    assert (local / "assets" / "vocab.txt").read_bytes() == b"a\nb\n"
    assert sorted(rel for rel, _, _ in json.loads((local / LISTING_FILE).read_text())) == [
        "assets/vocab.txt",
        "model.onnx",
    ]
    assert len(calls.gets) == 2

    assert check(m, "1") == [Readiness.READY]
    assert len(calls.gets) == 2  # unchanged: not downloaded again
    # No staging directory is left behind.
    assert sorted(os.listdir(m.local_root)) == ["1"]


def test_unchanged_version_is_reused_after_a_restart(
    base: str, tmp_path: Path, calls: Calls
) -> None:
    upload(base, {"1/model.onnx": b"v1"})
    assert check(mirror(base, tmp_path), "1") == [Readiness.READY]
    assert len(calls.gets) == 1

    # A new process (new mirror) on the same cache, remote unchanged: no download.
    assert check(mirror(base, tmp_path), "1") == [Readiness.READY]
    assert len(calls.gets) == 1

    # Rewritten remotely while no server ran: the stale copy is replaced.
    upload(base, {"1/model.onnx": b"v1, fixed"})
    fresh = mirror(base, tmp_path)
    assert check(fresh, "1") == [Readiness.READY]
    assert len(calls.gets) == 2
    assert Path(fresh.local_root, "1", "model.onnx").read_bytes() == b"v1, fixed"
    assert sorted(os.listdir(fresh.local_root)) == ["1"]


def test_young_version_settles_before_it_is_downloaded(
    base: str, tmp_path: Path, calls: Calls
) -> None:
    clock = Clock()
    m = mirror(base, tmp_path, wall_offset=0.0, clock=clock)
    upload(base, {"2/model.onnx": b"part"})

    assert check(m, "2") == [Readiness.SETTLING]
    assert m.next_deadline(clock.now) == clock.now + SETTLE
    clock.now += SETTLE / 2
    upload(base, {"2/extra.bin": b"still uploading"})
    assert check(m, "2") == [Readiness.SETTLING]  # the listing changed: settle again
    clock.now += SETTLE / 2
    assert check(m, "2") == [Readiness.SETTLING]
    assert calls.gets == []

    clock.now += SETTLE
    assert check(m, "2") == [Readiness.READY]
    assert sorted(os.listdir(os.path.join(m.local_root, "2"))) == [
        LISTING_FILE,
        "extra.bin",
        "model.onnx",
    ]


def test_incomplete_version_is_not_served_nor_downloaded_again(
    base: str, tmp_path: Path, calls: Calls
) -> None:
    upload(base, {"3/variables.bin": b"weights"})
    m = mirror(base, tmp_path)

    assert check(m, "3") == [Readiness.INCOMPLETE]
    assert check(m, "3") == [Readiness.INCOMPLETE]
    assert len(calls.gets) == 1
    assert os.listdir(m.local_root) == []  # the staging copy was discarded

    upload(base, {"3/model.onnx": b"now complete"})
    assert check(m, "3") == [Readiness.READY]
    assert has_model(os.path.join(m.local_root, "3"))


def test_version_gone_remotely_leaves_the_cache(base: str, tmp_path: Path) -> None:
    upload(base, {"1/model.onnx": b"1", "2/model.onnx": b"2"})
    m = mirror(base, tmp_path)
    assert check(m, "1", "2") == [Readiness.READY, Readiness.READY]

    delete(base, "2")
    assert check(m, "1", "2") == [Readiness.READY, Readiness.INCOMPLETE]
    assert os.listdir(m.local_root) == ["1"]


def test_key_escaping_its_version_is_refused(
    base: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = _FakeFs({"bucket/m/1/model.onnx": 1, "bucket/m/1/../../x": 1})
    m = ObjectStorageMirror(
        "s3://bucket/m",
        str(tmp_path),
        settle_seconds=0,
        is_version_complete=has_model,
        clock=Clock(),
        wall_clock=time.time,
        filesystem=fake,
    )
    assert check(m, "1") == [Readiness.INCOMPLETE]
    assert "escapes its version directory" in caplog.text
    assert fake.gets == 0


def test_listing_errors_become_os_errors(tmp_path: Path) -> None:
    fake = _FakeFs({}, error=RuntimeError("endpoint said no"))
    m = ObjectStorageMirror(
        "s3://bucket/m",
        str(tmp_path),
        settle_seconds=0,
        is_version_complete=has_model,
        clock=Clock(),
        wall_clock=time.time,
        filesystem=fake,
    )
    with pytest.raises(OSError, match="RuntimeError: endpoint said no"):
        m.list_children()


class _FakeFs:
    """A listing-only file system, for keys no real store would hand out."""

    def __init__(self, sizes: dict[str, int], error: Exception | None = None) -> None:
        self._sizes = sizes
        self._error = error
        self.gets = 0

    def _strip_protocol(self, uri: str) -> str:
        return uri.split("://", 1)[1]

    def invalidate_cache(self, path: str) -> None:
        pass

    def find(self, path: str, detail: bool) -> dict[str, dict[str, Any]]:
        if self._error is not None:
            raise self._error
        return {k: {"type": "file", "size": s, "ETag": "e"} for k, s in self._sizes.items()}

    def get(self, rpaths: Sequence[str], lpaths: Sequence[str]) -> None:
        self.gets += 1


# ----- helpers ------------------------------------------------------------------------------


def test_cache_root_mirrors_the_uri() -> None:
    assert cache_root("/c", "s3://bucket/models/half/") == "/c/s3/bucket/models/half"
    assert cache_root("/c", "gs://b/../m") == "/c/gs/b/m"


def test_unknown_scheme_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_supported("nosuchscheme://bucket/m")
    assert (
        raised.value.message
        == "Base path nosuchscheme://bucket/m: unknown URI scheme nosuchscheme://"
    )


def test_missing_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(protocol: str) -> None:
        raise ImportError("Install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(InvalidArgument) as raised:
        check_supported("gs://bucket/m")
    assert raised.value.message == (
        "Base path gs://bucket/m needs the gs:// file system: pip install 'servingd[gcs]' "
        "(Install gcsfs to access Google Storage)"
    )


def test_s3_and_gs_resolve_to_their_fsspec_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    check_supported("s3://bucket/m")
    check_supported("gs://bucket/m")
    assert type(open_filesystem("s3://bucket/m")).__name__ == "S3FileSystem"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    # As FSSPEC_GS_TOKEN=anon would: without it gcsfs probes for credentials for ~15 s.
    monkeypatch.setitem(fsspec.config.conf, "gs", {"token": "anon"})
    assert isinstance(open_filesystem("gs://bucket/m"), fsspec.get_filesystem_class("gs"))


def test_gcs_emulator_gets_the_plain_gcs_file_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not gcsfs's default class, whose bucket-layout lookups an emulator cannot answer."""
    from gcsfs.core import GCSFileSystem

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    fs = open_filesystem("gs://bucket/m")
    assert type(fs) is GCSFileSystem


def test_tf_serving_s3_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("S3_ENDPOINT", "minio.local:9000")
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    fs = open_filesystem("s3://bucket/m")
    assert fs.client_kwargs.get("endpoint_url", fs.endpoint_url) == "http://minio.local:9000"


def test_unreadable_listing_file_means_no_cached_copy(tmp_path: Path) -> None:
    (tmp_path / LISTING_FILE).write_text("{not json")
    assert read_cached_listing(str(tmp_path)) is None
    assert read_cached_listing(str(tmp_path / "missing")) is None


# ----- through FileSystemStoragePathSource --------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[int, str]]]] = []

    def __call__(self, name: str, versions: Sequence[ServableData[str]]) -> None:
        self.calls.append((name, [(v.id.version, str(v.data)) for v in versions]))


def connect(
    base: str, cache: Path, policy: Any = None
) -> tuple[FileSystemStoragePathSource, Recorder]:
    servable = ServableToMonitor("half", base, policy or Latest())
    source = FileSystemStoragePathSource(
        FileSystemStoragePathSourceConfig(servables=(servable,), file_system_poll_wait_seconds=-1),
        is_version_complete=has_model,
        use_watchdog=False,
        clock=Clock(),
        wall_clock=lambda: time.time() + OLD,
        object_storage_cache_dir=str(cache),
    )
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    return source, recorder


def test_source_aspires_local_copies_with_one_listing_per_pass(
    base: str, tmp_path: Path, calls: Calls
) -> None:
    upload(base, {"1/model.onnx": b"1", "2/model.onnx": b"2", "README": b"not a version"})
    source, recorder = connect(base, tmp_path, All())
    root = cache_root(str(tmp_path), base)

    assert source.poll_once()
    assert recorder.calls == [("half", [(1, f"{root}/1"), (2, f"{root}/2")])]
    assert len(calls.finds) == 1
    assert Path(root, "2", "model.onnx").read_bytes() == b"2"

    delete(base, "1")
    upload(base, {"3/model.onnx": b"3"})
    calls.finds.clear()
    assert source.poll_once()
    assert recorder.calls[-1] == ("half", [(2, f"{root}/2"), (3, f"{root}/3")])
    assert len(calls.finds) == 1
    assert sorted(os.listdir(root)) == ["2", "3"]


def test_source_latest_falls_back_while_the_newest_is_incomplete(base: str, tmp_path: Path) -> None:
    upload(base, {"1/model.onnx": b"1", "2/partial.bin": b"upload in progress"})
    source, recorder = connect(base, tmp_path)

    assert source.poll_once()
    assert recorder.calls == [("half", [(1, f"{cache_root(str(tmp_path), base)}/1")])]


def test_source_missing_bucket_fails_the_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, recorder = connect("memory://no-such-bucket-here/m", tmp_path)
    assert source.poll_once()  # an empty prefix is a base path with no versions
    assert recorder.calls == [("half", [])]

    broken, broken_calls = connect("nosuchscheme://bucket/m", tmp_path)
    assert not broken.poll_once()
    assert broken_calls.calls == []
    assert "Could not list base path nosuchscheme://bucket/m for servable half" in caplog.text


def test_source_follows_a_servable_moved_between_disk_and_bucket(base: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    (local / "1").mkdir(parents=True)
    (local / "1" / "model.onnx").write_bytes(b"on disk")
    upload(base, {"5/model.onnx": b"in the bucket"})
    cache = tmp_path / "cache"
    source, recorder = connect(str(local), cache)
    assert source.poll_once()
    assert recorder.calls[-1] == ("half", [(1, str(local / "1"))])

    def move_to(path: str) -> None:
        servable = ServableToMonitor("half", path, Latest())
        source.update_config(
            FileSystemStoragePathSourceConfig(
                servables=(servable,), file_system_poll_wait_seconds=-1
            )
        )

    move_to(base)
    assert source.poll_once()
    assert recorder.calls[-1] == ("half", [(5, f"{cache_root(str(cache), base)}/5")])
    move_to(str(local))
    assert source.poll_once()
    assert recorder.calls[-1] == ("half", [(1, str(local / "1"))])
