"""Validate Alertmanager webhook payloads (version 4) into plain dataclasses.

Alertmanager's webhook body is documented at
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config. Only
what the remediator uses is required: ``version`` "4", ``status``, ``alerts``
and, per alert, ``status``, ``labels`` and ``startsAt``. Everything else is kept
when well formed and ignored otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("firing", "resolved")
MAX_TRUNCATED = 2**64 - 1
"""Alertmanager's ``truncatedAlerts`` is a uint64: anything larger is not from it."""

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


class PayloadError(ValueError):
    """The body is JSON but not an Alertmanager v4 notification; the message says why."""


@dataclass(frozen=True)
class Alert:
    """One alert of a notification."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Notification:
    """One webhook notification: a group of alerts for one receiver."""

    version: str
    status: str
    receiver: str
    group_key: str
    alerts: tuple[Alert, ...]
    truncated_alerts: int = 0
    group_labels: Mapping[str, str] = field(default_factory=dict)
    common_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's own fingerprint of a label set: FNV-1a 64 over the sorted labels.

    This is ``model.LabelSet.Fingerprint`` from prometheus/common, so a payload
    without a fingerprint gets the one Alertmanager would have sent.
    """
    value = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                value = ((value ^ byte) * _FNV_PRIME) & _MASK
            value = ((value ^ 0xFF) * _FNV_PRIME) & _MASK
    return f"{value:016x}"


def _unicode(text: str, where: str) -> str:
    # JSON may carry lone surrogates ("\\ud800"); they cannot be stored or hashed as UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{where} is not valid Unicode (lone surrogate)") from None
    return text


def _string_map(value: object, where: str, *, required: bool) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object of strings")
    for key, item in value.items():
        _unicode(key, f"{where} key")
        if not isinstance(item, str):
            raise PayloadError(f"{where}.{key} must be a string")
        _unicode(item, f"{where}.{key}")
    return dict(value)


def _string(value: object, where: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be a string")
    return _unicode(value, where)


def _alert(raw: object, index: int, default_status: str) -> Alert:
    where = f"alerts[{index}]"
    if not isinstance(raw, dict):
        raise PayloadError(f"{where} must be an object")
    labels = _string_map(raw.get("labels"), f"{where}.labels", required=True)
    status = _string(raw.get("status"), f"{where}.status", default_status)
    if status not in STATUSES:
        raise PayloadError(f"{where}.status must be firing or resolved")
    starts_at = _string(raw.get("startsAt"), f"{where}.startsAt")
    if not starts_at:
        raise PayloadError(f"{where}.startsAt is required")
    given = _string(raw.get("fingerprint"), f"{where}.fingerprint")
    return Alert(
        status=status,
        labels=labels,
        annotations=_string_map(raw.get("annotations"), f"{where}.annotations", required=False),
        starts_at=starts_at,
        ends_at=_string(raw.get("endsAt"), f"{where}.endsAt"),
        generator_url=_string(raw.get("generatorURL"), f"{where}.generatorURL"),
        fingerprint=given or fingerprint(labels),
    )


def _header(data: Any) -> tuple[str, list[Any], int]:
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object (an Alertmanager notification)")
    version = data.get("version")
    if version not in ("4", 4):
        raise PayloadError(f'version must be "4" (Alertmanager webhook v4), not {version!r}')
    status = data.get("status")
    if status not in STATUSES:
        raise PayloadError("status must be firing or resolved")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts must be a list")
    truncated = data.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if (
        isinstance(truncated, bool)
        or not isinstance(truncated, int)
        or not 0 <= truncated <= MAX_TRUNCATED
    ):
        raise PayloadError(f"truncatedAlerts must be an integer from 0 to {MAX_TRUNCATED}")
    _string(data.get("receiver"), "receiver")
    _string(data.get("groupKey"), "groupKey")
    return status, alerts, truncated


def _notification(data: dict[str, Any], alerts: tuple[Alert, ...], truncated: int) -> Notification:
    return Notification(
        version="4",
        status=data["status"],
        receiver=_string(data.get("receiver"), "receiver"),
        group_key=_string(data.get("groupKey"), "groupKey"),
        alerts=alerts,
        truncated_alerts=truncated,
        group_labels=_string_map(data.get("groupLabels"), "groupLabels", required=False),
        common_labels=_string_map(data.get("commonLabels"), "commonLabels", required=False),
        external_url=_string(data.get("externalURL"), "externalURL"),
    )


def parse_notification(data: Any) -> Notification:
    """Validate a decoded JSON body; raise :class:`PayloadError` naming the first problem."""
    status, raw_alerts, truncated = _header(data)
    alerts = tuple(_alert(raw, i, status) for i, raw in enumerate(raw_alerts))
    return _notification(data, alerts, truncated)


async def parse_notification_sliced(data: Any, slice_size: int = 200) -> Notification:
    """:func:`parse_notification`, yielding to the event loop every ``slice_size`` alerts."""
    status, raw_alerts, truncated = _header(data)
    alerts = []
    for i, raw in enumerate(raw_alerts):
        alerts.append(_alert(raw, i, status))
        if i % slice_size == slice_size - 1:
            await asyncio.sleep(0)
    return _notification(data, tuple(alerts), truncated)
