-- Cancellations judged correctly (I2): a cancel refused for now (maintenance, busy, lost
-- answer) stays CANCEL_REQUESTED and is tried again with a back-off of its own.
ALTER TABLE shipments
    -- Failed cancel attempts in a row (the back-off doubles with each).
    ADD COLUMN cancel_attempts INTEGER     NOT NULL DEFAULT 0,
    -- Not tried again before this.
    ADD COLUMN cancel_after    TIMESTAMPTZ,
    -- Cancelled in the cart, the cancel not sent: cancellations are not a data target.
    ADD COLUMN cancel_not_sent BOOLEAN     NOT NULL DEFAULT false;
