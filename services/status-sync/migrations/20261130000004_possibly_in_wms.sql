-- The dispatcher's flag: sent with an unknown outcome and not found since, so the WMS may hold
-- the order from wmslink's own send. A WMS order with its number is then not suspected of being
-- registered outside wmslink.
ALTER TABLE watch_list ADD COLUMN possibly_in_wms BOOLEAN NOT NULL DEFAULT false;
