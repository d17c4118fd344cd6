"""Object storage: versions under an `s3://`, `gs://` (or any fsspec) base path, mirrored locally.

FileSystemStoragePathSource serves a base path with a URI scheme the way it serves a
directory, with an `ObjectStorageMirror` in place of its VersionStabilityTracker. The loader
always reads a local directory; the mirror decides when a remote version may be read:

- Listing: one recursive listing of the base path per poll pass gives every object under it
  with its size, ETag (or generation) and modification time. A version is the first path
  component under the base path, as a directory is on disk.
- Settling: stability.py's rule, applied to that listing instead of a directory: a version's
  listing (keys, sizes, ETags) must be unchanged across two looks `settle_seconds` apart,
  unless at first sight its newest object is already that old (plus a second: object
  stores stamp whole seconds). A version still being uploaded is not downloaded at all.
- Downloading: a settled version is downloaded completely into a staging directory inside
  the cache, checked with `is_version_complete` (the platform's check: "model.onnx exists"),
  then renamed into place, atomically: `<cache_dir>/<scheme>/<bucket>/<prefix>/<version>/`,
  with the listing it was made from in `.servingd-listing.json`. Only then is it READY.
- Reuse: a cached copy whose recorded listing equals the remote listing is used as it is,
  also after a restart, so an unchanged remote version is never downloaded again. An
  incomplete version is not downloaded again until its listing changes.
- Once READY a version stays READY while it is listed (rewriting the objects of a served
  version does not reload it, as on disk); a version gone from the listing leaves the cache.

Credentials and endpoints come from the environment, as each fsspec backend reads them: s3fs
(botocore) takes AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,
AWS_DEFAULT_REGION and AWS_ENDPOINT_URL; gcsfs takes GOOGLE_APPLICATION_CREDENTIALS or the
metadata server, and STORAGE_EMULATOR_HOST for an emulator (with no credentials found,
access is anonymous); fsspec adds FSSPEC_<PROTOCOL>_<ARG> (e.g. FSSPEC_S3_ENDPOINT_URL). TF
Serving's S3_ENDPOINT and S3_USE_HTTPS work too when AWS_ENDPOINT_URL is not set.

Threads: like the tracker it replaces, a mirror is used by one source under that source's
lock; downloads run on the thread of the poll pass.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from servingd.core.status import InvalidArgument
from servingd.sources.stability import Readiness

logger = logging.getLogger(__name__)

LISTING_FILE = ".servingd-listing.json"

# (path relative to the version, size in bytes, ETag or generation), sorted.
Listing = tuple[tuple[str, int, str], ...]

# S3 reports modification times in whole seconds: an object stamped 12:00:00 may be 0.99 s
# younger than it looks.
_TIMESTAMP_RESOLUTION = 1.0

# What `pip install` brings in each protocol's implementation.
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def is_remote(base_path: str) -> bool:
    return "://" in base_path


def default_cache_dir() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"servingd-model-cache-{uid}")


def cache_root(cache_dir: str, base_uri: str) -> str:
    """The local directory mirroring `base_uri`: `<cache_dir>/<scheme>/<bucket>/<prefix>`."""
    protocol, _, path = base_uri.partition("://")
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    return os.path.join(cache_dir, protocol, *parts)


def check_supported(base_uri: str) -> None:
    """InvalidArgument, naming the package to install, when no fsspec backend reads this URI."""
    protocol = base_uri.partition("://")[0]
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol)
        hint = f"pip install 'servingd[{extra}]'" if extra else f"install fsspec's {protocol}"
        raise InvalidArgument(
            f"Base path {base_uri} needs the {protocol}:// file system: {hint} ({exc})"
        ) from exc
    except ValueError as exc:
        raise InvalidArgument(f"Base path {base_uri}: unknown URI scheme {protocol}://") from exc


def open_filesystem(base_uri: str) -> Any:
    """A fresh fsspec file system for `base_uri`, configured from the environment."""
    import fsspec

    protocol = base_uri.partition("://")[0]
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        endpoint = os.environ.get("S3_ENDPOINT")
        aws_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and not aws_endpoint:
            # TF Serving's variables: a host[:port], https unless S3_USE_HTTPS=0.
            scheme = "http" if os.environ.get("S3_USE_HTTPS", "1") == "0" else "https"
            options["endpoint_url"] = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
    if protocol in ("gs", "gcs") and os.environ.get("STORAGE_EMULATOR_HOST"):
        # gcsfs's default class asks Google's storage-control API for every bucket's layout
        # (hierarchical or not), which an emulator does not serve: each listing and download
        # would retry that call and log a warning. The plain class speaks only the JSON API.
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(skip_instance_cache=True, **options)
    # Own instance: fsspec's instance cache would pin the environment of its first use.
    return fsspec.filesystem(protocol, skip_instance_cache=True, **options)


def list_version_names(base_uri: str) -> list[str]:
    """The names directly under `base_uri` that hold objects (one listing, no mirror)."""
    fs = open_filesystem(base_uri)
    root = fs._strip_protocol(base_uri).rstrip("/")
    return sorted(_by_child(root, _find(fs, root, base_uri)))


@dataclass(frozen=True, slots=True)
class _Look:
    at: float
    listing: Listing


class ObjectStorageMirror:
    """Lists one remote base path and mirrors its settled versions into `local_root`.

    A poll pass calls `list_children()`, then `begin_pass()`, `check(local_dir)` for each
    version the policy could pick (`local_dir` = `local_root/<child>`), and `end_pass()`:
    the same protocol as VersionStabilityTracker, plus the listing.
    """

    def __init__(
        self,
        base_uri: str,
        cache_dir: str,
        *,
        settle_seconds: float,
        is_version_complete: Callable[[str], bool],
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        filesystem: Any = None,
    ) -> None:
        self.base_uri = base_uri
        self.local_root = cache_root(cache_dir, base_uri)
        self._fs = filesystem if filesystem is not None else open_filesystem(base_uri)
        self._root = self._fs._strip_protocol(base_uri).rstrip("/")
        self._settle_seconds = settle_seconds
        self._is_version_complete = is_version_complete
        self._clock = clock
        self._wall_clock = wall_clock
        # From the last listing: child -> its listing, and its newest modification time.
        self._listings: dict[str, Listing] = {}
        self._newest: dict[str, float | None] = {}
        # Keyed by local version directory, like the tracker's state.
        self._ready: set[str] = set()
        self._settling: dict[str, _Look] = {}
        self._incomplete: dict[str, Listing] = {}
        self._download_errors: dict[str, str] = {}
        self._checked: set[str] = set()

    def list_children(self) -> list[str]:
        """The names under the base path; raises OSError when it cannot be listed."""
        infos = _find(self._fs, self._root, self.base_uri)
        by_child = _by_child(self._root, infos)
        self._listings = {
            child: tuple(sorted((rel, size, tag) for rel, size, tag, _ in entries))
            for child, entries in by_child.items()
        }
        self._newest = {
            child: max((m for *_, m in entries if m is not None), default=None)
            for child, entries in by_child.items()
        }
        return sorted(self._listings)

    def begin_pass(self) -> None:
        self._checked.clear()

    def check(self, version_dir: str) -> Readiness:
        self._checked.add(version_dir)
        listing = self._listings.get(os.path.basename(version_dir))
        if listing is None:
            return Readiness.INCOMPLETE
        if version_dir in self._ready:
            return Readiness.READY
        if self._incomplete.get(version_dir) == listing:
            return Readiness.INCOMPLETE
        if read_cached_listing(version_dir) == listing:
            return self._mark_ready(version_dir)
        if not self._settled(version_dir, listing):
            return Readiness.SETTLING
        return self._download(version_dir, listing)

    def end_pass(self, listed_dirs: Collection[str]) -> None:
        """Forgets versions no longer listed and deletes their cached copies."""
        listed = set(listed_dirs)
        self._ready &= listed
        self._settling = {
            d: look for d, look in self._settling.items() if d in listed and d in self._checked
        }
        self._incomplete = {d: v for d, v in self._incomplete.items() if d in listed}
        try:
            cached = os.listdir(self.local_root)
        except OSError:
            return
        for name in cached:
            path = os.path.join(self.local_root, name)
            # Dot names are staging directories, possibly of another process sharing the cache.
            if not name.startswith(".") and name not in self._listings:
                logger.info(
                    "Removing %s from the model cache: no longer in %s", path, self.base_uri
                )
                shutil.rmtree(path, ignore_errors=True)

    def next_deadline(self, now: float) -> float | None:
        deadlines = [look.at + self._settle_seconds for look in self._settling.values()]
        future = [d for d in deadlines if d > now]
        return min(future) if future else None

    def _settled(self, version_dir: str, listing: Listing) -> bool:
        if self._settle_seconds <= 0:
            return True
        now = self._clock()
        look = self._settling.get(version_dir)
        if look is None:
            newest = self._newest.get(os.path.basename(version_dir))
            age = None if newest is None else self._wall_clock() - newest
            if age is not None and age >= self._settle_seconds + _TIMESTAMP_RESOLUTION:
                return True
        elif look.listing == listing:
            return now - look.at >= self._settle_seconds
        self._settling[version_dir] = _Look(now, listing)
        return False

    def _download(self, version_dir: str, listing: Listing) -> Readiness:
        self._settling.pop(version_dir, None)
        child = os.path.basename(version_dir)
        os.makedirs(self.local_root, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{child}.partial-", dir=self.local_root)
        try:
            local = [_safe_join(staging, rel) for rel, _, _ in listing]
            for directory in {os.path.dirname(path) for path in local}:
                os.makedirs(directory, exist_ok=True)
            self._fs.get([f"{self._root}/{child}/{rel}" for rel, _, _ in listing], local)
            if any(
                os.path.getsize(p) != size for p, (_, size, _) in zip(local, listing, strict=True)
            ):
                return Readiness.SETTLING  # rewritten while we read it: look again
            with open(os.path.join(staging, LISTING_FILE), "w", encoding="utf-8") as f:
                json.dump([list(entry) for entry in listing], f)
            if not self._is_version_complete(staging):
                self._incomplete[version_dir] = listing
                return Readiness.INCOMPLETE
            _install(staging, version_dir)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            if self._download_errors.get(version_dir) != message:
                logger.warning(
                    "Could not download %s/%s to %s: %s", self.base_uri, child, version_dir, message
                )
            self._download_errors[version_dir] = message
            return Readiness.INCOMPLETE
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._download_errors.pop(version_dir, None)
        logger.info("Downloaded %s/%s to %s", self.base_uri, child, version_dir)
        if read_cached_listing(version_dir) != listing:
            return Readiness.SETTLING  # another process installed a different copy first
        return self._mark_ready(version_dir)

    def _mark_ready(self, version_dir: str) -> Readiness:
        self._settling.pop(version_dir, None)
        self._ready.add(version_dir)
        return Readiness.READY


def read_cached_listing(version_dir: str) -> Listing | None:
    """The listing a cached copy was downloaded from; None when there is no usable copy."""
    try:
        with open(os.path.join(version_dir, LISTING_FILE), encoding="utf-8") as f:
            return tuple((str(rel), int(size), str(tag)) for rel, size, tag in json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def _install(staging: str, version_dir: str) -> None:
    """Renames `staging` to `version_dir`, replacing a stale copy; atomic for readers."""
    parent, name = os.path.split(version_dir)
    stale = None
    if os.path.isdir(version_dir):
        stale = os.path.join(tempfile.mkdtemp(prefix=f".{name}.stale-", dir=parent), name)
        os.rename(version_dir, stale)
    try:
        os.rename(staging, version_dir)
    except OSError as exc:
        # Another servingd sharing the cache got there first; the caller compares listings.
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    finally:
        if stale is not None:
            shutil.rmtree(os.path.dirname(stale), ignore_errors=True)


def _safe_join(root: str, relative: str) -> str:
    path = os.path.normpath(os.path.join(root, relative))
    if not path.startswith(root + os.sep):
        raise OSError(errno.EINVAL, f"object key {relative!r} escapes its version directory")
    return path


def _find(fs: Any, root: str, base_uri: str) -> Mapping[str, Mapping[str, Any]]:
    """One recursive listing; every failure becomes OSError, as a directory's would."""
    try:
        fs.invalidate_cache(root)  # listings must be fresh on every pass
        found: Mapping[str, Mapping[str, Any]] = fs.find(root, detail=True)
        return found
    except FileNotFoundError as exc:
        raise FileNotFoundError(errno.ENOENT, str(exc) or "not found", base_uri) from exc
    except OSError:
        raise
    except Exception as exc:  # botocore, aiohttp, google-auth errors: report, don't crash
        raise OSError(f"{type(exc).__name__}: {exc}") from exc


def _by_child(
    root: str, infos: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[tuple[str, int, str, float | None]]]:
    """Objects grouped by the first path component under `root`, each as
    (path under that component, size, tag, modification time)."""
    result: dict[str, list[tuple[str, int, str, float | None]]] = {}
    for key, info in infos.items():
        if info.get("type", "file") != "file" or not key.startswith(root + "/"):
            continue
        child, _, rel = key[len(root) + 1 :].partition("/")
        if not rel or rel.endswith("/"):
            continue  # an object beside the versions, or a "folder" marker
        result.setdefault(child, []).append(
            (rel, int(info.get("size") or 0), _tag(info), _modified(info))
        )
    return result


def _tag(info: Mapping[str, Any]) -> str:
    for key in ("ETag", "etag", "generation", "md5Hash", "LastModified", "mtime", "created"):
        value = info.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def _modified(info: Mapping[str, Any]) -> float | None:
    for key in ("LastModified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None
