"""The usage log: one row per finished request in ``usage.sqlite3`` in the data dir, and the
totals ``get_usage_stats`` reports from it.

Durability: each ``record`` is its own committed transaction, written on the caller's thread
before it returns. The database is in WAL mode with ``synchronous=NORMAL``: a commit is a
``write()`` of the WAL frames into the OS page cache without an fsync, so it survives the
*process* being killed at any moment (the kernel owns the bytes); only a power cut or an OS
crash can lose the last commits, never corrupt the file. A record costs tens of microseconds,
so it runs inline on the event loop rather than through a writer thread and a queue, which would
leave an acknowledged record in memory, lost if the process died. What does cost milliseconds,
copying the WAL back into the database with its fsyncs (a checkpoint), is taken off the writer
and done by a short-lived thread every ``CHECKPOINT_EVERY`` records.

Costs are estimated from the catalog's prices at record time and stored with the row, so a
later price change does not rewrite history; a cost the provider reported itself (``Usage.cost_usd``,
Claude Code's ``total_cost_usd``) is recorded as it is instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec import UNSET

from .errors import SidecarError
from .storage import private_dir, private_file
from .types import UsageGroup, UsageStats, UsageStatsParams

if TYPE_CHECKING:
    import sqlite3

    from .engine import Outcome
    from .providers import Registry

log = logging.getLogger("sidecar.usage")

FILE_NAME = "usage.sqlite3"
SCHEMA_VERSION = 2
"""1: the first table; 2: ``estimated`` added (by ALTER TABLE in databases of version 1)"""
BUSY_TIMEOUT = 0.5
"""seconds a write waits for another process holding the database (two sidecars on one data dir)"""
CHECKPOINT_EVERY = 256
"""records between background checkpoints (each record adds a page or two to the WAL)"""

Prices = tuple[float, float] | tuple[float, float, float | None]
"""(input, output[, cached input]) in USD per 1M tokens"""
Price = Callable[[str, str], Prices | None]
"""(provider_id, model_id) -> the model's prices, or None: no price (it costs 0)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,                   -- started_at, Unix seconds
    kind TEXT NOT NULL,                 -- stream | complete | embed
    provider TEXT NOT NULL,
    model TEXT NOT NULL,                -- provider:model
    stream_id TEXT,
    latency_ms REAL,
    ttft_ms REAL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    finish_reason TEXT,
    error TEXT,                         -- error code; NULL when it ended with done
    retries INTEGER NOT NULL,
    cost_usd REAL NOT NULL,             -- estimated with the prices of the day
    estimated INTEGER NOT NULL DEFAULT 0  -- 1: the upstream reported no usage; the sidecar counted it
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""

_INSERT = (
    "INSERT INTO requests (ts, kind, provider, model, stream_id, latency_ms, ttft_ms, input_tokens, output_tokens,"
    " reasoning_tokens, cached_input_tokens, cache_creation_tokens, finish_reason, error, retries, cost_usd,"
    " estimated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_AGGREGATES = (
    "COUNT(*), COALESCE(SUM(error IS NOT NULL), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
    " COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cached_input_tokens), 0), COALESCE(SUM(cost_usd), 0),"
    " AVG(latency_ms), AVG(ttft_ms), COALESCE(SUM(estimated), 0)"
)

_GROUP_KEYS = {"provider": "provider", "model": "model", "day": "date(ts, 'unixepoch')"}

_BROKEN = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
"""error codes that mean the file itself is unusable: it is moved aside, not retried"""


class _Unusable(Exception):
    """The database exists but this version cannot use it (a newer schema)."""


def estimate_cost(price: Prices | None, input_tokens: int, output_tokens: int, cached: int) -> float:
    """USD for one request. Input counts include cached tokens (the protocols normalise it so)
    and output counts include reasoning; cached tokens cost the cached price where there is one."""
    if price is None:
        return 0.0
    inp, out, *rest = price
    cached_price = rest[0] if rest and rest[0] is not None else inp
    cached = max(0, min(cached, input_tokens))
    return ((input_tokens - cached) * inp + cached * cached_price + output_tokens * out) / 1_000_000


def catalog_prices(registry: Registry) -> Price:
    """Prices of the registry's catalog models; models it does not know (live lists, custom
    providers without prices) get None and cost 0."""

    def price(provider_id: str, model_id: str) -> tuple[float, float, float | None] | None:
        try:
            provider = registry.get(provider_id)
        except SidecarError:
            return None
        for m in provider.models:
            if m.id == model_id:
                if m.input_price is None or m.output_price is None:
                    return None
                return (m.input_price, m.output_price, m.cached_input_price)
        return None

    return price


