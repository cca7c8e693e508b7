"""Picking up rotated signing keys while the service runs, off the request path.

A background thread looks at the keys folder every AUTH_KEYS_RELOAD_SECONDS, and
at once when woken (the service wakes it on SIGHUP). Looking costs one directory
listing and a stat per file; a file is parsed only when it is new or its
(mtime, size, inode) changed, and the ring is swapped only when the set of keys
changed. Requests never parse: they read the ring's current set.

A file that cannot be used (half written, not a key, too short...) is logged and
ignored, and the keys already loaded keep working; a folder with no usable key
left keeps the ring as it was. Removing a file retires its key, and `on_removed` is
told its kid (the service revokes it through the revocation feed). A removal is
also noticed between the periodic looks: `key_file_gone()` costs one stat per
loaded key and is asked every fraction of a second by the revocation feed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from auth_svc.keys import KeyRing, KeyRingError, SigningKey, key_files, load_key
from authgate_common.periodic import PeriodicThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Stamp:
    mtime_ns: int
    size: int
    inode: int


@dataclass(frozen=True)
class _Parsed:
    stamp: _Stamp
    key: SigningKey | None  # None: the file at this stamp cannot be used


class KeyReloader:
    """Keeps a KeyRing in step with its folder; `check()` once, or `start()` a thread."""

    def __init__(
        self,
        ring: KeyRing,
        keys_dir: Path,
        *,
        interval_seconds: float,
        on_removed: Callable[[Sequence[str]], None] = lambda _kids: None,
    ) -> None:
        self._ring = ring
        self._on_removed = on_removed
        self._keys_dir = keys_dir
        self._parsed: dict[Path, _Parsed] = {}
        for key in ring.keys:
            stamp = _stamp(key.path)
            if stamp is not None:
                self._parsed[key.path] = _Parsed(stamp, key)
        self._listing = {path: parsed.stamp for path, parsed in self._parsed.items()}
        self._check_lock = threading.Lock()
        # The thread must outlive any surprise; the old keys stay.
        self._loop = PeriodicThread(
            "key-reloader",
            self.check,
            interval_seconds=interval_seconds if interval_seconds > 0 else None,  # 0: only woken
            log=log,
            failure="reloading the signing keys failed",
        )

    def check(self) -> bool:
        """Reload when the folder changed; True when the ring's keys changed."""
        with self._check_lock:
            try:
                listing = self._list()
            except (KeyRingError, OSError) as exc:
                log.warning("cannot list the keys folder; keeping the loaded keys: %s", exc)
                return False
            if listing == self._listing:
                return False
            self._listing = listing
            return self._reload(listing)

    def _list(self) -> dict[Path, _Stamp]:
        listing = {}
        for path in key_files(self._keys_dir):
            stamp = _stamp(path)
            if stamp is not None:  # gone since it was listed
                listing[path] = stamp
        return listing

    def _reload(self, listing: dict[Path, _Stamp]) -> bool:
        keys = []
        for path, stamp in listing.items():  # oldest first, as key_files sorts them
            parsed = self._parsed.get(path)
            if parsed is None or parsed.stamp != stamp:
                parsed = _Parsed(stamp, self._parse(path))
                self._parsed[path] = parsed
            if parsed.key is not None:
                keys.append(parsed.key)
        for path in set(self._parsed) - set(listing):
            del self._parsed[path]
        if not keys:
            log.error("no usable key left in the keys folder; keeping the loaded keys")
            return False
        if [key.kid for key in keys] == list(self._ring.kids):
            return False
        removed = [kid for kid in self._ring.kids if kid not in {key.kid for key in keys}]
        self._ring.replace(keys)
        log.info(
            "reloaded signing keys",
            extra={"kids": self._ring.kids, "signing_kid": self._ring.signer.kid},
        )
        if removed:
            try:
                self._on_removed(removed)
            except Exception:  # the ring changed all the same; the feed's kid set shows it
                log.exception("reporting removed signing keys failed", extra={"kids": removed})
        return True

    def key_file_gone(self) -> bool:
        """Whether the file of a loaded key has disappeared (one stat per key)."""
        return any(not key.path.exists() for key in self._ring.keys)

    @staticmethod
    def _parse(path: Path) -> SigningKey | None:
        try:
            return load_key(path)
        except KeyRingError as exc:  # names the file, never its content
            log.warning("ignoring a key file that cannot be used: %s", exc)
            return None

    def trigger(self) -> None:
        """Check the folder now (safe to call from a signal handler: it only sets an event)."""
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()


def _stamp(path: Path) -> _Stamp | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return _Stamp(status.st_mtime_ns, status.st_size, status.st_ino)
