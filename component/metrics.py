"""Every metric of the process, on a registry the caller injects (tests use a fresh one each)."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from component.stanza import KINDS


class Outcome(StrEnum):
    """How a stanza for the bot ended: a bounded set (a metric label), one per row family of the error table."""

    REPLIED = "replied"  # the bot answered with stanzas
    SILENT = "silent"  # a 2xx that asks for nothing
    HTTP_ERROR = "http_error"  # a non-2xx status
    TIMEOUT = "timeout"  # no complete reply by the deadline (queue time included)
    CONNECTION_ERROR = "connection_error"  # the bot could not be reached, or closed before replying
    UNUSABLE = "unusable"  # a reply that is not HTTP, too large, or not stanzas we may send
    IGNORED = "ignored"  # a 200 of a content type that is not read (e.g. text/html): nothing sent
    QUEUE_FULL = "queue_full"  # refused at once: bot.max_queued stanzas were waiting
    NO_ROUTE = "no_route"  # no bot serves the recipient
    SHUTTING_DOWN = "shutting_down"  # arrived while the component was stopping
    GAVE_UP = "gave_up"  # queued delivery: still failing when bot.retry_for passed (now a dead letter)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.stanzas_received = Counter(
            "xmpp_stanzas_received", "Stanzas received from the XMPP server, by kind", ["kind"], registry=r
        )
        self.stanzas_sent = Counter(
            "xmpp_stanzas_sent", "Stanzas sent to the XMPP server, by kind", ["kind"], registry=r
        )
        self.errors_received = Counter(
            "xmpp_errors_received",
            "Stanzas of type error received (bounces of what we sent); never forwarded nor answered",
            registry=r,
        )
        self.stanzas_dropped = Counter(
            "xmpp_stanzas_dropped",
            "Stanzas not sent: over component.max_stanza_bytes, or held too long or too many while the stream was down",
            registry=r,
        )
        self.stanzas_held = Gauge(
            "xmpp_stanzas_held", "Stanzas waiting for the stream to come back, to be sent then", registry=r
        )
        self.bot_requests = Counter("bot_requests", "Bot requests by outcome", ["outcome"], registry=r)
        self.bot_latency = Histogram(
            "bot_request_duration_seconds",
            "Time from POST to a complete bot reply",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.bot_in_flight = Gauge("bot_requests_in_flight", "Bot requests under way", registry=r)
        self.bot_queued = Gauge("bot_stanzas_queued", "Stanzas accepted for the bot and not yet answered", registry=r)
        # queued delivery (bot.delivery = "queued"): no label per bot URL (a {local} URL has no bound); the send
        # API's GET /v1/status has the figures per URL
        self.delivery_pending = Gauge(
            "bot_delivery_pending", "Queued delivery: stanzas accepted and not yet delivered nor given up", registry=r
        )
        self.delivery_oldest = Gauge(
            "bot_delivery_oldest_pending_seconds", "Queued delivery: age of the oldest pending stanza", registry=r
        )
        self.delivery_retries = Counter(
            "bot_delivery_retries", "Queued delivery: failed attempts that will be tried again", registry=r
        )
        self.delivery_dead = Gauge(
            "bot_delivery_dead_letters", "Queued delivery: stanzas given up, in the dead-letter table", registry=r
        )
        self.delivery_last_success = Gauge(
            "bot_delivery_last_success_timestamp_seconds", "Queued delivery: Unix time of the last delivery", registry=r
        )
        self.delivery_last_error = Gauge(
            "bot_delivery_last_error_timestamp_seconds",
            "Queued delivery: Unix time of the last failed attempt",
            registry=r,
        )
        self.delivery_commits = Counter(
            "bot_delivery_commits", "Queued delivery: transactions written to the queue (one per loop turn)", registry=r
        )
        # group chats (XEP-0045): reasons and conditions are bounded sets (component/rooms/manager.py)
        self.rooms_wanted = Gauge("xmpp_rooms", "Rooms the bots should sit in (one per bot and room)", registry=r)
        self.rooms_joined = Gauge("xmpp_rooms_joined", "Rooms the bots sit in now", registry=r)
        self.room_joins = Counter("xmpp_room_joins", "Join presences sent to rooms", registry=r)
        self.room_failures = Counter(
            "xmpp_room_failures",
            "Times a bot was refused or put out of a room, by condition (kicked, not-authorized, conflict...)",
            ["condition"],
            registry=r,
        )
        self.room_lost = Counter(
            "xmpp_room_lost", "Silent drops found by a self-ping (XEP-0410) and joined again", registry=r
        )
        self.room_dropped = Counter(
            "xmpp_room_stanzas_dropped",
            "Room stanzas not forwarded or not sent, by reason (own, history, room_notice, error_reply...)",
            ["reason"],
            registry=r,
        )
        self.xmpp_connected = Gauge("xmpp_connected", "1 while the component stream is up", registry=r)
        # the instance id as an info metric (1, the id in a label), not a label on every series: each instance is
        # scraped on its own, so its series are told apart by the scrape's own `instance` label already; a join on
        # it brings the id in where needed. Named instance_id: an `instance` label would clash with the scrape's.
        self.instance_info = Gauge(
            "component_instance_info", "Always 1; instance_id is [instance] id", ["instance_id"], registry=r
        )
        self.xmpp_connects = Counter("xmpp_connects", "Component streams established", registry=r)
        self.instance_slot = Gauge(
            "component_instance_slot",
            "The slot this instance holds ([instance] slots: 0 to slots-1); -1 while a spare or without slots",
            registry=r,
        )
        self.instance_slot.set(-1)
        self.slot_takeovers = Counter("component_slot_takeovers", "Slots taken (the first included)", registry=r)
        self.xmpp_routed = Gauge(
            "component_xmpp_routed",
            "1 while probes show the XMPP server routes the domain's stanzas to this connection ([instance] slots "
            "of 2 or more), else 0",
            registry=r,
        )
        self.unrouted_reconnects = Counter(
            "component_unrouted_reconnects", "Streams made again because nothing was routed to them", registry=r
        )
        self.probes_sent = Counter("component_probes_sent", "Probes sent to check the routing", registry=r)
        self.internal_errors = Counter(
            "internal_errors", "Unexpected exceptions caught at the error boundary", registry=r
        )
        self.api_requests = Counter(
            "api_requests", "Send API requests by path and HTTP status", ["path", "status"], registry=r
        )
        # mod_event_pusher's metrics, named as MongooseIM names them; prometheus-client adds `_total` to
        # counters in the exposition: mod_event_pusher_http_sent_count_total.
        self.push_sent = Counter(
            "mod_event_pusher_http_sent_count", "Notifications sent successfully", ["host_type"], registry=r
        )
        self.push_failed = Counter(
            "mod_event_pusher_http_sent_failure_count",
            "Notifications that failed: connection error, timeout, non-2xx, or a failing callback",
            ["host_type"],
            registry=r,
        )
        self.push_response_time = Histogram(
            "mod_event_pusher_http_sent_response_time",
            "Response time of the successful notifications, in seconds",
            ["host_type"],
            registry=r,
        )
        self.push_dropped = Counter(
            "mod_event_pusher_http_dropped_count", "Notifications dropped from a full queue", ["host_type"], registry=r
        )
        # mod_event_pusher_rabbit's metrics, named as MongooseIM 6.5 names them (labels host_type and pool_tag),
        # with the outbox this backend adds; prometheus-client adds `_total` to the counters in the exposition.
        rabbit = ["host_type", "pool_tag"]
        self.rabbit_connected = Gauge(
            "wpool_rabbit_connections_active", "1 while the connection to RabbitMQ is up", rabbit, registry=r
        )
        self.rabbit_opened = Counter(
            "wpool_rabbit_connections_opened", "Connections to RabbitMQ opened", rabbit, registry=r
        )
        self.rabbit_closed = Counter(
            "wpool_rabbit_connections_closed", "Connections to RabbitMQ lost or closed", rabbit, registry=r
        )
        self.rabbit_connect_failed = Counter(
            "wpool_rabbit_connections_failed", "Attempts to connect to RabbitMQ that failed", rabbit, registry=r
        )
        self.rabbit_published = Counter(
            "wpool_rabbit_messages_published_count",
            "Events published to RabbitMQ: acked by the broker (written, with confirms off)",
            rabbit,
            registry=r,
        )
        self.rabbit_failed = Counter(
            "wpool_rabbit_messages_published_failed",
            "Publishes the broker nacked (each is published again, after a pause)",
            rabbit,
            registry=r,
        )
        self.rabbit_timeout = Counter(
            "wpool_rabbit_messages_published_timeout",
            "Publishes not confirmed before their connection dropped (each is published again: a possible duplicate)",
            rabbit,
            registry=r,
        )
        self.rabbit_confirm_time = Histogram(
            "wpool_rabbit_messages_published_time",
            "Seconds from writing a publish to the broker's ack (acked publishes only)",
            rabbit,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.rabbit_queued = Gauge(
            "mod_event_pusher_rabbit_queued",
            "Events waiting to be published or confirmed (the outbox, bounded by event_pusher.rabbit.max_queued)",
            rabbit,
            registry=r,
        )
        self.rabbit_dropped = Counter(
            "mod_event_pusher_rabbit_dropped_count",
            "Events never published: pushed out of a full outbox, or left at shutdown",
            rabbit,
            registry=r,
        )
        # label children looked up once: the stanza path only increments
        self.received = {kind: self.stanzas_received.labels(kind) for kind in KINDS}
        self.sent = {kind: self.stanzas_sent.labels(kind) for kind in KINDS}
        self.outcomes = {outcome: self.bot_requests.labels(outcome.value) for outcome in Outcome}
