-- R5 anomalies on the order list. status-sync publishes each anomaly it records on
-- wms.{shop}.anomaly (through its outbox); the dispatcher flags an order it adopted after the WMS
-- refused it as a duplicate (registered outside wmslink) on shipments.{shop}.updated. Both land
-- here, one row per (order, kind, WMS order). A row may exist before its order does.
CREATE TABLE order_anomalies (
    shop_id      TEXT        NOT NULL,
    order_no     TEXT        COLLATE "C" NOT NULL,
    -- wmslink.sync.v1.AnomalyKind
    kind         SMALLINT    NOT NULL,
    wms_order_id BIGINT      NOT NULL,
    detail       TEXT        NOT NULL,
    detected_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (shop_id, order_no, kind, wms_order_id)
);

-- The kinds on the order as bits (1 << kind), a copy of order_anomalies kept in the same
-- transactions, for the list and its filter.
ALTER TABLE orders ADD COLUMN anomalies INTEGER NOT NULL DEFAULT 0;

-- The anomaly filter: only orders with an anomaly (few) are in this index, in list order, so
-- a page of them is read without visiting the shop's other orders.
CREATE INDEX orders_list_anomalies ON orders (shop_id, order_date DESC, order_no DESC)
    INCLUDE (anomalies, shipping_status, wms_status_id, status_code)
    WHERE anomalies <> 0;
