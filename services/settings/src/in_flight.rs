//! Moving a shop's WMS endpoint while work is bound to the old one is refused: before the
//! endpoint URL changes, the settings service asks the shipment dispatcher (its
//! `GetInFlight`, scope `orders.read`) how many of the shop's shipments may be in the WMS
//! without proof either way and how many cancellations are pending. Those can only be settled
//! at the endpoint they were sent to: searched and cancelled at a new one they would be "not
//! found", and a cancellation would be lost. So the change waits until they are settled.
//!
//! The `[dispatcher]` section says where the dispatcher is. Without a URL the check is off (a
//! warning at start; the production profile refuses that). An unreachable dispatcher refuses
//! the change (nothing proves it safe).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use wmslink_platform::auth::BearerToken;
use wmslink_platform::config::{InvalidConfig, Validate, key};
use wmslink_platform::grpc::ClientTls;
use wmslink_platform::runtime::Profile;
use wmslink_platform::shop::ShopId;
use wmslink_proto::dispatch::v1::GetInFlightRequest;
use wmslink_proto::dispatch::v1::dispatch_service_client::DispatchServiceClient;

use crate::domain::Blocker;

/// The `[dispatcher]` section: the shipment dispatcher asked before an endpoint changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatcherConfig {
    /// The dispatcher's gRPC URL, e.g. `http://127.0.0.1:50053`. Empty (the default): endpoint
    /// changes are not checked (development only; the production profile refuses it).
    pub url: String,
    /// A bearer token with the dispatcher's `orders.read` scope; serialized as an empty string.
    #[serde(serialize_with = "serialize_redacted")]
    pub token: SecretString,
    /// Connect timeout and deadline of the question (at least 100). Default 5,000.
    pub timeout_ms: u64,
    /// TLS to the dispatcher (`tls.ca_file` set: the URL must be `https://`).
    pub tls: ClientTls,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token: SecretString::from(""),
            timeout_ms: 5_000,
            tls: ClientTls::default(),
        }
    }
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

impl DispatcherConfig {
    /// The production profile needs the check on, with a production token.
    pub fn check_production(&self, profile: Profile, section: &str, problems: &mut InvalidConfig) {
        if profile != Profile::Production {
            return;
        }
        problems.check(
            !self.url.is_empty(),
            key(section, "url"),
            "must be set in production: an endpoint change must not lose the shipments in doubt and the cancellations pending at the old endpoint",
        );
        wmslink_platform::secrets::check_production_token(
            profile,
            key(section, "token"),
            "the token presented to the dispatcher",
            &self.token,
            problems,
        );
    }
}

impl Validate for DispatcherConfig {
    fn check(&self, section: &str, problems: &mut InvalidConfig) {
        if !self.url.is_empty()
            && let Err(err) = Endpoint::from_shared(self.url.clone())
        {
            problems.add(key(section, "url"), format!("not a URL: {err}"));
        }
        if !self.url.is_empty() {
            self.tls.check_with_url(&self.url, section, problems);
        }
        problems.check(
            self.timeout_ms >= 100,
            key(section, "timeout_ms"),
            "must be at least 100",
        );
    }
}

/// What of a shop's work is bound to its current endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InFlight {
    pub in_doubt: u32,
    pub cancels_pending: u32,
}

impl InFlight {
    pub fn is_empty(&self) -> bool {
        self.in_doubt == 0 && self.cancels_pending == 0
    }

    /// Why the endpoint may not change now (`None`: it may).
    pub fn blocker(&self) -> Option<Blocker> {
        if self.is_empty() {
            return None;
        }
        Some(Blocker::new(
            "IN_FLIGHT",
            "detail.endpoint_url",
            format!(
                "{} shipment(s) may be in the WMS at the current endpoint (sent with an unknown outcome and not found yet) and {} cancellation(s) are pending there; they can only be settled at the endpoint they were sent to, so change the endpoint once the dispatcher has settled them (GetShipment shows each one)",
                self.in_doubt, self.cancels_pending
            ),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InFlightError {
    #[error("the dispatcher cannot be asked: {0}")]
    Config(String),
    /// The dispatcher did not answer (or refused the question): nothing proves the change safe.
    #[error("the shipment dispatcher did not say what is in flight ({code:?}: {message})")]
    Unanswered { code: tonic::Code, message: String },
}

type Client = DispatchServiceClient<InterceptedService<Channel, BearerToken>>;

/// Asks the dispatcher; `None` when the check is off (no URL).
pub struct InFlightCheck {
    client: Option<Client>,
}

impl InFlightCheck {
    /// Connects lazily; fails only on a URL or token that cannot be used.
    pub fn new(config: &DispatcherConfig) -> Result<Self, InFlightError> {
        if config.url.is_empty() {
            tracing::warn!(
                "dispatcher.url is empty: endpoint changes are not checked against the shipments in doubt and the cancellations pending"
            );
            return Ok(Self { client: None });
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let channel = wmslink_platform::grpc::client_endpoint(&config.url, &config.tls)
            .map_err(|err| InFlightError::Config(err.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        if config.token.expose_secret().is_empty() {
            tracing::warn!("dispatcher.token is empty: the dispatcher will refuse the question");
        }
        let token = BearerToken::new(&config.token)
            .map_err(|status| InFlightError::Config(status.message().to_owned()))?;
        Ok(Self {
            client: Some(DispatchServiceClient::with_interceptor(channel, token)),
        })
    }

    /// No check.
    pub fn off() -> Self {
        Self { client: None }
    }

    /// What of the shop's work is bound to its endpoint; `None` when the check is off.
    pub async fn ask(&self, shop: &ShopId) -> Result<Option<InFlight>, InFlightError> {
        let Some(client) = &self.client else {
            return Ok(None);
        };
        let answer = client
            .clone()
            .get_in_flight(GetInFlightRequest {
                shop_id: shop.to_string(),
            })
            .await
            .map_err(|status| InFlightError::Unanswered {
                code: status.code(),
                message: status.message().to_owned(),
            })?
            .into_inner();
        Ok(Some(InFlight {
            in_doubt: answer.in_doubt,
            cancels_pending: answer.cancels_pending,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_work_in_flight_blocks_and_the_reason_counts_it() {
        assert_eq!(InFlight::default().blocker(), None);
        let blocker = InFlight {
            in_doubt: 2,
            cancels_pending: 1,
        }
        .blocker()
        .expect("blocked");
        assert_eq!(blocker.kind, "IN_FLIGHT");
        assert_eq!(blocker.subject, "detail.endpoint_url");
        assert!(
            blocker
                .description
                .starts_with("2 shipment(s) may be in the WMS")
                && blocker
                    .description
                    .contains("1 cancellation(s) are pending"),
            "{}",
            blocker.description
        );
        assert!(
            InFlight {
                in_doubt: 0,
                cancels_pending: 3
            }
            .blocker()
            .is_some()
        );
    }

    #[test]
    fn production_needs_the_check_on() {
        let mut problems = InvalidConfig::default();
        DispatcherConfig::default().check_production(
            Profile::Production,
            "dispatcher",
            &mut problems,
        );
        let text = problems.to_string();
        assert!(
            text.contains("dispatcher.url: must be set in production"),
            "{text}"
        );
        let mut problems = InvalidConfig::default();
        DispatcherConfig::default().check_production(
            Profile::Development,
            "dispatcher",
            &mut problems,
        );
        assert!(problems.problems().is_empty());
    }
}
