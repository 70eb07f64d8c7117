-- status-sync owns: the watch list (every shipment the dispatcher told us about, with the last
-- WMS state seen), sync runs, per-shop cursors and leases, anomaly suspects and anomalies.

-- Shops to consider: those with shipments, and those whose settings changed.
CREATE TABLE shops (
    shop_id       TEXT PRIMARY KEY,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE watch_list (
    shop_id         TEXT        NOT NULL,
    order_no        TEXT        NOT NULL,
    -- 0 until the WMS registered it.
    wms_order_id    BIGINT      NOT NULL DEFAULT 0,
    order_date      TIMESTAMPTZ NOT NULL,
    -- SENT, CANCEL_REQUESTED, ... (ShippingStatus without its prefix).
    shipping_status TEXT        NOT NULL,
    -- The dispatcher's per-shipment sequence; only newer ones are applied.
    sequence        BIGINT      NOT NULL,
    shipped_at      TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The last WMS state seen (NULL: never seen).
    obs_wms_order_id       BIGINT,
    obs_status_id          INTEGER,
    obs_status_name        TEXT,
    obs_cancelled          BOOLEAN,
    obs_shipped            BOOLEAN,
    obs_shipping_status_id INTEGER,
    obs_tracking_code      TEXT,
    obs_shipping_date      TEXT,
    obs_wms_updated_at     TIMESTAMPTZ,
    observed_at            TIMESTAMPTZ,
    -- Last time the WMS returned it in any answer.
    wms_seen_at            TIMESTAMPTZ,
    PRIMARY KEY (shop_id, order_no)
);
CREATE INDEX watch_list_open ON watch_list (shop_id, order_date)
    WHERE shipping_status IN ('SENT', 'CANCEL_REQUESTED', 'CANCEL_REJECTED', 'SHIPPED');

CREATE TABLE sync_cursors (
    shop_id           TEXT PRIMARY KEY,
    -- Start of the last successful update_date search.
    updated_since     TIMESTAMPTZ,
    passes_since_full INTEGER     NOT NULL DEFAULT 0,
    last_full_at      TIMESTAMPTZ,
    next_due_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    failures          INTEGER     NOT NULL DEFAULT 0,
    last_success_at   TIMESTAMPTZ
);

-- One runner per shop across replicas.
CREATE TABLE sync_leases (
    shop_id    TEXT PRIMARY KEY,
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE sync_runs (
    run_id      UUID PRIMARY KEY,
    shop_id     TEXT        NOT NULL,
    trigger     TEXT        NOT NULL,
    pass        TEXT        NOT NULL,
    outcome     TEXT        NOT NULL DEFAULT 'running',
    period_from TIMESTAMPTZ NOT NULL,
    period_to   TIMESTAMPTZ,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    asked       INTEGER     NOT NULL DEFAULT 0,
    changed     INTEGER     NOT NULL DEFAULT 0,
    anomalies   INTEGER     NOT NULL DEFAULT 0,
    wms_calls   INTEGER     NOT NULL DEFAULT 0,
    errors      INTEGER     NOT NULL DEFAULT 0,
    last_error  TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX sync_runs_by_shop ON sync_runs (shop_id, started_at DESC);

-- Looks like an anomaly; reported when it still holds after the grace time.
CREATE TABLE anomaly_candidates (
    shop_id         TEXT        NOT NULL,
    kind            TEXT        NOT NULL,
    order_no        TEXT        NOT NULL,
    wms_order_id    BIGINT      NOT NULL,
    wms_status_id   INTEGER     NOT NULL,
    wms_status_name TEXT        NOT NULL,
    detail          TEXT        NOT NULL,
    first_seen_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (shop_id, kind, order_no, wms_order_id)
);

CREATE TABLE anomalies (
    anomaly_id      UUID PRIMARY KEY,
    shop_id         TEXT        NOT NULL,
    kind            TEXT        NOT NULL,
    order_no        TEXT        NOT NULL,
    wms_order_id    BIGINT      NOT NULL,
    wms_status_id   INTEGER     NOT NULL,
    wms_status_name TEXT        NOT NULL,
    detail          TEXT        NOT NULL,
    detected_at     TIMESTAMPTZ NOT NULL,
    run_id          UUID        NOT NULL,
    UNIQUE (shop_id, kind, order_no, wms_order_id)
);
CREATE INDEX anomalies_by_shop ON anomalies (shop_id, detected_at DESC);
