//! The committed corpus of bad inbound messages (`tests/corpus/orders/`), replayed through the
//! decoders and checks order-events runs on every cart message: each file is refused with a
//! reason (or, for the few that are only bad in context, such as another shop's order, decoded
//! and checked) without a panic, the same way every time. New files: any payload that once
//! broke something. `WMSLINK_WRITE_CORPUS=1` rewrites the files made from the NATS table.

use std::path::{Path, PathBuf};

use wmslink_order_events::domain::validation::check_order;
use wmslink_platform::consumer::{Encoding, decode};
use wmslink_platform::validation::FieldViolations;
use wmslink_proto::orders::v1 as orders;

use crate::nats::bad_messages;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/orders")
}

/// What the decoders and checks make of one payload, as text.
fn outcome(payload: &[u8], encoding: Encoding) -> String {
    match decode::<orders::Order>(payload, encoding) {
        Err(reason) => reason,
        Ok(order) => {
            let mut violations = FieldViolations::new();
            check_order(
                "order",
                &order,
                prost::Message::encoded_len(&order),
                1024 * 1024,
                &mut violations,
            );
            if violations.is_empty() {
                "valid alone".to_owned()
            } else {
                violations.summary()
            }
        }
    }
}

fn write_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("corpus directory");
    for (index, case) in bad_messages("corpus-shop", "C-1").into_iter().enumerate() {
        if case.payload.len() > 64 * 1024 {
            continue;
        }
        let slug: String = case
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let extension = if case.content_type.contains("json") {
            "json"
        } else {
            "pb"
        };
        std::fs::write(
            dir.join(format!("{index:02}-{slug}.{extension}")),
            &case.payload,
        )
        .expect("corpus file");
    }
}

#[test]
fn the_committed_corpus_replays_without_a_panic() {
    if std::env::var_os("WMSLINK_WRITE_CORPUS").is_some() {
        write_corpus();
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus/orders")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus holds {} files", files.len());
    let mut valid_alone = 0;
    for file in &files {
        let payload = std::fs::read(file).expect("corpus file");
        let encoding = match file.extension().and_then(|e| e.to_str()) {
            Some("json") => Encoding::Json,
            _ => Encoding::Protobuf,
        };
        let first = outcome(&payload, encoding);
        assert_eq!(
            first,
            outcome(&payload, encoding),
            "{file:?}: deterministic"
        );
        assert!(!first.is_empty(), "{file:?}");
        if first == "valid alone" {
            valid_alone += 1;
        }
    }
    // Only the cases that are bad in context (shop, revision, content type) pass alone.
    assert!(
        valid_alone <= 4,
        "{valid_alone} corpus files are valid orders"
    );
}
