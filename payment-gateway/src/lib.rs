//! payment-gateway: a small payment provider with a Stripe-shaped HTTP API, run as its
//! own process, keeping its books in the `payment_gateway` schema of
//! `PAYMENT_DATABASE_URL`'s database. boxoffice's sagas authorize, capture, void and
//! refund through it; tests and drills make it slow, unavailable or forgetful through
//! `/admin/faults`.
//!
//! - [`config`], [`cli`], [`app`]: the settings (options and environment variables) and
//!   the binary's command line; `Application::build(config)` and `run(listener, shutdown)`.
//! - [`intent`]: statuses, the simulated card network, what each operation moves.
//! - [`payment_method`]: card tokens exchanged for reusable `pm_…` references.
//! - [`store`]: the SQL, one atomic statement per racing operation (a create naming a
//!   payment method: one transaction).
//! - [`faults`]: latency and fault modes; [`auth`]: the API key; [`metrics`].
//! - `routes`: the HTTP API below.
//!
//! # The API
//!
//! JSON in and out; errors in boxoffice's envelope `{"error": {"code", "message",
//! "details"?}}`. When `PAYMENT_GATEWAY_KEY` is set, every `/v1` and `/admin` request
//! needs `Authorization: Bearer <key>` (compared in constant time), else 401
//! `unauthorized` with `WWW-Authenticate: Bearer`; the key is checked before the faults
//! apply. `/health/live`, `/health/ready` (database) and `/metrics` (OpenMetrics) are
//! open.
//!
//! A payment intent:
//!
//! ```json
//! {"id": "pi_…", "object": "payment_intent", "idempotency_key": "…",
//!  "amount": 2500, "currency": "EUR", "status": "authorized", "decline_code": null,
//!  "metadata": {"booking_id": "…"}, "created": "2030-01-01T12:00:00.123456Z",
//!  "updated": "2030-01-01T12:00:00.123456Z"}
//! ```
//!
//! `status` is `authorized`, `captured`, `voided`, `refunded` or `declined`. The card
//! token (`payment_method`) is kept but never shown or logged.
//!
//! A payment method (as Stripe's PaymentMethod):
//!
//! ```json
//! {"id": "pm_…", "object": "payment_method", "created": "2030-01-01T12:00:00.123456Z"}
//! ```
//!
//! It stands for a card token, which it keeps and never shows, so that the merchant
//! need not keep the token: the token is exchanged once, and the `pm_…` id used instead.
//!
//! ## `POST /v1/payment_methods`
//!
//! Body as for an intent (`Content-Type: application/json`, else 415; at most 64 KiB,
//! else 413; JSON, else 400 `malformed_json`): an object with `card_token` (1 to 200
//! visible ASCII characters; unknown fields ignored, but part of the fingerprint), else
//! 422 `validation_failed` with `details` (the token is never echoed). 200 with the new
//! payment method. Tokenizing never declines nor hangs, whatever the token: the card
//! network judges it when an intent is authorized with it.
//!
//! Header `Idempotency-Key` optional (when sent, 1 to 200 visible ASCII characters, else
//! 400 `invalid_idempotency_key`); its keys are apart from the intents'. A key used by
//! the same request (same body, key order and whitespace aside) answers 200 with the same
//! payment method, and nothing else is done; by another request, 409
//! `idempotency_key_reused`. Without a key, each request makes a new payment method.
//!
//! ## `GET /v1/payment_methods/{id}`
//!
//! 200 with the payment method, or 404 `resource_missing`.
//!
//! ## `POST /v1/payment_intents`
//!
//! Header `Idempotency-Key` required (400 `idempotency_key_required`; 1 to 200 visible
//! ASCII characters, else 400 `invalid_idempotency_key`). Body (`Content-Type:
//! application/json`, else 415; at most 64 KiB, else 413; JSON, else 400
//! `malformed_json`): `amount` (integer, 1 to 10^12, minor units), `currency` (three
//! uppercase letters), `payment_method` (1 to 200 visible ASCII characters: a payment
//! method id when it starts with `pm_`, else a card token), `metadata` (optional object
//! of at most 20 string values; keys 1 to 40 characters, values at most 500, as
//! Stripe's limits). Unknown fields are ignored, as everywhere in boxoffice, but they are
//! part of the request's fingerprint. Any problem: 422 `validation_failed`, one
//! `details` entry per field; a value is never echoed.
//!
//! A `pm_…` naming no payment method is 422 `validation_failed` (`details`
//! `[{"field": "payment_method", "message": "no such payment method"}]`), nothing
//! recorded, whatever the key holds. Otherwise it is resolved to its card token in the
//! transaction that records the intent (the payment method's row locked `FOR SHARE`),
//! and from there on the request is handled as if that token had been sent, except for
//! its fingerprint, which is of the request as sent (with the `pm_…` id: a replay names
//! the payment method again, not its token; naming the token instead is another
//! request, 409). The intent's stored `payment_method` (column
//! `payment_intents.payment_method`) is always the card token itself, as sent or
//! resolved, never a `pm_…` id.
//!
//! The card network is simulated on the card token: one starting with `tok_decline` is
//! declined (`decline_code` is the rest after `tok_decline_`, or `card_declined`), one
//! starting with `tok_timeout` is never answered and nothing is recorded (the request
//! hangs until the gateway shuts down, whatever its key already holds), any other is
//! authorized. Then, atomically per key (a unique index and `INSERT .. ON CONFLICT`):
//!
//! - an unused key creates the intent: 200 with it, `authorized` or `declined` (a
//!   decline is 200 too: the intent records it);
//! - a key used by the same request (same body, key order and whitespace aside) answers
//!   200 with that intent as it is now (captured, say), and nothing else is done;
//! - a key cancelled before any use (a tombstone, see below) answers 200 with the
//!   tombstone, `voided`: a key once voided never authorizes;
//! - a key used by another request: 409 `idempotency_key_reused`.
//!
//! ## Actions: `POST /v1/payment_intents/{id}/capture`, `/cancel`, `/refund`
//!
//! The body is empty (any or no `Content-Type`) or a JSON object, whose fields are
//! ignored. Asking for the state an intent is already in answers 200 with it, unchanged;
//! a state the action cannot start from is 409 `payment_intent_unexpected_state`, its
//! message naming the status and its `details.payment_intent` the intent as it is.
//! Unknown id: 404 `resource_missing` (an unknown route is 404 `not_found`).
//!
//! | status now  | capture      | cancel      | refund                     |
//! |-------------|--------------|-------------|----------------------------|
//! | authorized  | → captured   | → voided    | → voided (nothing taken)   |
//! | captured    | 200 as is    | 409         | → refunded                 |
//! | voided      | 409          | 200 as is   | 200 as is                  |
//! | refunded    | 409          | 409         | 200 as is                  |
//! | declined    | 409          | 409         | 409                        |
//!
//! ## `POST /v1/payment_intents/by_key/{key}/cancel`: the technical cancel
//!
//! For a client that lost the answer to a create and does not know the id (as Adyen's
//! technical cancel). The key goes percent-encoded in the path (1 to 200 visible ASCII
//! characters once decoded, else 400 `invalid_idempotency_key`). One statement against
//! a concurrent create: a key nobody used gets a tombstone (`voided`, null amount,
//! currency and fingerprint), so a create arriving later with that key gets the
//! tombstone and never authorizes; an authorized intent is voided; a voided, declined
//! or refunded one is answered as it is; a captured one is 409
//! `payment_intent_unexpected_state` (refund it instead). 200 with the intent.
//!
//! ## Reading
//!
//! - `GET /v1/payment_intents/{id}`, `GET /v1/payment_intents/by_key/{key}`: 200 with
//!   the intent, or 404 `resource_missing`.
//! - `GET /v1/payment_intents?status=&limit=&cursor=`: `{"object": "list", "data":
//!   [intents in creation order], "has_more", "next_cursor"}`. `status` (optional)
//!   filters; `limit` is 1 to 100 (default 10); `cursor` is a `next_cursor` given out
//!   before (opaque; `null` on the last page). A bad parameter is 422
//!   `validation_failed` naming it. Pages are cut by creation position, so intents
//!   created while a client pages never shift a page (nothing sent twice or skipped
//!   among those that were there); one whose insert commits during the walk with an
//!   earlier position than the cursor is seen by the next sweep. With a `status` filter,
//!   an intent whose status changes during the walk may be missed or seen by the next
//!   sweep, as with any cursor over a mutable filter.
//!
//! ## Faults: `GET /admin/faults`, `PUT /admin/faults`
//!
//! `{"mode": "normal" | "unavailable" | "hang" | "lose_answer", "latency_ms": 0 to
//! 600000}`; the PUT needs both fields (422 otherwise) and answers 200 with the new
//! setting. They live in the process (a restart goes back to normal and
//! `PAYMENT_LATENCY_MS`) and apply to `/v1` requests only: see [`faults`]. A request
//! that is never answered (hang, lose_answer, `tok_timeout`) ends at shutdown by its
//! connection being closed without a response.
//!
//! Other errors: unknown route 404 `not_found`, known route with another method 405
//! `method_not_allowed`, unexpected failures 500 `internal_error` (logged).
//!
//! # Metrics
//!
//! `payment_gateway_requests_total{operation,status}` (`status` is the HTTP status, or
//! `none` when no answer was sent), `payment_gateway_request_seconds{operation}`,
//! `payment_gateway_requests_in_flight{operation}`,
//! `payment_gateway_intent_transitions_total{to}`. `operation` is one of `create`,
//! `list`, `retrieve`, `retrieve_by_key`, `capture`, `cancel`, `refund`,
//! `cancel_by_key`, `create_payment_method`, `retrieve_payment_method`, `get_faults`,
//! `set_faults` or `other`.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod faults;
pub mod intent;
pub mod metrics;
pub mod payment_method;
mod routes;
pub mod store;

pub use app::{AppState, Application};
pub use config::Config;
