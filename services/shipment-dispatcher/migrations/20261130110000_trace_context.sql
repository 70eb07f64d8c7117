-- The W3C traceparent of the order event that last stored the shipment's snapshot: the
-- registration call, made later by the sender for a batch, continues that trace (issue 13).
ALTER TABLE shipments ADD COLUMN trace_context TEXT;
