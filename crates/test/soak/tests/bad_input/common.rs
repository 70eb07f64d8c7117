//! The system the bad-input cases run against, and how they read its answers.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use wmslink_e2e::{OPERATOR_TOKEN, System, SystemOptions};
use wmslink_platform::auth::BearerToken;
use wmslink_proto::ops::v1 as ops;
use wmslink_proto::ops::v1::dead_letter_service_client::DeadLetterServiceClient;
use wmslink_test_harness::grpc::{bearer, channel};

pub const WAIT: Duration = Duration::from_secs(60);

pub type DeadLetterClient = DeadLetterServiceClient<InterceptedService<Channel, BearerToken>>;

/// The whole system with one enabled shop; returns it, the shop and its WMS access key.
pub async fn system_with_shop() -> (System, String, String) {
    let system = System::start(SystemOptions::default())
        .await
        .expect("system starts");
    let shop = wmslink_testkit::unique("shop-");
    let key = system.enable_shop(&shop).await.expect("shop enabled");
    (system, shop, key)
}

pub fn dead_letters_client(system: &System) -> DeadLetterClient {
    DeadLetterServiceClient::with_interceptor(channel(system.orders_addr()), bearer(OPERATOR_TOKEN))
}

/// Every dead letter so far, oldest first.
pub async fn dead_letters(system: &System) -> Vec<ops::DeadLetter> {
    let mut client = dead_letters_client(system);
    let mut letters = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list(ops::ListDeadLettersRequest {
                subject: String::new(),
                page_size: 500,
                page_token: page_token.clone(),
            })
            .await
            .expect("dead letters listed")
            .into_inner();
        letters.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            return letters;
        }
        page_token = page.next_page_token;
    }
}

/// Asserts `status` is INVALID_ARGUMENT whose BadRequest details name `field` (a prefix of
/// a violation's field path), and the message names it too.
pub fn assert_invalid_field(case: &str, status: &tonic::Status, field: &str) {
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{case}: {status:?}"
    );
    let fields: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        fields.iter().any(|f| f.starts_with(field)),
        "{case}: no violation of {field} in {fields:?} ({})",
        status.message()
    );
    assert!(
        status.message().contains(field),
        "{case}: the message {:?} does not name {field}",
        status.message()
    );
}
