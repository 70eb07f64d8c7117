-- One row per (shop, order_no): the latest order snapshot and the shipping-status state machine.
CREATE TABLE shipments (
    shop_id                      TEXT        NOT NULL,
    order_no                     TEXT        NOT NULL,
    status                       TEXT        NOT NULL CHECK (status IN (
                                     'NOT_SENT', 'QUEUED', 'SENDING', 'SENT', 'SHIPPED',
                                     'CANCEL_REQUESTED', 'CANCELLED', 'CANCEL_REJECTED', 'ERROR')),
    -- The newest snapshot seen (protobuf wmslink.orders.v1.Order) and what we index of it.
    order_revision               BIGINT      NOT NULL,
    order_snapshot               BYTEA       NOT NULL,
    order_status_code            TEXT        NOT NULL,
    order_date                   TIMESTAMPTZ,
    content_fingerprint          TEXT        NOT NULL,
    -- What was sent (claimed for registration): R1 compares later content with it.
    sent_revision                BIGINT,
    sent_fingerprint             TEXT,
    -- The WMS side.
    wms_order_id                 BIGINT,
    wms_status_id                INTEGER,
    wms_status_name              TEXT,
    wms_updated_at               TIMESTAMPTZ,
    tracking_code                TEXT,
    shipped_date                 TEXT,
    -- Flags.
    edited_after_sending         BOOLEAN     NOT NULL DEFAULT false,
    edited_revision              BIGINT,
    cancelled_in_wms_unrequested BOOLEAN     NOT NULL DEFAULT false,
    cancel_pending               BOOLEAN     NOT NULL DEFAULT false,
    cancel_rejected              BOOLEAN     NOT NULL DEFAULT false,
    last_error                   TEXT,
    queued_at                    TIMESTAMPTZ,
    -- Bumped with every published ShipmentUpdated.
    sequence                     BIGINT      NOT NULL DEFAULT 0,
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, order_no)
);

-- The sender's work lists.
CREATE INDEX shipments_queued ON shipments (shop_id, queued_at, order_no) WHERE status = 'QUEUED';
CREATE INDEX shipments_in_doubt ON shipments (shop_id, order_no)
    WHERE status IN ('SENDING', 'CANCEL_REQUESTED');
-- E1/E2: not yet sent, by order date.
CREATE INDEX shipments_not_sent ON shipments (shop_id, order_date) WHERE status = 'NOT_SENT';

-- Every state change and every WMS exchange of a shipment, for GetShipment.
CREATE TABLE shipment_history (
    id               BIGSERIAL   PRIMARY KEY,
    shop_id          TEXT        NOT NULL,
    order_no         TEXT        NOT NULL,
    at               TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    kind             TEXT        NOT NULL,
    from_status      TEXT        NOT NULL DEFAULT '',
    to_status        TEXT        NOT NULL DEFAULT '',
    reason           TEXT        NOT NULL DEFAULT '',
    request_summary  TEXT        NOT NULL DEFAULT '',
    response_summary TEXT        NOT NULL DEFAULT '',
    error            TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX shipment_history_by_shipment ON shipment_history (shop_id, order_no, id);
