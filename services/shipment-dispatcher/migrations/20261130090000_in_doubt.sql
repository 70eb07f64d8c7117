-- Unknown outcomes (I1, I2): a shipment sent with an unknown outcome may exist in the WMS until
-- a search proves otherwise; it is searched again later, a bounded number of times.
ALTER TABLE shipments
    -- Sent at least once with an unknown outcome and never found: a cart cancel searches
    -- and cancels in the WMS instead of ending CANCELLED without a call.
    ADD COLUMN possibly_in_wms BOOLEAN     NOT NULL DEFAULT false,
    -- Searches since the last claim that found nothing.
    ADD COLUMN doubt_searches  INTEGER     NOT NULL DEFAULT 0,
    -- Not searched before this: the WMS may still apply a request it received.
    ADD COLUMN search_after    TIMESTAMPTZ,
    -- Bumped by every claim: a settle step only applies to the claim it was made for.
    ADD COLUMN claim_token     BIGINT      NOT NULL DEFAULT 0;

-- Rows in doubt before this migration: searched after a minute, as possibly in the WMS.
UPDATE shipments SET possibly_in_wms = true, search_after = updated_at + interval '1 minute'
 WHERE status = 'SENDING';
