"""Poll every panel on a schedule and write the results into the shared state.

Per panel, job A (every ``interval``) runs ``count_msg`` and each daemon's ``status``
concurrently, so one poll costs one round trip; job B (every ``list_interval``, 0 = off)
fetches ``list_msg`` and has a worker process read it (:mod:`brainycp.queue.worker`): the
event loop never decodes or reads a listing, so scrapes, probes and other panels' polls
never wait for one. A semaphore bounds the panels in flight, another the listings fetched
or read at once (each can be up to ``max_response_bytes``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from brainycp.config.panels import PanelConfig
from brainycp.panel.answers import ServiceStatus
from brainycp.panel.client import PanelClient
from brainycp.panel.errors import BrainyCPError
from brainycp.queue import Reading, ReadOptions
from brainycp.queue.worker import ListingReaders, ReadingFailed, ReadJob, shared_readers
from exporter.settings import Config
from exporter.state import ExporterState, PanelState
from exporter.values import BadValue, check_count, check_senders, check_summary

log = logging.getLogger("exporter.poller")

# Every panel is polled once within this many seconds of a start, spread so that
# 300 panels do not fire in the same second.
MAX_START_SPREAD = 5.0

TransportFactory = Callable[[PanelConfig], httpx.AsyncBaseTransport | None]


def panel_interval(config: Config, panel: PanelConfig) -> float:
    """The count/status interval of ``panel`` (its own or the exporter's)."""
    return panel.interval if panel.interval is not None else config.exporter.interval


def panel_list_interval(config: Config, panel: PanelConfig) -> float:
    """The list_msg interval of ``panel``; 0 means list_msg is not polled."""
    if panel.list_interval is not None:
        return panel.list_interval
    return config.exporter.list_interval


def initial_state(config: Config) -> ExporterState:
    """Empty state for every panel of ``config`` (pass a :func:`~exporter.shard.shard_config`)."""
    return ExporterState.for_panels(
        (
            PanelState(
                name=name,
                daemons=tuple(panel.daemons),
                list_enabled=panel_list_interval(config, panel) > 0,
                labels=panel.labels,
            )
            for name, panel in config.panels.items()
        ),
        max_staleness=config.exporter.max_staleness,
        top_senders=config.exporter.top_senders,
        shard=config.exporter.shard,
        top_recipient_domains=config.exporter.top_recipient_domains,
        grafana_url=config.exporter.grafana_url,
    )


class Poller:
    """One :class:`PanelClient` per panel, the jobs that use them, and the shared state."""

    def __init__(
        self,
        config: Config,
        state: ExporterState,
        *,
        transport_factory: TransportFactory | None = None,
        readers: ListingReaders | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.semaphore = asyncio.Semaphore(config.exporter.max_concurrency)
        self.readers = readers or shared_readers()
        # Listings fetched or being read at once (each up to max_response_bytes): every
        # worker busy and as many on the way, and at least 4 so that slow panels' fetches
        # do not hold up a big fleet's list polls.
        self.listings = asyncio.Semaphore(max(4, 2 * self.readers.slots))
        self.clients: dict[str, PanelClient] = {
            name: PanelClient(
                panel, transport=transport_factory(panel) if transport_factory else None
            )
            for name, panel in config.panels.items()
        }
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._transport_factory = transport_factory
        self._failing: dict[tuple[str, str], tuple[int, str]] = {}
        """Failed polls in a row and the last reason, by (panel, operation), while failing."""
        self._scheduler: AsyncIOScheduler | None = None
        self._rng = random.Random()
        self._running: set[str] = set()
        """Jobs in flight, as ``job:panel``."""
        self._list_polls: dict[str, asyncio.Task[Any]] = {}
        """The list poll in flight per panel: a panel removed at reload cancels its own."""
        self._tracebacks_logged: set[tuple[str, str]] = set()
        """``(panel, operation)`` whose internal error was logged with its traceback."""

    # ------------------------------------------------------------------ one poll

    def _failed(
        self, panel: PanelState, operation: str, elapsed: float, reason: str, detail: str
    ) -> bool:
        panel.record_failure(operation, time.time(), elapsed, reason, detail)
        self._note_failure(panel.name, operation, reason, detail)
        return False

    def _note_failure(self, panel: str, operation: str, reason: str, detail: str) -> None:
        """Log when an operation starts failing (or fails for a new reason), not every poll."""
        key = (panel, operation)
        count, last_reason = self._failing.get(key, (0, ""))
        self._failing[key] = (count + 1, reason)
        extra = {"panel": panel, "operation": operation, "reason": reason, "detail": detail}
        if count == 0 or reason != last_reason:
            log.warning("poll failing", extra=extra)
        else:
            log.debug("poll still failing", extra={**extra, "failed_polls": count + 1})

    def _note_success(self, panel: str, operation: str) -> None:
        """Log the recovery of an operation that was failing, with how many polls failed."""
        failed = self._failing.pop((panel, operation), None)
        if failed is not None:
            log.info(
                "poll recovered",
                extra={"panel": panel, "operation": operation, "failed_polls": failed[0]},
            )

    def _traceback_once(
        self, panel: PanelState, operation: str, message: str, exc: BaseException
    ) -> None:
        """Log ``message`` with the traceback of ``exc``, once per panel and operation."""
        key = (panel.name, operation)
        if key not in self._tracebacks_logged:
            self._tracebacks_logged.add(key)
            log.error(message, exc_info=exc, extra={"panel": panel.name, "operation": operation})

    def _internal(
        self, panel: PanelState, operation: str, elapsed: float, exc: BaseException
    ) -> bool:
        """An exception that is our bug, not the panel's: ``reason="internal"``.

        Its traceback is logged once per panel and operation; repeats are one line each.
        """
        self._traceback_once(panel, operation, "poll failed on an internal error", exc)
        detail = type(exc).__name__
        panel.record_failure(operation, time.time(), elapsed, "internal", detail)
        log.warning(
            "poll failed",
            extra={
                "panel": panel.name,
                "operation": operation,
                "reason": "internal",
                "detail": detail,
            },
        )
        return False

    async def _timed(
        self,
        panel: PanelState,
        operation: str,
        call: Awaitable[Any],
        store: Callable[[Any], None],
    ) -> bool:
        """Await ``call``; on success ``store`` its value and record the success together.

        Storing and recording happen in one step of the event loop, so a scrape never sees
        a new success time with an old value. Every exception is a recorded failure: a
        value ``store`` refuses (:class:`~exporter.values.BadValue`) or a listing the
        parser cannot use is ``bad_detail``; any other exception is ``internal``. The last
        good value stays.
        """
        started = time.perf_counter()
        try:
            value = await call
        except ReadingFailed as exc:
            elapsed = time.perf_counter() - started
            if exc.reason == "internal":
                log.error(
                    "the listing reader failed",
                    extra={"panel": panel.name, "operation": operation, "detail": exc.detail},
                )
            return self._failed(panel, operation, elapsed, exc.reason, exc.detail)
        except (BrainyCPError, httpx.HTTPError) as exc:
            elapsed = time.perf_counter() - started
            if isinstance(exc, BrainyCPError):
                return self._failed(panel, operation, elapsed, exc.reason, exc.detail)
            # httpx errors the client does not map (e.g. a bad content encoding) count as connect.
            return self._failed(panel, operation, elapsed, "connect", type(exc).__name__)
        except Exception as exc:
            return self._internal(panel, operation, time.perf_counter() - started, exc)
        try:
            store(value)
        except BadValue as exc:
            return self._failed(
                panel, operation, time.perf_counter() - started, "bad_detail", str(exc)
            )
        except Exception as exc:
            # The parser is meant never to raise; if it does, the answer is unusable.
            elapsed = time.perf_counter() - started
            self._traceback_once(panel, operation, "the parser raised on an answer", exc)
            detail = f"answer not usable: {type(exc).__name__}"
            return self._failed(panel, operation, elapsed, "bad_detail", detail)
        # The duration covers the parse too: it is what the panel costs this exporter.
        panel.record_success(operation, time.time(), time.perf_counter() - started)
        self._note_success(panel.name, operation)
        return True

    async def poll_status(self, name: str) -> bool:
        """count_msg and every daemon's status of one panel, concurrently; True if all succeeded."""
        panel = self.state.panels[name]
        client = self.clients[name]

        def store_count(count: int) -> None:
            panel.queue_messages = check_count(count, "count_msg detail")

        def store_status(status: ServiceStatus) -> None:
            panel.daemon_states[status.daemon] = status.state

        async with self.semaphore:
            results = await asyncio.gather(
                self._timed(panel, "count_msg", client.count_msg(), store_count),
                *(
                    self._timed(panel, daemon, client.service(daemon, "status"), store_status)
                    for daemon in panel.daemons
                ),
            )
        log.debug("polled status", extra={"panel": name})
        return all(results)

    async def poll_list(self, name: str) -> bool:
        """list_msg of one panel, read in a worker; True if it succeeded."""
        panel = self.state.panels[name]
        client = self.clients[name]
        top = self.state.top_senders
        top_domains = self.state.top_recipient_domains
        job = ReadJob(name, 0.0, self.config.panels[name].zone, ReadOptions(top, top_domains))

        async def fetch_and_read() -> Reading:
            fetched = [await client.list_msg_body()]
            # Ages count from when the listing arrived; the body leaves this frame with the
            # call, so it is freed as soon as a worker has it.
            return await self.readers.read(replace(job, now=time.time()), fetched.pop())

        def store_reading(reading: Reading) -> None:
            summary = check_summary(reading.summary)
            senders = check_senders(reading.top_senders) if top > 0 else ()
            domains = check_senders(reading.top_recipient_domains) if top_domains > 0 else ()
            panel.summary, panel.top_senders = summary, senders
            panel.top_recipient_domains = domains

        task = asyncio.current_task()
        if task is not None:
            self._list_polls[name] = task
        try:
            # The listing slot first: a poll waiting for one holds no panel slot.
            async with self.listings, self.semaphore:
                ok = await self._timed(panel, "list_msg", fetch_and_read(), store_reading)
        finally:
            if task is not None and self._list_polls.get(name) is task:
                del self._list_polls[name]
        log.debug("polled list", extra={"panel": name, "ok": ok})
        return ok

    async def poll_once(self) -> bool:
        """Poll every panel once (status, and list where enabled); True if every poll succeeded."""
        jobs: list[Awaitable[bool]] = []
        for name, panel in self.config.panels.items():
            jobs.append(self.poll_status(name))
            if panel_list_interval(self.config, panel) > 0:
                jobs.append(self.poll_list(name))
        results = await asyncio.gather(*jobs)
        return all(results)

    # ------------------------------------------------------------------ schedule

    async def _tracked(self, job: Callable[[str], Awaitable[bool]], name: str) -> None:
        key = f"{job.__name__}:{name}"
        if key in self._running:
            # The start-up poll and the first scheduled run of a slow panel can meet.
            log.debug("poll still running, skipped", extra={"panel": name, "job": key})
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._running.add(key)
        try:
            await job(name)
        except asyncio.CancelledError:
            if name in self.config.panels:
                raise
            # The panel was removed at reload and its poll cancelled: nothing to report.
            log.debug("poll cancelled, panel removed", extra={"panel": name, "job": key})
        except Exception as exc:
            # A bug outside one call must not kill the scheduler's job, nor leave the panel
            # looking healthy: it is an internal failure of the job's main operation.
            panel = self.state.panels.get(name)
            if panel is None:
                log.exception("poll crashed", extra={"panel": name})
            else:
                operation = "list_msg" if job.__name__ == "poll_list" else "count_msg"
                self._internal(panel, operation, 0.0, exc)
        finally:
            self._running.discard(key)
            if task is not None:
                self._tasks.discard(task)

    def schedule(self, scheduler: AsyncIOScheduler, *, rng: random.Random | None = None) -> None:
        """Add job A and (when enabled) job B of every panel.

        The recurring runs of each job start at a random offset within its interval, so
        the panels' polls stay spread out for as long as the exporter runs. When that
        offset is later than :data:`MAX_START_SPREAD`, a one-off run within the first
        seconds fills ``/metrics`` quickly after a start.
        """
        rng = rng or random.Random()
        self._scheduler, self._rng = scheduler, rng
        start = datetime.now(UTC)
        for name, panel in self.config.panels.items():
            self._schedule_panel(name, panel, start)

    def _schedule_panel(self, name: str, panel: PanelConfig, start: datetime) -> None:
        """(Re)add the jobs of one panel; see :meth:`schedule`."""
        scheduler, rng = self._scheduler, self._rng
        assert scheduler is not None, "schedule() first"
        for job, every in (
            (self.poll_status, panel_interval(self.config, panel)),
            (self.poll_list, panel_list_interval(self.config, panel)),
        ):
            if every <= 0:
                continue
            job_id = f"{job.__name__}:{name}"
            offset = rng.uniform(0, every)
            scheduler.add_job(
                self._tracked,
                "interval",
                seconds=every,
                args=(job, name),
                id=job_id,
                next_run_time=start + timedelta(seconds=offset),
                max_instances=1,
                coalesce=True,
                # A run late by less than one interval still runs; later ones are dropped.
                misfire_grace_time=max(1, int(every)),
                replace_existing=True,
            )
            if offset > MAX_START_SPREAD:
                scheduler.add_job(
                    self._tracked,
                    "date",
                    args=(job, name),
                    id=f"{job_id}:first",
                    run_date=start + timedelta(seconds=rng.uniform(0, MAX_START_SPREAD)),
                    misfire_grace_time=max(1, int(every)),
                    replace_existing=True,
                )

    def _unschedule_panel(self, name: str) -> None:
        assert self._scheduler is not None, "schedule() first"
        for job in (self.poll_status, self.poll_list):
            for job_id in (f"{job.__name__}:{name}", f"{job.__name__}:{name}:first"):
                if self._scheduler.get_job(job_id) is not None:
                    self._scheduler.remove_job(job_id)

    # ------------------------------------------------------------------ reload

    def apply(self, config: Config) -> None:
        """Switch to ``config`` without a restart (``SIGHUP``, ``POST /-/reload``).

        Added panels get jobs whose first run is within :data:`MAX_START_SPREAD`
        seconds; removed panels lose their jobs and their state, so their series
        leave ``/metrics``; a panel whose settings changed gets a new client (and
        new jobs when its intervals changed) but keeps its state and last values;
        unchanged panels are not touched. Polls in flight finish on the old client,
        which is closed afterwards.
        """
        old, self.config = self.config, config
        state = self.state
        state.max_staleness = config.exporter.max_staleness
        state.top_senders = config.exporter.top_senders
        state.top_recipient_domains = config.exporter.top_recipient_domains
        state.shard = config.exporter.shard
        state.grafana_url = config.exporter.grafana_url
        if config.exporter.max_concurrency != old.exporter.max_concurrency:
            self.semaphore = asyncio.Semaphore(config.exporter.max_concurrency)
        scheduled = self._scheduler is not None
        start = datetime.now(UTC)
        retired: list[PanelClient] = []
        for name in old.panels.keys() - config.panels.keys():
            state.panels.pop(name, None)
            poll = self._list_polls.pop(name, None)
            if poll is not None:
                poll.cancel()  # its reading stops too; nothing of it is stored
            for key in [k for k in self._failing if k[0] == name]:
                del self._failing[key]
            retired.append(self.clients.pop(name))
            if scheduled:
                self._unschedule_panel(name)
        for name, panel in config.panels.items():
            before = old.panels.get(name)
            list_enabled = panel_list_interval(config, panel) > 0
            if before is None:
                state.panels[name] = PanelState(
                    name=name,
                    daemons=tuple(panel.daemons),
                    list_enabled=list_enabled,
                    labels=panel.labels,
                )
            else:
                kept = state.panels[name]
                kept.daemons, kept.list_enabled = tuple(panel.daemons), list_enabled
                kept.labels = panel.labels
                for gone in set(kept.operations) - set(kept.operation_names()):
                    del kept.operations[gone]
                for gone in set(kept.daemon_states) - set(kept.daemons):
                    del kept.daemon_states[gone]
                if not list_enabled:
                    kept.summary, kept.top_senders = None, ()
            if before != panel:
                if before is not None:
                    retired.append(self.clients[name])
                factory = self._transport_factory
                self.clients[name] = PanelClient(
                    panel, transport=factory(panel) if factory else None
                )
            timing = (panel_interval(config, panel), panel_list_interval(config, panel))
            if scheduled and (
                before is None
                or timing != (panel_interval(old, before), panel_list_interval(old, before))
            ):
                self._unschedule_panel(name)
                self._schedule_panel(name, panel, start)
        state.refresh_info_labels()
        if retired:
            task = asyncio.get_running_loop().create_task(self._close_later(retired))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_later(self, clients: list[PanelClient]) -> None:
        in_flight = list(self._tasks)
        if in_flight:
            await asyncio.wait(in_flight)
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel polls in flight and close every client."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await asyncio.gather(
            *(client.aclose() for client in self.clients.values()), return_exceptions=True
        )
