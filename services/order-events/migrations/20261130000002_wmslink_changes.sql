-- Status changes made through ChangeOrderStatus on top of the cart's revision (revisions belong
-- to the cart: such a change keeps the revision, and the cart's next snapshot replaces it).
-- 0 after every snapshot of the cart.
ALTER TABLE orders ADD COLUMN wmslink_changes INTEGER NOT NULL DEFAULT 0;
