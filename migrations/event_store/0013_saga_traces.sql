-- Traces (see README, "Traces"): a saga's steps run as spans of the trace of the
-- request that started the saga, or last moved it (a cancellation's refund is in the
-- cancellation's trace). The W3C `traceparent` of that request, as the facts' metadata
-- keeps it. NULL for sagas started before: their steps start a trace of their own.
ALTER TABLE booking_sagas ADD COLUMN traceparent text;
ALTER TABLE event_cancellation_sagas ADD COLUMN traceparent text;
