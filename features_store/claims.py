"""Claims: several writers (processes, machines) share one store, and each video group has one writer at a time.

A claim is a small JSON object at ``.claims/<name>.json`` inside the store, created only if absent (atomically on a
local filesystem; on object stores without conditional writes, by write, pause and read back). It carries who holds
it: host, process id and that process's start time (so a reused pid is not mistaken for the holder), a random token,
and a heartbeat that the holder refreshes while it works. A claim is **stale**, and may be taken over, when:

- its host is this host and its process is gone (at once: a ``kill -9`` frees its videos for the next run), or
- its host is another host and its heartbeat is older than ``stale_after_s`` (we cannot see other hosts' processes).

Writers claim each video group before touching it (``<video_id>``) and the root briefly (``.root``) to update the
root attributes (``failures``, consolidated metadata), which every writer re-reads inside the claim.
Claims are removed when released; ``.claims`` exists only while someone writes (or after a killed run).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psutil
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from features_store.common import utc_stamp
from features_store.errors import AffectsyncError

CLAIMS_PREFIX = ".claims"
ROOT_CLAIM = ".root"
DEFAULT_STALE_AFTER_S = 600.0
"""A claim from another host whose heartbeat is older than this is stale (10 minutes; heartbeats every quarter)."""
OBJECT_STORE_SETTLE_S = 1.0
"""Without an atomic create-if-absent, a claimer waits this long before reading its claim back (last writer wins)."""


class ClaimLost(AffectsyncError, RuntimeError):
    """A claim this process held was taken over (its heartbeat lapsed past the timeout seen from another host)."""


@dataclass(frozen=True)
class Claimant:
    """Who holds a claim."""

    host: str
    pid: int
    process_started_s: float  # the process's start time (epoch seconds): tells a reused pid from the holder
    token: str  # unique per claim
    claimed_utc: str
    heartbeat_s: float  # epoch seconds of the holder's last refresh

    @classmethod
    def this_process(cls) -> Claimant:
        now = time.time()
        return cls(socket.gethostname(), os.getpid(), psutil.Process().create_time(), uuid.uuid4().hex,
                   utc_stamp(now), now)

    def is_stale(self, stale_after_s: float, now_s: float | None = None) -> bool:
        """True when the holder is gone: its process, on this host; its heartbeat, seen from another host."""
        if self.host == socket.gethostname():
            try:
                return abs(psutil.Process(self.pid).create_time() - self.process_started_s) > 1.0
            except psutil.NoSuchProcess:
                return True
        return (now_s if now_s is not None else time.time()) - self.heartbeat_s > stale_after_s

    def describe(self) -> str:
        return f"{self.host} pid {self.pid} (since {self.claimed_utc})"


class Claims:
    """The claims of one store, held by this process; a daemon thread keeps their heartbeats fresh."""

    def __init__(self, zarr_store, stale_after_s: float = DEFAULT_STALE_AFTER_S):
        self.zarr_store = zarr_store
        self.stale_after_s = stale_after_s
        self.atomic = isinstance(zarr_store, LocalStore)
        self._held: dict[str, Claimant] = {}
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None

    def _key(self, name: str) -> str:
        return f"{CLAIMS_PREFIX}/{name}.json"

    def read(self, name: str) -> Claimant | None:
        """The stored claim on ``name`` (live or stale), None when there is none."""
        buffer = sync(self.zarr_store.get(self._key(name), prototype=default_buffer_prototype()))
        if buffer is None:
            return None
        try:
            return Claimant(**json.loads(buffer.to_bytes()))
        except (ValueError, TypeError):  # unreadable: treat as held by nobody we can check, so stale
            return Claimant("?", -1, 0.0, "?", "?", 0.0)

    def _write(self, name: str, claimant: Claimant, exclusive: bool) -> bool:
        buffer = default_buffer_prototype().buffer.from_bytes(json.dumps(asdict(claimant)).encode())
        if not exclusive:
            sync(self.zarr_store.set(self._key(name), buffer))
            return True
        if self.atomic:
            for _ in range(3):
                try:
                    sync(self.zarr_store.set_if_not_exists(self._key(name), buffer))
                    break
                except FileExistsError:
                    return False
                except FileNotFoundError:  # another writer removed the empty .claims folder meanwhile: again
                    continue
            current = self.read(name)
            return current is not None and current.token == claimant.token
        if self.read(name) is not None:
            return False
        sync(self.zarr_store.set(self._key(name), buffer))
        time.sleep(OBJECT_STORE_SETTLE_S)
        current = self.read(name)
        return current is not None and current.token == claimant.token

    def holder(self, name: str) -> Claimant | None:
        """Who holds ``name`` now (None when nobody, or only a stale holder)."""
        current = self.read(name)
        return None if current is None or current.is_stale(self.stale_after_s) else current

    def try_claim(self, name: str) -> Claimant | None:
        """Claim ``name`` for this process; None when a live holder has it. A stale claim is taken over."""
        claimant = Claimant.this_process()
        if not self._write(name, claimant, exclusive=True):
            current = self.read(name)
            if current is None or not current.is_stale(self.stale_after_s):
                return None
            self._delete_if(name, current.token)
            if not self._write(name, claimant, exclusive=True):
                return None
        with self._lock:
            self._held[name] = claimant
        self._start_heartbeat()
        return claimant

    def holds(self, name: str) -> bool:
        """True when this process claimed ``name`` and has not released it."""
        return name in self._held

    def lost(self, name: str) -> bool:
        """True when this process claimed ``name`` but the stored claim is no longer its own (taken over after its
        heartbeat lapsed): check before committing work."""
        held = self._held.get(name)
        current = self.read(name)
        return held is not None and (current is None or current.token != held.token)

    def release(self, name: str) -> None:
        with self._lock:  # not while the heartbeat rewrites it
            held = self._held.pop(name, None)
            if held is not None:
                self._delete_if(name, held.token)

    @contextmanager
    def holding(self, name: str, wait_s: float = 0.05) -> Iterator[Claimant]:
        """Hold ``name`` for a short critical section, waiting while another live writer holds it."""
        while (claimant := self.try_claim(name)) is None:
            time.sleep(wait_s)
        try:
            yield claimant
        finally:
            self.release(name)

    def listed(self) -> list[dict[str, Any]]:
        """Every claim present in the store, live or ``stale`` (for ``info``)."""
        async def keys() -> list[str]:
            return [key async for key in self.zarr_store.list_prefix(f"{CLAIMS_PREFIX}/") if key.endswith(".json")]

        found = []
        for key in sync(keys()):
            name = key.removeprefix(f"{CLAIMS_PREFIX}/").removesuffix(".json")
            if (claimant := self.read(name)) is not None:
                found.append({"name": name, **asdict(claimant), "stale": claimant.is_stale(self.stale_after_s)})
        return found

    def _delete_if(self, name: str, token: str) -> None:
        current = self.read(name)
        if current is not None and current.token == token:
            sync(self.zarr_store.delete(self._key(name)))
        if self.atomic:  # leave no empty .claims folder behind (zarr would list it as a stray member)
            try:
                os.rmdir(os.path.join(str(self.zarr_store.root), CLAIMS_PREFIX))
            except OSError:
                pass

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(target=self._beat, name="affectsync-claims", daemon=True)
                self._heartbeat.start()

    def _beat(self) -> None:
        """Refresh every held claim's heartbeat, every quarter of the stale timeout, while any is held."""
        while True:
            time.sleep(self.stale_after_s / 4)
            with self._lock:
                if not self._held:
                    return
                for name, claimant in self._held.items():
                    current = self.read(name)
                    if current is not None and current.token == claimant.token:
                        self._write(name, Claimant(**{**asdict(claimant), "heartbeat_s": time.time()}),
                                    exclusive=False)
