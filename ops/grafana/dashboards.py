#!/usr/bin/env python3
"""Writes boxoffice's Grafana dashboards (ops/grafana/dashboards/*.json) from the
definitions below, so that every panel is laid out, typed and pointed at the
provisioned Prometheus datasource the same way.

    python3 ops/grafana/dashboards.py           # (re)write the JSON files
    python3 ops/grafana/dashboards.py --check   # exit 1 if a file differs from what
                                                # this script writes (scripts/check-ops)

Every metric named here is exported by a service (prometheus-client appends `_total`
to counters and `_bucket`/`_sum`/`_count` to histograms); e2e/tests/observability.rs
scrapes the services and fails on a name nobody exports.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
# The datasource of ops/grafana/provisioning/datasources/prometheus.yml.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"


def q(expr, legend=""):
    return {"expr": expr, "legend": legend}


def quantiles(metric, by="", qs=(0.5, 0.95, 0.99)):
    """histogram_quantile targets of `metric` (a `_bucket` series), by the labels `by`."""
    group = f"{by}, le" if by else "le"
    prefix = "{{" + by + "}} " if by and "," not in by else ""
    return [
        q(
            f"histogram_quantile({x}, sum by ({group}) (rate({metric}[{RATE}])))",
            f"{prefix}p{int(x * 100)}",
        )
        for x in qs
    ]


def ts(title, targets, unit="short", description="", w=12, stack=False, min_zero=True):
    return {
        "kind": "timeseries",
        "title": title,
        "targets": targets,
        "unit": unit,
        "description": description,
        "w": w,
        "stack": stack,
        "min_zero": min_zero,
    }


def stat(title, targets, unit="short", description="", w=6, thresholds=None):
    return {
        "kind": "stat",
        "title": title,
        "targets": targets,
        "unit": unit,
        "description": description,
        "w": w,
        "thresholds": thresholds,
    }


def text(title, content, w=24, h=5):
    return {"kind": "text", "title": title, "content": content, "w": w, "h": h}


def row(title):
    return {"kind": "row", "title": title}


RED_ABOVE_0 = [(None, "green"), (1, "red")]


DASHBOARDS = {
    "boxoffice-commands": {
        "title": "boxoffice / Commands",
        "description": "command-api's commands: rate, latency, refusals; query-api's reads.",
        "panels": [
            row("Commands (command-api)"),
            ts(
                "Commands per second, by command",
                [q(f"sum by (command) (rate(boxoffice_commands_total[{RATE}]))", "{{command}}")],
                "reqps",
                stack=True,
            ),
            ts(
                "Commands per second, by outcome",
                [q(f"sum by (outcome) (rate(boxoffice_commands_total[{RATE}]))", "{{outcome}}")],
                "reqps",
                "accepted, replayed (an Idempotency-Key seen before), refused (4xx: the "
                "domain said no), conflict (retries exhausted), error (5xx).",
                stack=True,
            ),
            ts(
                "Command latency",
                quantiles("boxoffice_command_duration_seconds_bucket"),
                "s",
                "From the request parsed to the answer ready, every command.",
            ),
            ts(
                "Command latency p99, by command",
                quantiles("boxoffice_command_duration_seconds_bucket", "command", (0.99,)),
                "s",
            ),
            ts(
                "Refusals per second, by command",
                [
                    q(
                        f'sum by (command) (rate(boxoffice_commands_total{{outcome="refused"}}[{RATE}]))',
                        "{{command}}",
                    )
                ],
                "reqps",
                "Commands the domain refused (4xx answers: sold out, not allowed, invalid "
                "state, ...).",
                stack=True,
            ),
            ts(
                "Refusals per second, by error code (command-api)",
                [
                    q(
                        f'sum by (code) (rate(boxoffice_http_responses_total{{job="command-api", code!=""}}[{RATE}]))',
                        "{{code}}",
                    )
                ],
                "reqps",
                "Every answer in the error envelope, by its `code` (validation, "
                "sold_out, not_found, rate_limited, overloaded, ...): "
                "boxoffice_http_responses_total, counted by the access-log layer.",
                stack=True,
            ),
            ts(
                "Answers per second, by status (command-api and query-api)",
                [
                    q(
                        f'sum by (job, status) (rate(boxoffice_http_responses_total{{job=~"command-api|query-api"}}[{RATE}]))',
                        "{{job}} {{status}}",
                    )
                ],
                "reqps",
                "Probes and /metrics are not counted.",
                stack=True,
            ),
            ts(
                "Errors, conflicts and rate limiting per second",
                [
                    q(
                        f'sum by (command) (rate(boxoffice_commands_total{{outcome="error"}}[{RATE}]))',
                        "error {{command}}",
                    ),
                    q(
                        f"sum by (command) (rate(boxoffice_command_conflicts_total[{RATE}]))",
                        "conflict retried {{command}}",
                    ),
                    q(
                        f"sum(rate(boxoffice_commands_rate_limited_total[{RATE}]))",
                        "429 rate_limited",
                    ),
                ],
                "reqps",
                "error: 5xx answers. Conflicts: optimistic-concurrency conflicts met and "
                "retried. Rate limited: commands refused 429 by the per-customer limit.",
            ),
            ts(
                "Events appended per second, by type",
                [
                    q(
                        f"sum by (event_type) (rate(boxoffice_events_appended_total[{RATE}]))",
                        "{{event_type}}",
                    )
                ],
                "ops",
                stack=True,
            ),
            ts(
                "Targets up",
                [q('up{job=~"command-api|projector|query-api|payment-gateway|notifier"}', "{{job}} {{instance}}")],
                "short",
                "1 while Prometheus scrapes the service.",
            ),
            row("Reads (query-api)"),
            ts(
                "Requests per second, by status",
                [q(f"sum by (status) (rate(boxoffice_query_requests_total[{RATE}]))", "{{status}}")],
                "reqps",
                stack=True,
            ),
            ts(
                "5xx share of requests",
                [
                    q(
                        f'sum(rate(boxoffice_query_requests_total{{status=~"5.."}}[{RATE}])) '
                        f"/ sum(rate(boxoffice_query_requests_total[{RATE}]))",
                        "5xx",
                    )
                ],
                "percentunit",
                "The alert BoxofficeQueryApi5xx fires above 5% for 5 minutes.",
            ),
            ts(
                "Request latency p99, by route",
                quantiles("boxoffice_query_duration_seconds_bucket", "route", (0.99,)),
                "s",
                w=24,
            ),
        ],
    },
    "boxoffice-outbox": {
        "title": "boxoffice / Outbox",
        "description": "The outbox relay (command-api): rows waiting, published, their age.",
        "panels": [
            row("Backlog"),
            stat(
                "Backlog (rows not yet published)",
                [
                    q(
                        "max(boxoffice_outbox_backlog and on (job, instance) "
                        "boxoffice_outbox_relay_leader == 1)",
                        "rows",
                    )
                ],
                "short",
                "Counted by the relay leader (a follower keeps the last count it made "
                "while it led, so only the leader's is read).",
                thresholds=[(None, "green"), (1000, "orange"), (10000, "red")],
            ),
            stat(
                "Relay leaders",
                [q("sum(boxoffice_outbox_relay_leader)", "leaders")],
                "short",
                "Exactly one command-api should lead the relay.",
                thresholds=[(None, "red"), (1, "green"), (2, "red")],
            ),
            stat(
                "Broker reachable (command-api)",
                [q("min(boxoffice_broker_up)", "up")],
                "short",
                thresholds=[(None, "red"), (1, "green")],
            ),
            stat(
                "Estimated time to drain the backlog",
                [
                    q(
                        "max(boxoffice_outbox_backlog and on (job, instance) "
                        "boxoffice_outbox_relay_leader == 1) "
                        f"/ clamp_min(sum(rate(boxoffice_outbox_published_total[5m])), 0.001)",
                        "drain",
                    )
                ],
                "s",
                "Backlog divided by the publish rate of the last 5 minutes: roughly how "
                "long the newest waiting row will wait. Huge when nothing is published.",
                thresholds=[(None, "green"), (30, "orange"), (300, "red")],
            ),
            ts(
                "Backlog over time",
                [
                    q(
                        "max(boxoffice_outbox_backlog and on (job, instance) "
                        "boxoffice_outbox_relay_leader == 1)",
                        "backlog",
                    )
                ],
                "short",
                "The alert BoxofficeOutboxBacklogGrowing fires when it is over 1000 and "
                "growing for 10 minutes.",
            ),
            ts(
                "Appended vs published per second",
                [
                    q(f"sum(rate(boxoffice_events_appended_total[{RATE}]))", "appended"),
                    q(f"sum(rate(boxoffice_outbox_published_total[{RATE}]))", "published"),
                    q(f"sum(rate(boxoffice_outbox_publish_failures_total[{RATE}]))", "failed deliveries"),
                ],
                "ops",
                "Every appended event gets an outbox row; a row goes once the broker "
                "acknowledged it. Failed deliveries are retried.",
            ),
            row("Age"),
            ts(
                "Age of a row when published (append to broker acknowledgement)",
                quantiles("boxoffice_outbox_publish_latency_seconds_bucket", qs=(0.5, 0.99, 0.999)),
                "s",
                "How old rows are when they leave the outbox. While nothing is published "
                "this stops moving: the next panel does not.",
            ),
            ts(
                "Age of the oldest row still waiting",
                [q("max(boxoffice_outbox_oldest_age_seconds)", "oldest row")],
                "s",
                "Measured by the relay's leader every second (0: the outbox is empty). "
                "Growing without bound: nothing is published (broker away, no leader).",
            ),
            ts(
                "Batch acknowledgement time",
                quantiles("boxoffice_outbox_ack_seconds_bucket", qs=(0.5, 0.99)),
                "s",
                "From producing a batch to the broker's last acknowledgement.",
            ),
            ts(
                "Rows per relay batch",
                [
                    q(
                        f"sum(rate(boxoffice_outbox_batch_rows_sum[{RATE}])) "
                        f"/ sum(rate(boxoffice_outbox_batch_rows_count[{RATE}]))",
                        "mean",
                    ),
                    q(
                        f"histogram_quantile(0.99, sum by (le) (rate(boxoffice_outbox_batch_rows_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
                "short",
            ),
            ts(
                "Relay leader, by instance",
                [q("boxoffice_outbox_relay_leader", "{{instance}}")],
                "short",
            ),
        ],
    },
    "boxoffice-projections": {
        "title": "boxoffice / Projections",
        "description": "The projector: lag, throughput, parked events, rebuilds; query-api's read-your-writes waits.",
        "panels": [
            row("Lag"),
            ts(
                "Lag in seconds, by projection",
                [q("max by (projection) (boxoffice_projector_lag_seconds)", "{{projection}}")],
                "s",
                "How far behind the event store each read model is (0 when caught up). "
                "Alerts: BoxofficeProjectionLagging (> 30 s), BoxofficeProjectionFarBehind "
                "(> 5 min).",
            ),
            ts(
                "Lag in events, by projection",
                [q("max by (projection) (boxoffice_projector_lag_events)", "{{projection}}")],
                "short",
            ),
            ts(
                "Events applied per second, by projection",
                [
                    q(
                        f"sum by (projection) (rate(boxoffice_projector_events_applied_total[{RATE}]))",
                        "{{projection}}",
                    ),
                    q(
                        f"sum(rate(boxoffice_projector_messages_consumed_total[{RATE}]))",
                        "Kafka messages consumed",
                    ),
                ],
                "ops",
            ),
            ts(
                "Batch apply and commit time p99, by source",
                quantiles("boxoffice_projector_apply_duration_seconds_bucket", "source", (0.99,)),
                "s",
                "kafka: the consumer; sweep: events the sweep found in the store.",
            ),
            row("Faults"),
            ts(
                "Parked events, by projection",
                [q("max by (projection) (boxoffice_projector_parked_events)", "{{projection}}")],
                "short",
                "Events that could not be applied; their streams wait (GET /v1/admin/parked).",
            ),
            ts(
                "Apply errors and gaps filled per second",
                [
                    q(
                        f"sum by (projection) (rate(boxoffice_projector_apply_errors_total[{RATE}]))",
                        "apply errors {{projection}}",
                    ),
                    q(
                        f"sum by (projection) (rate(boxoffice_projector_gaps_filled_total[{RATE}]))",
                        "gaps filled {{projection}}",
                    ),
                ],
                "ops",
            ),
            stat(
                "Broker reachable (projector)",
                [q("min(boxoffice_projector_broker_up)", "up")],
                thresholds=[(None, "red"), (1, "green")],
            ),
            stat(
                "Rebuilds running",
                [q("count(boxoffice_projector_rebuild_progress > 0) or vector(0)", "running")],
                thresholds=[(None, "green"), (1, "blue")],
            ),
            ts(
                "Rebuild progress, by projection",
                [q("max by (projection) (boxoffice_projector_rebuild_progress)", "{{projection}}")],
                "percentunit",
                "Share of a running rebuild done (0 when none runs). Asked for with POST "
                "/v1/admin/projections/{name}/rebuild (query-api) or `projector rebuild`.",
            ),
            row("Read-your-writes (query-api)"),
            ts(
                "Read-your-writes wait, by outcome",
                quantiles("boxoffice_consistency_wait_seconds_bucket", "outcome", (0.5, 0.99)),
                "s",
                "How long a read with X-Consistency-Token waited for the read models.",
            ),
            ts(
                "Waiting now, and watcher queries per second",
                [
                    q("sum(boxoffice_consistency_waiting)", "requests waiting"),
                    q(f"sum(rate(boxoffice_consistency_checks_total[{RATE}]))", "watcher queries/s"),
                    q(
                        f"sum by (outcome) (rate(boxoffice_consistency_wait_seconds_count[{RATE}]))",
                        "waits/s {{outcome}}",
                    ),
                ],
                "short",
            ),
        ],
    },
    "boxoffice-sagas": {
        "title": "boxoffice / Sagas",
        "description": "The booking sagas (command-api): in flight, outcomes, compensations, parked; reconciliation.",
        "panels": [
            row("Sagas"),
            stat(
                "In flight",
                [q("max(boxoffice_sagas_in_flight)", "in flight")],
                description="Sagas not finished, in the whole store (the same in every "
                "replica: max, not sum).",
            ),
            stat(
                "Parked (waiting for an operator)",
                [q("max(boxoffice_sagas_parked)", "parked")],
                description="GET /v1/admin/sagas/parked lists them; POST "
                "/v1/admin/sagas/{id}/retry resumes one.",
                thresholds=RED_ABOVE_0,
            ),
            stat(
                "Hold deadlines fired (last hour)",
                [q("sum(increase(boxoffice_saga_deadlines_fired_total[1h]))", "fired")],
                description="Seat holds that expired before the payment was settled.",
                thresholds=[(None, "green"), (1, "orange")],
            ),
            stat(
                "Uncollectable payments (last 24 h)",
                [q("sum(increase(boxoffice_payments_uncollectable_total[24h]))", "uncollectable")],
                description="Confirmed bookings whose payment could not be taken at "
                "capture: for people to settle.",
                thresholds=RED_ABOVE_0,
            ),
            ts(
                "Sagas in flight and parked",
                [
                    q("max(boxoffice_sagas_in_flight)", "in flight"),
                    q("max(boxoffice_sagas_parked)", "parked"),
                ],
                "short",
                "Alerts: BoxofficeSagasStuck (in flight and no step advanced for 15 "
                "minutes), BoxofficeSagasParked.",
            ),
            ts(
                "Outcomes per second (bookings reaching a final status)",
                [q(f"sum by (status) (rate(boxoffice_bookings_final_total[{RATE}]))", "{{status}}")],
                "ops",
                stack=True,
            ),
            ts(
                "Steps per second, by step and outcome",
                [
                    q(
                        f"sum by (step, outcome) (rate(boxoffice_saga_steps_total[{RATE}]))",
                        "{{step}} {{outcome}}",
                    )
                ],
                "ops",
                "advanced: the saga moved on; retried: the same step later; failed: an "
                "error, retried later (parked after too many in a row); fenced or "
                "refused: another worker had it, or the saga moved on meanwhile.",
            ),
            ts(
                "Compensations started per second, by reason",
                [
                    q(
                        f"sum by (reason) (rate(boxoffice_saga_compensations_total[{RATE}]))",
                        "{{reason}}",
                    )
                ],
                "ops",
                "Seats released (sold out, payment declined, hold expired, cancelled) "
                "and refunds (cancelled).",
                stack=True,
            ),
            row("Reconciliation"),
            ts(
                "Findings mended (per hour), by finding",
                [
                    q(
                        "sum by (finding) (increase(boxoffice_reconciliation_findings_total[1h]))",
                        "{{finding}}",
                    )
                ],
                "short",
                "captured: a confirmed booking's payment left uncaptured; voided: an "
                "authorization held for a booking that did not happen; orphaned: an "
                "authorization for no booking of ours.",
            ),
            ts(
                "Reconciliation passes (per hour)",
                [q("sum(increase(boxoffice_reconciliation_passes_total[1h]))", "passes")],
                "short",
            ),
        ],
    },
    "boxoffice-payments": {
        "title": "boxoffice / Payment gateway",
        "description": "command-api's calls to the payment gateway (latency, outcomes, circuit breaker), and the gateway's own view.",
        "panels": [
            row("command-api's client"),
            stat(
                "Circuits open now",
                [
                    q(
                        'count(boxoffice_payment_circuit_state{state=~"open|half_open"} == 1) or vector(0)',
                        "open",
                    )
                ],
                description="command-api processes whose circuit breaker is open or "
                "half-open (probing).",
                thresholds=RED_ABOVE_0,
            ),
            stat(
                "Circuit opened (last hour)",
                [q("sum(increase(boxoffice_payment_circuit_opened_total[1h]))", "opened")],
                thresholds=[(None, "green"), (1, "orange")],
            ),
            stat(
                "Calls held back by the circuit (per second)",
                [
                    q(
                        f'sum(rate(boxoffice_payment_calls_total{{outcome="circuit_open"}}[{RATE}])) or vector(0)',
                        "held back",
                    )
                ],
                "reqps",
                thresholds=[(None, "green"), (0.001, "red")],
            ),
            stat(
                "Authorize p99",
                [
                    q(
                        'histogram_quantile(0.99, sum by (le) (rate(boxoffice_payment_call_duration_seconds_bucket{operation="authorize"}[5m])))',
                        "p99",
                    )
                ],
                "s",
                thresholds=[(None, "green"), (0.5, "orange"), (2, "red")],
            ),
            ts(
                "Circuit state, by instance",
                [
                    q(
                        "max by (instance, state) (boxoffice_payment_circuit_state) == 1",
                        "{{instance}} {{state}}",
                    )
                ],
                "short",
                "1 for the current state (closed, open, half_open) of each command-api. "
                "The alert BoxofficePaymentCircuitOpen fires when it is not closed for 2 "
                "minutes.",
            ),
            ts(
                "Calls per second, by outcome",
                [q(f"sum by (outcome) (rate(boxoffice_payment_calls_total[{RATE}]))", "{{outcome}}")],
                "reqps",
                "Attempts: ok, refused (4xx or a malformed answer), unavailable (not "
                "reached, 5xx), timeout, circuit_open (not sent), no_turn (its deadline "
                "passed while it waited for a turn: not sent).",
                stack=True,
            ),
            ts(
                "Calls waiting for a turn, by instance",
                [q("sum by (instance) (boxoffice_payment_calls_waiting)", "{{instance}}")],
                "short",
                "Calls beyond PAYMENT_MAX_IN_FLIGHT wait in command-api, in order, "
                "rather than queue at the gateway. A queue that stays long means the "
                "provider's capacity, or this setting, is short of the load.",
            ),
            ts(
                "Call latency p99, by operation (retries and turns included)",
                quantiles("boxoffice_payment_call_duration_seconds_bucket", "operation", (0.99,)),
                "s",
            ),
            ts(
                "Call latency",
                quantiles("boxoffice_payment_call_duration_seconds_bucket"),
                "s",
            ),
            row("The gateway (payment-gateway)"),
            ts(
                "Requests per second, by status",
                [q(f"sum by (status) (rate(payment_gateway_requests_total[{RATE}]))", "{{status}}")],
                "reqps",
                "status none: no answer was sent (a hung request, a client gone).",
                stack=True,
            ),
            ts(
                "Request latency p99, by operation",
                quantiles("payment_gateway_request_seconds_bucket", "operation", (0.99,)),
                "s",
                "Simulated latency (PAYMENT_LATENCY_MS, PUT /admin/faults) included.",
            ),
            ts(
                "Requests in flight, by operation",
                [q("sum by (operation) (payment_gateway_requests_in_flight)", "{{operation}}")],
                "short",
            ),
            ts(
                "Payment intents per second, by status reached",
                [q(f"sum by (to) (rate(payment_gateway_intent_transitions_total[{RATE}]))", "{{to}}")],
                "ops",
                stack=True,
            ),
        ],
    },
    "boxoffice-database": {
        "title": "boxoffice / Database",
        "description": "What the services tell of their use of Postgres: the append path, the read models' commits, the watcher's queries.",
        "panels": [
            row("Connection pools"),
            ts(
                "Connections in use, by service and pool",
                [
                    q(
                        'sum by (job, pool) (boxoffice_db_pool_connections{state="in_use"})',
                        "{{job}} {{pool}}",
                    )
                ],
                "short",
                "Read at each scrape from sqlx's pools (size minus idle). Postgres itself "
                "is not scraped (no postgres_exporter in compose.yaml).",
            ),
            ts(
                "Pool use: in use / the pool's maximum",
                [
                    q(
                        'sum by (job, pool) (boxoffice_db_pool_connections{state="in_use"}) '
                        "/ on (job, pool) sum by (job, pool) (boxoffice_db_pool_max_connections)",
                        "{{job}} {{pool}}",
                    )
                ],
                "percentunit",
                "Near 1: requests wait for a connection (raise the service's pool, e.g. "
                "BOXOFFICE_DB_MAX_CONNECTIONS, or Postgres's max_connections).",
            ),
            row("Writes (command-api's event store pool)"),
            ts(
                "Append statements per second",
                [
                    q(
                        f"sum(rate(boxoffice_append_statement_aggregates_count[{RATE}]))",
                        "statements",
                    ),
                    q(f"sum(rate(boxoffice_events_appended_total[{RATE}]))", "events"),
                ],
                "ops",
                "Each statement holds a connection; BOXOFFICE_APPEND_WRITERS run at once.",
            ),
            ts(
                "Group commit: aggregates and commands per statement",
                [
                    q(
                        f"sum(rate(boxoffice_append_statement_aggregates_sum[{RATE}])) "
                        f"/ sum(rate(boxoffice_append_statement_aggregates_count[{RATE}]))",
                        "aggregates per statement (mean)",
                    ),
                    q(
                        f"sum(rate(boxoffice_append_batch_commands_sum[{RATE}])) "
                        f"/ sum(rate(boxoffice_append_batch_commands_count[{RATE}]))",
                        "commands per aggregate append (mean)",
                    ),
                ],
                "short",
                "Above 1 when appends queue for a writer: the pool's writers are busy.",
            ),
            ts(
                "Command latency p99 (includes waiting for a writer)",
                quantiles("boxoffice_command_duration_seconds_bucket", qs=(0.99,)),
                "s",
            ),
            ts(
                "Relay: batches per second (one transaction each)",
                [
                    q(
                        f"sum(rate(boxoffice_outbox_batch_rows_count[{RATE}]))",
                        "batches/s",
                    )
                ],
                "ops",
            ),
            row("Read models (projector's and query-api's pools)"),
            ts(
                "Projector: batch apply and commit p99",
                quantiles("boxoffice_projector_apply_duration_seconds_bucket", "source", (0.99,)),
                "s",
                "One read-model transaction per batch.",
            ),
            ts(
                "Projector: commits per second",
                [
                    q(
                        f"sum by (source) (rate(boxoffice_projector_apply_duration_seconds_count[{RATE}]))",
                        "{{source}}",
                    )
                ],
                "ops",
            ),
            ts(
                "query-api: request latency p99",
                quantiles("boxoffice_query_duration_seconds_bucket", qs=(0.99,)),
                "s",
                "Reads hold a read-model connection; read-your-writes waits do not.",
            ),
            ts(
                "query-api: watcher queries per second",
                [q(f"sum(rate(boxoffice_consistency_checks_total[{RATE}]))", "queries")],
                "ops",
                "One query per projection with waiters, whatever their number.",
            ),
        ],
    },
    "boxoffice-notifier": {
        "title": "boxoffice / Notifier",
        "description": "The notifier: mails to customers (booking confirmed, rejected, cancelled and refunded, event cancelled), SMTP, the facts it takes in.",
        "panels": [
            row("Mail"),
            stat(
                "Waiting to be sent",
                [q("max(boxoffice_notifier_pending)", "pending")],
                description="Notifications not sent yet, in the notifier's tables (the "
                "same in every replica: max, not sum).",
            ),
            stat(
                "Oldest waiting",
                [q("max(boxoffice_notifier_oldest_pending_age_seconds)", "oldest")],
                "s",
                "How long the oldest notification not sent yet has waited (0: none "
                "waits). The alert BoxofficeNotificationsDelayed fires above 5 minutes.",
                thresholds=[(None, "green"), (60, "orange"), (300, "red")],
            ),
            stat(
                "Parked (waiting for an operator)",
                [q("max(boxoffice_notifier_parked)", "parked")],
                description="Refused for good by the SMTP server, or failed "
                "NOTIFIER_MAX_ATTEMPTS times: no longer tried until `notifier retry` (`notifier status` lists them). The alert "
                "BoxofficeNotificationsParked fires after 10 minutes.",
                thresholds=RED_ABOVE_0,
            ),
            stat(
                "Broker reachable (notifier)",
                [q("min(boxoffice_notifier_broker_up)", "up")],
                thresholds=[(None, "red"), (1, "green")],
            ),
            ts(
                "Mails sent per second, by kind",
                [
                    q(
                        f'sum by (kind) (rate(boxoffice_notifier_notifications_total{{outcome="sent"}}[{RATE}]))',
                        "{{kind}}",
                    )
                ],
                "ops",
                "Accepted by the SMTP server: booking_confirmed, booking_rejected, "
                "booking_cancelled (with its refund), event_cancelled.",
                stack=True,
            ),
            ts(
                "Notifications not sent per second, by outcome and kind",
                [
                    q(
                        "sum by (outcome, kind) (rate(boxoffice_notifier_notifications_total"
                        f'{{outcome=~"parked|no_contact|erased"}}[{RATE}]))',
                        "{{outcome}} {{kind}}",
                    )
                ],
                "ops",
                "parked: refused for good, or too many failures (an operator sends it "
                "again); no_contact: the booking carries no e-mail address; erased: the "
                "customer's key is destroyed, so their address cannot be read.",
                stack=True,
            ),
            ts(
                "SMTP send latency",
                quantiles("boxoffice_notifier_send_seconds_bucket", qs=(0.5, 0.99)),
                "s",
                "One mail handed to the SMTP server, until its answer.",
            ),
            ts(
                "Send attempts per second, by result",
                [
                    q(
                        f"sum by (result) (rate(boxoffice_notifier_send_attempts_total[{RATE}]))",
                        "{{result}}",
                    )
                ],
                "ops",
                "accepted; temporary (tried again later, with a growing wait: e.g. a 4xx "
                "answer, a server not reached); permanent (refused for good, e.g. a 5xx "
                "answer: parked).",
                stack=True,
            ),
            ts(
                "Waiting and parked",
                [
                    q("max(boxoffice_notifier_pending)", "pending"),
                    q("max(boxoffice_notifier_parked)", "parked"),
                ],
                "short",
            ),
            ts(
                "Age of the oldest notification waiting",
                [q("max(boxoffice_notifier_oldest_pending_age_seconds)", "oldest pending")],
                "s",
                "Growing without bound: nothing is sent (the SMTP server is down or "
                "refusing for now, the notifier is stopped).",
            ),
            row("Intake"),
            ts(
                "Booking facts taken in per second, by source",
                [
                    q(
                        f"sum by (source) (rate(boxoffice_notifier_facts_total[{RATE}]))",
                        "{{source}}",
                    )
                ],
                "ops",
                "kafka: the consumer (group NOTIFIER_GROUP); sweep: facts the sweep of the "
                "event store found that Kafka had not brought (all of them while the "
                "broker is away).",
                stack=True,
            ),
            ts(
                "Broker reachable, by instance",
                [q("boxoffice_notifier_broker_up", "{{instance}}")],
                "short",
                "1 while the notifier's consumer reaches Kafka. The alert "
                "BoxofficeNotifierBrokerDown fires after 5 minutes at 0.",
            ),
            row("Connection pools"),
            ts(
                "Connections in use, by pool",
                [
                    q(
                        'sum by (instance, pool) (boxoffice_db_pool_connections{job="notifier", state="in_use"})',
                        "{{instance}} {{pool}}",
                    )
                ],
                "short",
                "event_store: reading the events and the user keys; notifier: its own "
                "tables (schema notifier).",
            ),
            ts(
                "Pool use: in use / the pool's maximum",
                [
                    q(
                        'sum by (instance, pool) (boxoffice_db_pool_connections{job="notifier", state="in_use"}) '
                        "/ on (instance, pool) "
                        'sum by (instance, pool) (boxoffice_db_pool_max_connections{job="notifier"})',
                        "{{instance}} {{pool}}",
                    )
                ],
                "percentunit",
            ),
        ],
    },
}


def thresholds_json(steps):
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def build(uid, spec):
    panels = []
    next_id = 1
    x = y = 0
    line_h = 0

    def place(w, h):
        nonlocal x, y, line_h
        if x + w > 24:
            x, y = 0, y + line_h
            line_h = 0
        pos = {"h": h, "w": w, "x": x, "y": y}
        x += w
        line_h = max(line_h, h)
        return pos

    for p in spec["panels"]:
        kind = p["kind"]
        if kind == "row":
            if x:
                x, y, line_h = 0, y + line_h, 0
            panels.append(
                {
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "id": next_id,
                    "panels": [],
                    "title": p["title"],
                    "type": "row",
                }
            )
            y += 1
            next_id += 1
            continue
        if kind == "text":
            panels.append(
                {
                    "gridPos": place(p["w"], p["h"]),
                    "id": next_id,
                    "options": {"content": p["content"], "mode": "markdown"},
                    "title": p["title"],
                    "type": "text",
                }
            )
            next_id += 1
            continue
        targets = [
            {
                "datasource": DATASOURCE,
                "expr": t["expr"],
                "legendFormat": t["legend"] or "__auto",
                "range": True,
                "refId": chr(ord("A") + i),
            }
            for i, t in enumerate(p["targets"])
        ]
        panel = {
            "datasource": DATASOURCE,
            "description": p["description"],
            "id": next_id,
            "targets": targets,
            "title": p["title"],
        }
        if kind == "timeseries":
            defaults = {
                "custom": {
                    "drawStyle": "line",
                    "fillOpacity": 10,
                    "lineWidth": 1,
                    "showPoints": "never",
                    "spanNulls": False,
                    "stacking": {"group": "A", "mode": "normal" if p["stack"] else "none"},
                },
                "unit": p["unit"],
            }
            if p["min_zero"]:
                defaults["min"] = 0
            panel.update(
                {
                    "fieldConfig": {"defaults": defaults, "overrides": []},
                    "gridPos": place(p["w"], 8),
                    "options": {
                        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"},
                    },
                    "type": "timeseries",
                }
            )
        else:
            defaults = {"unit": p["unit"]}
            if p["thresholds"]:
                defaults["thresholds"] = thresholds_json(p["thresholds"])
                defaults["color"] = {"mode": "thresholds"}
            panel.update(
                {
                    "fieldConfig": {"defaults": defaults, "overrides": []},
                    "gridPos": place(p["w"], 4),
                    "options": {
                        "colorMode": "background" if p["thresholds"] else "none",
                        "graphMode": "area",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "textMode": "value",
                    },
                    "type": "stat",
                }
            )
        panels.append(panel)
        next_id += 1

    return {
        "annotations": {"list": []},
        "description": spec["description"],
        "editable": True,
        "graphTooltip": 1,
        "links": [
            {"asDropdown": True, "includeVars": False, "keepTime": True, "tags": ["boxoffice"], "title": "boxoffice", "type": "dashboards"}
        ],
        "panels": panels,
        "refresh": "10s",
        "schemaVersion": 39,
        "tags": ["boxoffice"],
        "templating": {"list": []},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": spec["title"],
        "uid": uid,
        "version": 1,
    }


def render(uid, spec):
    return json.dumps(build(uid, spec), indent=2, sort_keys=True) + "\n"


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    for uid, spec in DASHBOARDS.items():
        path = OUT / f"{uid}.json"
        text = render(uid, spec)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent.parent)}")
    known = {f"{uid}.json" for uid in DASHBOARDS}
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in known)
    if check:
        if stale:
            print("not what ops/grafana/dashboards.py writes: " + ", ".join(stale), file=sys.stderr)
        if extra:
            print("not written by ops/grafana/dashboards.py: " + ", ".join(extra), file=sys.stderr)
        return 1 if stale or extra else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
