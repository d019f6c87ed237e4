"""Alertmanager v4 payload validation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from remediator.payload import (
    PayloadError,
    fingerprint,
    parse_notification,
    parse_notification_sliced,
)


def payload(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "4",
        "groupKey": '{}:{alertname="X"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {"alertname": "X"},
        "commonLabels": {"alertname": "X"},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "X", "panel": "web01"},
                "annotations": {"summary": "s"},
                "startsAt": "2026-11-25T08:00:00.123Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom/graph",
                "fingerprint": "c0ffee0000000001",
            }
        ],
    }
    body.update(over)
    return body


def test_a_full_v4_payload_parses() -> None:
    n = parse_notification(payload())
    assert n.status == "firing" and n.receiver == "remediator"
    (a,) = n.alerts
    assert a.alertname == "X" and a.labels["panel"] == "web01"
    assert a.fingerprint == "c0ffee0000000001" and a.starts_at.endswith(".123Z")


def test_fingerprint_is_computed_from_sorted_labels_when_absent() -> None:
    body = payload()
    del body["alerts"][0]["fingerprint"]
    (a,) = parse_notification(body).alerts
    assert a.fingerprint == fingerprint({"panel": "web01", "alertname": "X"})
    assert len(a.fingerprint) == 16


def test_fingerprint_matches_prometheus_labelset_fingerprint() -> None:
    # Value from prometheus/common model.LabelSet{"alertname": "X"}.Fingerprint() computation
    # (FNV-1a 64 over name, 0xff, value, 0xff); the empty set is the FNV offset basis.
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})


def test_truncated_alerts_are_read() -> None:
    assert parse_notification(payload(truncatedAlerts=7)).truncated_alerts == 7


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        (payload(version="3"), "version"),
        (payload(version=None), "version"),
        (payload(status="weird"), "status"),
        ({k: v for k, v in payload().items() if k != "alerts"}, "alerts"),
        (payload(alerts={"a": 1}), "alerts"),
        (payload(alerts=[1]), "alerts[0] must be an object"),
        (payload(alerts=[{"status": "firing", "startsAt": "x"}]), "alerts[0].labels"),
        (payload(alerts=[{"labels": {"a": 1}, "startsAt": "x"}]), "alerts[0].labels.a"),
        (payload(alerts=[{"labels": {}, "status": "firing"}]), "startsAt"),
        (payload(alerts=[{"labels": {}, "startsAt": "x", "status": "x"}]), "alerts[0].status"),
        (payload(truncatedAlerts=-1), "truncatedAlerts"),
        (payload(truncatedAlerts="3"), "truncatedAlerts"),
    ],
)
def test_bad_payloads_name_the_problem(body: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_notification(body)


def test_alert_status_defaults_to_the_notification_status() -> None:
    body = payload(status="resolved", alerts=[{"labels": {}, "startsAt": "x"}])
    assert parse_notification(body).alerts[0].status == "resolved"


def test_lone_surrogates_are_a_payload_error_not_a_crash() -> None:
    for raw in (
        '{"version":"4","status":"firing","alerts":[{"labels":{"panel":"p\\udc00"},"startsAt":"a"}]}',
        '{"version":"4","status":"firing","alerts":[{"labels":{"p\\ud800":"x"},"startsAt":"a"}]}',
        '{"version":"4","status":"firing","alerts":[{"labels":{"a":"b"},"startsAt":"\\ud800"}]}',
    ):
        with pytest.raises(PayloadError, match="not valid Unicode"):
            parse_notification(json.loads(raw))


def test_a_reason_quotes_a_long_label_name_bounded() -> None:
    # The reason goes back to the client and into the log: a 100 kB label name is cut.
    name = "n" * 100_000
    with pytest.raises(PayloadError) as raised:
        parse_notification(payload(alerts=[{"labels": {name: 1}, "startsAt": "x"}]))
    assert str(raised.value) == f"alerts[0].labels.{'n' * 100} must be a string"


def test_a_bad_alert_deep_in_a_big_notification_is_named_by_its_index() -> None:
    good = {"labels": {"alertname": "X"}, "startsAt": "x"}
    body = payload(alerts=[good] * 450 + [{"labels": {"alertname": "X"}, "startsAt": ""}])
    with pytest.raises(PayloadError, match=r"^alerts\[450\]\.startsAt is required$"):
        asyncio.run(parse_notification_sliced(body, 200))
