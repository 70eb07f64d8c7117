//! S2 as the help page orders it: enter the key and URL, check them, fill in the details, then
//! 登録. A check of a given key and URL that passed is remembered (in memory, for
//! [`PASSED_CHECK_TTL`]) so that registering exactly that key and URL records it as the
//! current check: the operator never has to check twice. The key is held only as it already is
//! in this process (a secret, never logged); a restart or another replica forgets it, and then
//! the operator checks again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use wmslink_platform::shop::ShopId;

/// How long a passed check of a given key and URL counts for registering them.
pub const PASSED_CHECK_TTL: Duration = Duration::from_secs(15 * 60);

struct Passed {
    endpoint_url: String,
    access_key: SecretString,
    detail: String,
    checked_at: DateTime<Utc>,
    at: Instant,
}

/// The last passed check of a given key and URL, per shop.
#[derive(Default)]
pub struct PassedChecks {
    by_shop: Mutex<HashMap<String, Passed>>,
}

/// A remembered passed check that applies to what is being registered.
pub struct PassedCheck {
    pub detail: String,
    pub checked_at: DateTime<Utc>,
}

impl PassedChecks {
    pub fn remember(
        &self,
        shop: &ShopId,
        endpoint_url: &str,
        access_key: &SecretString,
        detail: &str,
        checked_at: DateTime<Utc>,
    ) {
        let passed = Passed {
            endpoint_url: endpoint_url.to_owned(),
            access_key: access_key.clone(),
            detail: detail.to_owned(),
            checked_at,
            at: Instant::now(),
        };
        if let Ok(mut by_shop) = self.by_shop.lock() {
            by_shop.retain(|_, p| p.at.elapsed() < PASSED_CHECK_TTL);
            by_shop.insert(shop.to_string(), passed);
        }
    }

    /// The passed check of exactly this key and URL, if it is recent (used once).
    pub fn take(
        &self,
        shop: &ShopId,
        endpoint_url: &str,
        access_key: &SecretString,
    ) -> Option<PassedCheck> {
        let mut by_shop = self.by_shop.lock().ok()?;
        let passed = by_shop.get(shop.as_str())?;
        let same_key: bool = passed
            .access_key
            .expose_secret()
            .as_bytes()
            .ct_eq(access_key.expose_secret().as_bytes())
            .into();
        if !same_key
            || passed.endpoint_url != endpoint_url
            || passed.at.elapsed() >= PASSED_CHECK_TTL
        {
            return None;
        }
        by_shop.remove(shop.as_str()).map(|p| PassedCheck {
            detail: p.detail,
            checked_at: p.checked_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exactly_the_checked_key_and_url_count_once() {
        let checks = PassedChecks::default();
        let shop = ShopId::parse("s1").expect("shop");
        let key = SecretString::from("key-1");
        checks.remember(&shop, "https://w/v1", &key, "ok", Utc::now());
        assert!(checks.take(&shop, "https://w/v2", &key).is_none());
        assert!(
            checks
                .take(&shop, "https://w/v1", &SecretString::from("key-2"))
                .is_none()
        );
        assert!(checks.take(&shop, "https://w/v1", &key).is_some());
        assert!(
            checks.take(&shop, "https://w/v1", &key).is_none(),
            "used once"
        );
    }
}
