//! Shop (tenant) identifiers and order numbers, each with one set of limits used at every
//! entry: a shop id becomes a NATS subject token; an order number reaches WMS rows, the WMS's
//! comma-separated `order_no-in` search, logs and page tokens.

use std::fmt;

pub const MAX_SHOP_ID_LEN: usize = 64;

/// A validated shop id: 1..=64 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShopId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopIdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_SHOP_ID_LEN} characters")]
    TooLong,
    #[error("may contain only letters, digits, '-' and '_'")]
    BadCharacter,
}

impl ShopId {
    pub fn parse(raw: &str) -> Result<Self, ShopIdError> {
        if raw.is_empty() {
            return Err(ShopIdError::Empty);
        }
        if raw.len() > MAX_SHOP_ID_LEN {
            return Err(ShopIdError::TooLong);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ShopIdError::BadCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShopId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ShopId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Longest order number, in characters (the WMS's limit).
pub const MAX_ORDER_NO_LEN: usize = 64;

/// A validated order number: 1..=64 of `[A-Za-z0-9._-]`. The same rule holds wherever an order
/// number enters (order-events over gRPC and NATS, the dispatcher, status-sync), so an order one
/// service accepts is never refused by the next.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderNo(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderNoError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ORDER_NO_LEN} characters")]
    TooLong,
    #[error("may contain only letters, digits, '-', '_' and '.'")]
    BadCharacter,
}

impl OrderNo {
    pub fn parse(raw: &str) -> Result<Self, OrderNoError> {
        Self::check(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// Checks `raw` without keeping it (e.g. a prefix filter, which may be shorter).
    pub fn check(raw: &str) -> Result<(), OrderNoError> {
        if raw.is_empty() {
            return Err(OrderNoError::Empty);
        }
        if raw.chars().count() > MAX_ORDER_NO_LEN {
            return Err(OrderNoError::TooLong);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(OrderNoError::BadCharacter);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for OrderNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OrderNo {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_have_one_rule() {
        assert!(OrderNo::parse("2026-0001_a.b").is_ok());
        let longest = "9".repeat(MAX_ORDER_NO_LEN);
        assert_eq!(
            OrderNo::parse(&longest).map(OrderNo::into_string),
            Ok(longest.clone())
        );
        assert_eq!(
            OrderNo::parse(&format!("{longest}9")),
            Err(OrderNoError::TooLong)
        );
        assert_eq!(OrderNo::parse(""), Err(OrderNoError::Empty));
        for bad in ["A 1", "A,B", "A/1", "注文1", "a\n", "a*"] {
            assert_eq!(
                OrderNo::parse(bad),
                Err(OrderNoError::BadCharacter),
                "{bad:?}"
            );
        }
        // The limit counts characters, not bytes.
        assert_eq!(
            OrderNo::parse(&"あ".repeat(30)),
            Err(OrderNoError::BadCharacter)
        );
        assert_eq!(OrderNo::parse(&"あ".repeat(65)), Err(OrderNoError::TooLong));
    }

    #[test]
    fn accepts_subject_safe_ids_and_refuses_others() {
        assert!(ShopId::parse("shop-1_A").is_ok());
        assert_eq!(ShopId::parse(""), Err(ShopIdError::Empty));
        assert_eq!(ShopId::parse("a.b"), Err(ShopIdError::BadCharacter));
        assert_eq!(ShopId::parse("a*"), Err(ShopIdError::BadCharacter));
        assert_eq!(ShopId::parse(&"x".repeat(65)), Err(ShopIdError::TooLong));
    }
}
