-- Multi-channel WMS accounts: the order-number prefix of this shop's WMS orders ('' = all).
ALTER TABLE shop_settings ADD COLUMN wms_order_no_prefix TEXT NOT NULL DEFAULT '';
