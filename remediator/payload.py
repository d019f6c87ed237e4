"""Alertmanager webhook payloads (version 4): pydantic models in, plain dataclasses out.

Alertmanager's webhook body is documented at
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config. Only
what the remediator uses is required: ``version`` "4", ``status``, ``alerts``
and, per alert, ``labels`` and ``startsAt``. The other documented fields are
checked when present (a string where a string belongs); unknown keys are ignored.
The first problem becomes a :class:`PayloadError` naming the field
(``alerts[3].labels.panel must be a string``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

MAX_TRUNCATED = 2**64 - 1
"""Alertmanager's ``truncatedAlerts`` is a uint64: anything larger is not from it."""

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1

# Any string constraint makes pydantic-core read the text as UTF-8, which refuses a lone
# surrogate (a JSON escape such as "\ud800" that nothing downstream can store or hash).
Text = Annotated[str, StringConstraints(max_length=1024 * 1024)]
Labels = dict[Text, Text]
Status = Literal["firing", "resolved"]


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


# Strict: "3" is no count and 1 no string. Unknown keys are left out.
_STRICT = ConfigDict(strict=True, extra="ignore")


class AlertIn(TypedDict):
    """One alert as Alertmanager sends it (JSON names); ``status`` defaults to the
    notification's. A TypedDict, not a model: 13,000 alerts validate 4x faster as dicts."""

    __pydantic_config__ = _STRICT  # type: ignore[misc]
    status: NotRequired[Status | None]
    labels: Labels
    annotations: NotRequired[Labels | None]
    startsAt: NotRequired[Annotated[Text, Field(min_length=1)] | None]
    endsAt: NotRequired[Text | None]
    generatorURL: NotRequired[Text | None]
    fingerprint: NotRequired[Text | None]


class NotificationIn(BaseModel):
    """The notification around the alerts; the alerts are read apart, a slice at a time."""

    model_config = _STRICT

    version: Literal["4", 4]
    status: Status
    alerts: list[Any]
    truncated_alerts: Annotated[int, Field(ge=0, le=MAX_TRUNCATED)] | None = Field(
        None, alias="truncatedAlerts"
    )
    receiver: Text | None = None
    group_key: Text | None = Field(None, alias="groupKey")
    group_labels: Labels | None = Field(None, alias="groupLabels")
    common_labels: Labels | None = Field(None, alias="commonLabels")
    external_url: Text | None = Field(None, alias="externalURL")


_ALERTS = TypeAdapter(list[AlertIn])
# What a field must be, where the generic "must be a string" would say less.
_MUST = {
    "status": "must be firing or resolved",
    "truncatedAlerts": f"must be an integer from 0 to {MAX_TRUNCATED}",
    "alerts": "must be a list",
    "labels": "must be an object of strings",
    "annotations": "must be an object of strings",
    "groupLabels": "must be an object of strings",
    "commonLabels": "must be an object of strings",
}


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


def _where(loc: Sequence[int | str]) -> str:
    """``("alerts", 3, "labels", "a")`` as ``alerts[3].labels.a``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            # A label name from the body: bounded, and a lone surrogate spelt out.
            name = part[:100].encode("utf-8", "backslashreplace").decode()
            out += f".{name}" if out else name
    return out


def _reason(error: ErrorDetails, loc: tuple[int | str, ...]) -> str:
    """One pydantic error at ``loc`` (the body's path) as the sentence the client gets."""
    where, kind = _where(loc), error["type"]
    if not loc:
        return "the body must be a JSON object (an Alertmanager notification)"
    if loc == ("version",):
        given = None if kind == "missing" else error["input"]
        return f'version must be "4" (Alertmanager webhook v4), not {given!r:.40}'
    if loc[0] == "alerts" and len(loc) == 2:  # the alert itself
        return f"{where} must be an object"
    if kind == "string_unicode" and loc[-1] == "[key]":
        return f"{_where(loc[:-2])} key is not valid Unicode (lone surrogate)"
    if kind == "string_unicode":
        return f"{where} is not valid Unicode (lone surrogate)"
    if kind == "missing" or (loc[-1] == "startsAt" and kind == "string_too_short"):
        return f"{where} is required"
    # The body's own field (version, alerts...) or an alert's (labels, startsAt...);
    # anything deeper is a value inside a label map.
    name = loc[0] if loc[0] != "alerts" or len(loc) == 1 else loc[2]
    if loc[-1] == name:
        return f"{where} {_MUST.get(str(name), 'must be a string')}"
    return f"{where} must be a string"


def _alert(raw: AlertIn, default_status: str) -> Alert:
    labels = raw["labels"]
    return Alert(
        status=raw.get("status") or default_status,
        labels=labels,
        annotations=raw.get("annotations") or {},
        starts_at=raw.get("startsAt") or "",
        ends_at=raw.get("endsAt") or "",
        generator_url=raw.get("generatorURL") or "",
        fingerprint=raw.get("fingerprint") or fingerprint(labels),
    )


def _header(data: Any) -> NotificationIn:
    try:
        return NotificationIn.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise PayloadError(_reason(error, error["loc"])) from None


def _alerts(raw: list[Any], first: int, status: str) -> list[Alert]:
    """``raw`` (the alerts from index ``first`` on) validated; PayloadError on the first bad."""
    try:
        alerts = _ALERTS.validate_python(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        index, *inside = error["loc"]
        assert isinstance(index, int)
        raise PayloadError(_reason(error, ("alerts", first + index, *inside))) from None
    out = []
    for index, alert in enumerate(alerts):
        if not alert.get("startsAt"):
            raise PayloadError(f"alerts[{first + index}].startsAt is required")
        out.append(_alert(alert, status))
    return out


def _notification(head: NotificationIn, alerts: list[Alert]) -> Notification:
    return Notification(
        version="4",
        status=head.status,
        receiver=head.receiver or "",
        group_key=head.group_key or "",
        alerts=tuple(alerts),
        truncated_alerts=head.truncated_alerts or 0,
        group_labels=head.group_labels or {},
        common_labels=head.common_labels or {},
        external_url=head.external_url or "",
    )


def parse_notification(data: Any) -> Notification:
    """Validate a decoded JSON body; raise :class:`PayloadError` naming the first problem."""
    head = _header(data)
    return _notification(head, _alerts(head.alerts, 0, head.status))


async def parse_notification_sliced(data: Any, slice_size: int = 200) -> Notification:
    """:func:`parse_notification`, yielding to the event loop every ``slice_size`` alerts
    (a 1 MiB body holds up to about 13,000 alerts: the loop keeps answering meanwhile)."""
    head = _header(data)
    alerts: list[Alert] = []
    for first in range(0, len(head.alerts), slice_size):
        alerts += _alerts(head.alerts[first : first + slice_size], first, head.status)
        await asyncio.sleep(0)
    return _notification(head, alerts)
