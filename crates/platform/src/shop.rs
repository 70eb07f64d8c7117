//! Shop (tenant) identifiers. A shop id becomes a NATS subject token, so it is restricted.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_subject_safe_ids_and_refuses_others() {
        assert!(ShopId::parse("shop-1_A").is_ok());
        assert_eq!(ShopId::parse(""), Err(ShopIdError::Empty));
        assert_eq!(ShopId::parse("a.b"), Err(ShopIdError::BadCharacter));
        assert_eq!(ShopId::parse("a*"), Err(ShopIdError::BadCharacter));
        assert_eq!(ShopId::parse(&"x".repeat(65)), Err(ShopIdError::TooLong));
    }
}
