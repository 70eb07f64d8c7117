-- One trace per order: the W3C traceparent of the dispatcher's last shipment update, so the
-- observation published for the order continues the order's trace (NULL: none came).
ALTER TABLE watch_list ADD COLUMN traceparent TEXT;
