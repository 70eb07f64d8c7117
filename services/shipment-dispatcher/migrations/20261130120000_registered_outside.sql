-- R5: the WMS refused the registration as a duplicate (E_DUPLICATE) and the order was found
-- there: it was registered outside wmslink (CSV import, manual entry). Adopted without sending
-- it again; the flag stays.
ALTER TABLE shipments ADD COLUMN registered_outside_wmslink BOOLEAN NOT NULL DEFAULT false;
