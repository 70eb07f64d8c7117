//! WMS text comes from an endpoint the tenant chose: every name, code and message is bounded
//! and cleaned when an answer is parsed, before it reaches rows, events and logs, so one odd
//! status name (a control character, 10,000 characters) cannot make every later update of an
//! order invalid downstream.

use serde::{Deserialize, Deserializer};

/// Error codes (`E_DUPLICATE`).
pub const MAX_WMS_CODE_CHARS: usize = 64;
/// Status names and tracking codes.
pub const MAX_WMS_NAME_CHARS: usize = 100;
/// Error messages.
pub const MAX_WMS_MESSAGE_CHARS: usize = 500;

/// `raw` with control, bidirectional-override and zero-width characters replaced by spaces,
/// trimmed, and cut to `max_chars` characters (the last one `…` when cut).
pub fn sanitize_wms_text(raw: &str, max_chars: usize) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if is_unsafe(c) { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.chars().count() <= max_chars {
        return trimmed.to_owned();
    }
    let mut cut: String = trimmed.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn de_bounded<'de, D: Deserializer<'de>>(d: D, max: usize) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .map(|raw| sanitize_wms_text(&raw, max))
        .unwrap_or_default())
}

pub(crate) fn de_code<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de_bounded(d, MAX_WMS_CODE_CHARS)
}

pub(crate) fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de_bounded(d, MAX_WMS_NAME_CHARS)
}

pub(crate) fn de_message<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de_bounded(d, MAX_WMS_MESSAGE_CHARS)
}

pub(crate) fn de_opt_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .map(|raw| sanitize_wms_text(&raw, MAX_WMS_NAME_CHARS))
        .filter(|text| !text.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wms_text_is_cleaned_and_bounded() {
        assert_eq!(sanitize_wms_text("出荷待ち", 100), "出荷待ち");
        assert_eq!(
            sanitize_wms_text(" a\u{0007}b\r\nc\u{202E}d\u{200B} ", 100),
            "a b  c d"
        );
        let long = "処".repeat(10_000);
        let cut = sanitize_wms_text(&long, MAX_WMS_NAME_CHARS);
        assert_eq!(cut.chars().count(), MAX_WMS_NAME_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(sanitize_wms_text("abc", 3), "abc");
        assert_eq!(sanitize_wms_text("abcd", 3), "ab…");
    }
}
