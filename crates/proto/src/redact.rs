//! Debug output for messages that carry a WMS access key: the key never reaches a log line,
//! even through a stray `{:?}`.

use std::fmt;

use crate::settings::v1::{CheckConnectionRequest, RegisterSettingsRequest};

fn redacted(key: &Option<String>) -> &'static str {
    match key {
        Some(_) => "Some([redacted])",
        None => "None",
    }
}

impl fmt::Debug for RegisterSettingsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterSettingsRequest")
            .field("shop_id", &self.shop_id)
            .field("expected_version", &self.expected_version)
            .field("detail", &self.detail)
            .field(
                "access_key",
                &format_args!("{}", redacted(&self.access_key)),
            )
            .finish()
    }
}

impl fmt::Debug for CheckConnectionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckConnectionRequest")
            .field("shop_id", &self.shop_id)
            .field(
                "access_key",
                &format_args!("{}", redacted(&self.access_key)),
            )
            .field("endpoint_url", &self.endpoint_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_access_key() {
        let register = RegisterSettingsRequest {
            shop_id: "s".into(),
            access_key: Some("ak-SECRET-123456".into()),
            ..Default::default()
        };
        let check = CheckConnectionRequest {
            shop_id: "s".into(),
            access_key: Some("ak-SECRET-123456".into()),
            endpoint_url: None,
        };
        for text in [format!("{register:?}"), format!("{check:?}")] {
            assert!(!text.contains("ak-SECRET"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
}
