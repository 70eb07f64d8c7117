-- One row per shop known to the settings service: the version counter shared by its settings
-- and its order-status catalog. Every write locks this row first (SELECT ... FOR UPDATE).
CREATE TABLE shops (
    shop_id    TEXT        PRIMARY KEY,
    version    BIGINT      NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- S1, S3, S4 of a shop, present once registered.
CREATE TABLE shop_settings (
    shop_id                  TEXT        PRIMARY KEY REFERENCES shops (shop_id),
    wms_kind                 TEXT        NOT NULL,
    endpoint_url             TEXT        NOT NULL,
    -- The access key, AES-256-GCM sealed (nonce || ciphertext+tag) with master key `access_key_id`
    -- and the shop id as associated data. Never stored in clear, nor any part of it.
    access_key_id            TEXT        NOT NULL,
    access_key_sealed        BYTEA       NOT NULL,
    -- Bumped whenever the access key or the endpoint URL changes; a connection check is current
    -- only while check_credentials_rev = credentials_rev.
    credentials_rev          BIGINT      NOT NULL,
    ship_instructions        BOOLEAN     NOT NULL,
    ship_cancellations       BOOLEAN     NOT NULL,
    ship_results             BOOLEAN     NOT NULL,
    target_status_codes      TEXT[]      NOT NULL,
    shipper_id               BIGINT      NOT NULL,
    delivery_method_id       BIGINT      NOT NULL,
    sync_period_days         INTEGER     NOT NULL CHECK (sync_period_days BETWEEN 1 AND 365),
    robot_id                 BIGINT      NOT NULL,
    payment_mappings         JSONB       NOT NULL,
    header_free_fields       JSONB       NOT NULL,
    line_free_fields         JSONB       NOT NULL,
    enabled                  BOOLEAN     NOT NULL DEFAULT false,
    check_outcome            TEXT,
    check_detail             TEXT,
    check_at                 TIMESTAMPTZ,
    check_credentials_rev    BIGINT,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The cart's order statuses of a shop, in the cart's order.
CREATE TABLE order_statuses (
    shop_id      TEXT    NOT NULL REFERENCES shops (shop_id),
    code         TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('open', 'cancelled', 'completed')),
    position     INTEGER NOT NULL,
    PRIMARY KEY (shop_id, code)
);
