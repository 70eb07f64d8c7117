-- The dispatcher's R5 flag: it adopted the shipment after the WMS refused it as a duplicate
-- (registered outside wmslink). A suspected REGISTERED_OUTSIDE_WMSLINK still holds when the
-- dispatcher has since adopted that WMS order with this flag set.
ALTER TABLE watch_list ADD COLUMN registered_outside BOOLEAN NOT NULL DEFAULT false;
