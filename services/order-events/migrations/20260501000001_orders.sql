-- order-events: known shops, order snapshots, the shipment projection, refused status changes.
-- (The outbox and processed_messages tables come from wmslink-platform.)

-- Shops as the settings service reports them (R6), fed by settings.{shop}.changed. A shop is
-- known (its orders accepted) once its integration settings are registered; an order-status
-- catalog alone does not make it known.
CREATE TABLE shops (
    shop_id          TEXT        PRIMARY KEY,
    settings_version BIGINT      NOT NULL,
    registered       BOOLEAN     NOT NULL,
    enabled          BOOLEAN     NOT NULL,
    last_change      TEXT        NOT NULL,
    changed_at       TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- For the order-number prefix search in date order (a GiST index ordered by distance in time).
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- The latest snapshot of each order (protobuf wmslink.orders.v1.Order), with the columns the
-- list filters and shows. shipping_status and wms_status_id are copies of order_integration
-- (kept in the same transactions) so that every filter has an index.
CREATE TABLE orders (
    shop_id                 TEXT        NOT NULL,
    order_no                TEXT        COLLATE "C" NOT NULL,
    revision                BIGINT      NOT NULL,
    status_code             TEXT        NOT NULL,
    order_date              TIMESTAMPTZ NOT NULL,
    total                   BIGINT      NOT NULL,
    shipping_name           TEXT        NOT NULL,
    snapshot                BYTEA       NOT NULL,
    -- wmslink.orders.v1.ShippingStatus; 1 = NOT_SENT until the dispatcher says otherwise.
    shipping_status         SMALLINT    NOT NULL DEFAULT 1,
    wms_status_id           INTEGER     NOT NULL DEFAULT 0,
    stale_revisions_ignored BIGINT      NOT NULL DEFAULT 0,
    received_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The order_no range of a short prefix search (C collation: byte order).
    PRIMARY KEY (shop_id, order_no) INCLUDE (order_date, shipping_status, wms_status_id, status_code)
);

-- The list is newest first (order_date DESC, order_no DESC) with keyset pagination. Each filter
-- column has an index leading with the shop and that column and ending in the list order, so
-- one value's matches are read in list order and the scan stops after a page. Every list index
-- carries the other filter columns, so the remaining filters are checked on the index alone
-- (index-only scans); the page's rows are fetched afterwards by primary key.
CREATE INDEX orders_list ON orders (shop_id, order_date DESC, order_no DESC)
    INCLUDE (shipping_status, wms_status_id, status_code);
CREATE INDEX orders_list_shipping_status
    ON orders (shop_id, shipping_status, order_date DESC, order_no DESC)
    INCLUDE (wms_status_id, status_code);
CREATE INDEX orders_list_wms_status
    ON orders (shop_id, wms_status_id, order_date DESC, order_no DESC)
    INCLUDE (shipping_status, status_code);
CREATE INDEX orders_list_status_code
    ON orders (shop_id, status_code, order_date DESC, order_no DESC)
    INCLUDE (shipping_status, wms_status_id);
-- A broad order_no prefix (many matches, typically clustered in time): the prefix range
-- nearest-first in time. The key is the expression `order_no || ''` (same value) so that this
-- index never serves plain order_no lookups, which the primary key does better.
CREATE INDEX orders_list_order_no_knn
    ON orders USING gist (shop_id, (order_no || ''), order_date)
    INCLUDE (order_no, shipping_status, wms_status_id, status_code);

-- The projection of shipments.{shop}.updated: the latest state per order by the dispatcher's
-- per-shipment sequence. A row may exist before its order does.
CREATE TABLE order_integration (
    shop_id                      TEXT        NOT NULL,
    order_no                     TEXT        COLLATE "C" NOT NULL,
    sequence                     BIGINT      NOT NULL,
    shipping_status              SMALLINT    NOT NULL,
    wms_status_id                INTEGER     NOT NULL,
    wms_status_name              TEXT        NOT NULL,
    tracking_code                TEXT        NOT NULL,
    shipped_date                 TEXT        NOT NULL,
    edited_after_sending         BOOLEAN     NOT NULL,
    edited_revision              BIGINT      NOT NULL,
    cancel_rejected              BOOLEAN     NOT NULL,
    cancelled_in_wms_unrequested BOOLEAN     NOT NULL,
    last_error                   TEXT        NOT NULL,
    updated_at                   TIMESTAMPTZ NOT NULL,
    applied_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, order_no)
);

-- Snapshots from the cart that changed the status while the WMS was processing the order (R4,
-- NATS path): kept apart, never applied; the cart is told on orders.{shop}.status_change_rejected.
CREATE TABLE rejected_changes (
    id                    BIGSERIAL   PRIMARY KEY,
    shop_id               TEXT        NOT NULL,
    order_no              TEXT        COLLATE "C" NOT NULL,
    revision              BIGINT      NOT NULL,
    requested_status_code TEXT        NOT NULL,
    current_status_code   TEXT        NOT NULL,
    wms_status_id         INTEGER     NOT NULL,
    reason                TEXT        NOT NULL,
    snapshot              BYTEA       NOT NULL,
    event_id              TEXT        NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (shop_id, order_no, revision)
);
