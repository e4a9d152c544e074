"""Recording a merchant webhook event: the one function every event goes through.

    webhook_event_record(merchant_id=order.merchant_id, event_type="order.completed", subject=order)

Called inside the transaction of the change it reports (orders: `_transition` and the
wallet purchase), it writes one delivery row per active endpoint of the merchant subscribed
to that type, in ONE statement (`INSERT ... SELECT` from the endpoints), so a rolled-back
change leaves no event and a committed one always has its deliveries: the transactional
outbox. A merchant with no such endpoint gets no row, and the event is not even rendered
(most merchants have no endpoint; a sale's render would cost 0.2 ms inside its
transaction): only when deliveries were written is the body rendered and written to
them, by a second statement. After the commit, one task per
delivery is enqueued to wake a worker; should that be lost (a crash right after the
commit), the `kick_due_webhook_deliveries` job finds the delivery anyway.

The webhooks app knows nothing of orders: the app that owns a kind of subject registers
how the API renders it (`register_event_subject("order", render)`, from its AppConfig),
and this module wraps that in the event envelope `{"id","type","createdAt","data":{kind:
...}}`, camelCased and compact like every API answer.
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from rest_framework import serializers

from paymentflow.api.renderers import CamelCaseJSONRenderer
from webhooks.delivery import webhook_deliveries_kick
from webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint

_Delivery = WebhookDelivery._meta.db_table
_Endpoint = WebhookEndpoint._meta.db_table
# The few SQL pieces that differ between PostgreSQL and the embedded SQLite.
_NEW_UUID = {"postgresql": "gen_random_uuid()", "sqlite": "lower(hex(randomblob(16)))"}
_SUBSCRIBED = {
    "postgresql": "(jsonb_array_length(e.events) = 0 OR e.events @> jsonb_build_array(%s::text))",
    "sqlite": "(json_array_length(e.events) = 0 OR EXISTS (SELECT 1 FROM json_each(e.events) WHERE value = %s))",
}


#: kind of subject ("order") -> how the API renders one (a dict of snake_case keys).
_SUBJECT_RENDERERS: dict[str, Callable[[Any], dict]] = {}


def register_event_subject(kind: str, render: Callable[[Any], dict]) -> None:
    """Called by the app that owns `kind` (e.g. orders, from OrdersConfig.ready)."""
    _SUBJECT_RENDERERS[kind] = render


def webhook_event_record(*, merchant_id, event_type: str, subject) -> list:
    """Write the event's deliveries (none if the merchant has no subscribed active endpoint)
    in the caller's transaction; returns their ids."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if not connection.in_atomic_block:  # the outbox promise needs the caller's transaction
        raise TransactionManagementError("webhook_event_record must run in the transaction of the change")
    kind = event_type.split(".", 1)[0]
    now = timezone.now()
    event_id = uuid.uuid4()
    vendor = connection.vendor
    sql = (
        f"INSERT INTO {_Delivery} (id, endpoint_id, event_id, event_type, payload, status, attempts,"  # noqa: S608 - names and SQL of ours only
        " next_attempt_at, last_error, response_excerpt, created_at, updated_at)"
        f" SELECT {_NEW_UUID[vendor]}, e.id, %s, %s, %s, %s, 0, %s, '', '', %s, %s FROM {_Endpoint} e"
        f" WHERE e.merchant_id = %s AND e.is_active AND {_SUBSCRIBED[vendor]} RETURNING id"
    )
    params = [
        _prep("event_id", event_id),
        event_type,
        "",  # the body, written below once we know someone receives it
        WebhookDelivery.Status.PENDING,
        _prep("next_attempt_at", now),
        _prep("created_at", now),
        _prep("updated_at", now),
        _prep("id", merchant_id),  # a UUID like the delivery's own id
        event_type,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        delivery_ids = [row[0] for row in cursor.fetchall()]
        if not delivery_ids:
            return []  # nobody subscribed: nothing rendered, nothing written
        data = {kind: _SUBJECT_RENDERERS[kind](subject)}
        body = render_event(event_id=event_id, event_type=event_type, created_at=now, data=data)
        cursor.execute(
            f"UPDATE {_Delivery} SET payload = %s WHERE event_id = %s",  # noqa: S608 - our table's name
            [body, _prep("event_id", event_id)],
        )
    # A failed kick is logged, never raised to the caller: the kick job retries it.
    transaction.on_commit(lambda: webhook_deliveries_kick(delivery_ids), robust=True)
    return delivery_ids


_RENDERER = CamelCaseJSONRenderer()
_TIMESTAMP = serializers.DateTimeField()  # as every timestamp the API shows


def _prep(field_name: str, value):
    """`value` as the database wants it in a raw statement (UUIDs are text on SQLite)."""
    return WebhookDelivery._meta.get_field(field_name).get_db_prep_value(value, connection)


def render_event(*, event_id, event_type: str, created_at: datetime, data: dict) -> str:
    """The body every attempt sends, as compact as the API's own JSON."""
    envelope = {
        "id": str(event_id),
        "type": event_type,
        "created_at": _TIMESTAMP.to_representation(created_at),
        "data": data,
    }
    return _RENDERER.render(envelope).decode()
