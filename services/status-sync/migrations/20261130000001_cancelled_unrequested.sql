-- The dispatcher's R5 flag: the WMS cancelled the shipment while nobody asked for it. A suspected
-- CANCELLED_UNREQUESTED still holds when the dispatcher has since reported CANCELLED with it set.
ALTER TABLE watch_list ADD COLUMN cancelled_unrequested BOOLEAN NOT NULL DEFAULT false;
