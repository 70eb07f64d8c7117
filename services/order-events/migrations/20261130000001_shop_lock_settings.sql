-- R4 locks an order only while status-sync keeps its WMS status current: the shop enabled, its
-- shipment results synced, and the order dated within its sync period. Rows recorded before
-- these columns existed keep locking as before (results on, the default 30 days) until the
-- shop's next settings event.
ALTER TABLE shops
    ADD COLUMN shipment_results BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN sync_period_days INTEGER NOT NULL DEFAULT 30;
