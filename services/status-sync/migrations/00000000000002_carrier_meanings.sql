-- The carrier status as the WMS adapter gives it: its name, and whether it is final (nothing
-- more will happen to the shipment). Stored as a meaning so that status-sync needs no WMS
-- status ids to decide what is still watched.
ALTER TABLE watch_list
    ADD COLUMN obs_shipping_status_name TEXT,
    ADD COLUMN obs_carrier_final        BOOLEAN;

-- Observations stored before: COMMERCE ROBO's final carrier statuses are delivered (1),
-- returned (12) and cancelled (32).
UPDATE watch_list
   SET obs_carrier_final = obs_shipping_status_id IN (1, 12, 32)
 WHERE obs_shipping_status_id IS NOT NULL;