def parse_since(since: str) -> float:
    """An ISO 8601 date or date-time as Unix seconds; UTC when it has no offset."""
    try:
        when = datetime.fromisoformat(since.strip())
    except ValueError:
        raise SidecarError(
            "invalid_request", f"since must be an ISO 8601 date or date-time (2025-01-31, 2025-01-31T12:00Z), "
            f"got {since[:64]!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class UsageStore:
    """The usage log. ``record`` is called on the event loop by the engine's observers; ``stats``
    may run in a worker thread (it reads through its own connection, which WAL lets run beside
    the writer without blocking it)."""

    def __init__(self, data_dir: Path, price: Price) -> None:
        self.data_dir = data_dir
        self.path = data_dir / FILE_NAME
        self._price = price
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        """guards the writer connection and moving the file aside"""
        self._unchecked = 0
        self._checkpointing = False

    def warm_up(self, delay: float = 1.0) -> None:
        """Import sqlite3 and open an existing database in a thread shortly after start-up, so
        neither start-up nor the first record pays for it. A missing file is still only created
        by the first record."""

        def run() -> None:
            time.sleep(delay)
            try:
                import sqlite3  # noqa: F401

                if self.path.exists():
                    with self._lock:
                        try:
                            self._writer()
                        except Exception as exc:
                            if not _unusable(exc):
                                raise
                            self._move_aside_locked(str(exc))
            except Exception as exc:
                log.warning("usage database %s could not be opened: %s", self.path, exc)

        threading.Thread(target=run, name="usage-warm-up", daemon=True).start()

    # --- writing -------------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        """Log one finished request, committed before this returns. Never raises: a usage log
        that cannot be written is reported on stderr, and the request it describes is unaffected."""
        try:
            row = self._row(outcome)
            with self._lock:
                try:
                    self._writer().execute(_INSERT, row)
                except Exception as exc:
                    if not _unusable(exc):
                        raise
                    self._move_aside_locked(str(exc))
                    self._writer().execute(_INSERT, row)
                self._unchecked += 1
                if self._unchecked >= CHECKPOINT_EVERY and not self._checkpointing:
                    self._unchecked = 0
                    self._checkpointing = True
                    threading.Thread(target=self._checkpoint, name="usage-checkpoint", daemon=True).start()
        except Exception as exc:
            log.warning("usage of a %s request to %s not recorded: %s", outcome.kind, outcome.model, exc)

    def _row(self, o: Outcome) -> tuple[Any, ...]:
        u = o.usage
        inp = u.input_tokens if u else 0
        out = u.output_tokens if u else 0
        reasoning = u.reasoning_tokens if u and u.reasoning_tokens is not UNSET else 0
        cached = u.cached_input_tokens if u and u.cached_input_tokens is not UNSET else 0
        created = u.cache_creation_tokens if u and u.cache_creation_tokens is not UNSET else 0
        estimated = 1 if u and u.estimated is True else 0
        prefix = f"{o.provider}:"
        model_id = o.model[len(prefix):] if o.model.startswith(prefix) else o.model
        if u is not None and isinstance(u.cost_usd, float | int) and math.isfinite(u.cost_usd) and u.cost_usd >= 0:
            cost = float(u.cost_usd)  # what the provider said it cost (Claude Code): better than an estimate
        else:
            cost = estimate_cost(self._price(o.provider, model_id), inp, out, cached) if inp or out else 0.0
        return (
            o.started_at, o.kind, o.provider, o.model, o.stream_id, _finite(o.latency_ms), _finite(o.ttft_ms),
            inp, out, reasoning, cached, created, o.finish_reason, o.error, o.retries, cost, estimated,
        )

    def _checkpoint(self) -> None:
        """Copy the WAL into the database from another connection; PASSIVE never blocks the writer,
        which starts the WAL over from the beginning once a checkpoint has caught up."""
        try:
            db = _connect(self.path)
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                db.close()
        except Exception as exc:
            log.info("usage database checkpoint failed: %s", exc)
        finally:
            self._checkpointing = False

    def _writer(self) -> sqlite3.Connection:
        """The writer connection, opening (and creating) the database on first use."""
        if self._db is None:
            private_dir(self.data_dir)
            private_file(self.path)  # 0600 before SQLite opens it: SQLite gives -wal and -shm the db's mode
            for suffix in ("-wal", "-shm"):  # left by an older version with a wider mode
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{self.path}{suffix}", 0o600)
            self._db = _connect(self.path)
            try:
                _prepare(self._db)
            except BaseException:
                self._db.close()
                self._db = None
                raise
        return self._db

    def _move_aside_locked(self, reason: str) -> None:
        """Keep an unusable database (and its WAL) under another name, so a new one can start."""
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():  # never over an earlier one kept the same second
            n += 1
            aside = aside.with_name(f"{FILE_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("usage database %s is unusable (%s) and could not be moved: %s", self.path, reason, exc)
            raise
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        log.error("usage database %s is unusable (%s); kept it as %s and started a new one",
                  self.path, reason, aside.name)

    def close(self) -> None:
        """Close the writer (which checkpoints the WAL into the database). Records already
        committed are safe without it; a later ``record`` would open the database again."""
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(Exception):
                    self._db.close()
                self._db = None

    # --- reading ---------------------------------------------------------------------------

    def stats(self, params: UsageStatsParams) -> UsageStats:
        """Totals since ``params.since`` (everything when absent), and groups when asked."""
        since = parse_since(params.since) if isinstance(params.since, str) else -math.inf
        group_by = params.group_by if isinstance(params.group_by, str) else None
        empty = UsageStats(total=_group("total", None), groups=[])
        if not self.path.exists():
            return empty  # nothing recorded yet; reading must not create the file
        try:
            return self._query(since, group_by) or empty
        except Exception as exc:
            if not _unusable(exc):
                log.error("usage database %s could not be read: %s", self.path, exc)
                raise SidecarError("internal", "the usage log could not be read") from None
            with self._lock:
                self._move_aside_locked(str(exc))
            return empty

    def _query(self, since: float, group_by: str | None) -> UsageStats | None:
        db = _connect(self.path)
        try:
            db.execute("BEGIN")  # one snapshot for the total and the groups
            if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests'").fetchone():
                return None
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _Unusable("written by a newer version of the sidecar")
            # a version-1 file not yet opened for writing (which adds the column) has no estimated records
            aggregates = _AGGREGATES if version >= 2 else _AGGREGATES.replace("SUM(estimated)", "SUM(0)")
            where = " WHERE ts >= ?"
            total = db.execute(f"SELECT {aggregates} FROM requests{where}", (since,)).fetchone()
            groups: list[UsageGroup] = []
            if group_by is not None:
                key = _GROUP_KEYS[group_by]
                sql = f"SELECT {key} AS k, {aggregates} FROM requests{where} GROUP BY k ORDER BY k"
                groups = [_group(str(r[0]), r[1:]) for r in db.execute(sql, (since,))]
            db.execute("COMMIT")
            return UsageStats(total=_group("total", total), groups=groups)
        finally:
            db.close()


def _connect(path: Path) -> sqlite3.Connection:
    import sqlite3

    # autocommit: every INSERT is its own committed transaction
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)


def _prepare(db: sqlite3.Connection) -> None:
    """WAL, NORMAL sync, and the table; refuses a database of a newer schema."""
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run in a thread (UsageStore._checkpoint)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise _Unusable(f"schema version {version} is newer than this sidecar's {SCHEMA_VERSION}")
    if version < SCHEMA_VERSION:
        migrate = ""
        if version == 1 and "estimated" not in {r[1] for r in db.execute("PRAGMA table_info(requests)")}:
            migrate = "ALTER TABLE requests ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;"
        db.executescript(f"BEGIN; {_SCHEMA} {migrate} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")


def _unusable(exc: Exception) -> bool:
    return isinstance(exc, _Unusable) or getattr(exc, "sqlite_errorname", None) in _BROKEN


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _group(key: str, row: tuple[Any, ...] | None) -> UsageGroup:
    if row is None:
        return UsageGroup(key=key, requests=0, errors=0, input_tokens=0, output_tokens=0, reasoning_tokens=0,
                          cached_input_tokens=0, cost_usd=0.0)
    requests, errors, inp, out, reasoning, cached, cost, latency, ttft, estimated = row
    return UsageGroup(
        key=key,
        requests=requests,
        errors=errors,
        input_tokens=inp,
        output_tokens=out,
        reasoning_tokens=reasoning,
        cached_input_tokens=cached,
        cost_usd=round(cost, 9),
        estimated_requests=estimated,
        avg_latency_ms=UNSET if latency is None else round(latency, 3),
        avg_ttft_ms=UNSET if ttft is None else round(ttft, 3),
    )
