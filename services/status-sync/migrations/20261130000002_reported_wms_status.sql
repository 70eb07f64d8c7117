-- The WMS status the dispatcher's last shipment update reports (NULL: none reported yet). A full
-- pass publishes an observation again when the dispatcher still does not reflect it.
ALTER TABLE watch_list ADD COLUMN reported_wms_status_id INTEGER;
