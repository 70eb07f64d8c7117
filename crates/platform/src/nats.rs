//! NATS JetStream: connection, subject and stream names (all under a configurable prefix so
//! environments and tests never collide), and idempotent stream set-up.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::shop::ShopId;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    /// One server, or several comma-separated (the seeds of a cluster; the client learns the
    /// other members from them and fails over), e.g. `nats://nats-0:4222,nats://nats-1:4222`.
    pub url: String,
    /// Prepended to every subject (`<prefix>.orders.…`) and stream name (`<PREFIX>_ORDERS`).
    /// Empty: none. Letters, digits, `-` and `_` only.
    pub prefix: String,
    /// Replicas of each stream (3 on a NATS cluster).
    pub stream_replicas: usize,
    /// The service's NATS user (`deploy/nats/accounts.conf`). Empty: none (development).
    pub user: String,
    /// That user's password; serialized as an empty string.
    #[serde(serialize_with = "serialize_redacted")]
    pub password: SecretString,
    /// A NATS credentials file (`.creds`: the user's JWT and nkey seed, as `nsc` writes it)
    /// for servers in operator (JWT) mode. Empty: none. Instead of `user` and `nkey_seed_file`.
    pub credentials_file: String,
    /// A file holding the user's nkey seed (`SU…`), for servers that list users by nkey
    /// (`authorization { users = [ { nkey: U… } ] }`); the seed signs the server's challenge and
    /// never leaves the process. Empty: none. Instead of `user` and `credentials_file`.
    pub nkey_seed_file: String,
    /// PEM file of the authority that signed the server's certificate. Set: TLS is required
    /// and the server is verified against it. Empty: plain TCP unless the server asks for
    /// TLS (then verified against the system's roots).
    pub tls_ca_file: String,
    /// PEM files of a client certificate and its key, for servers that verify clients (both
    /// or neither).
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            prefix: String::new(),
            stream_replicas: 1,
            user: String::new(),
            password: SecretString::from(""),
            credentials_file: String::new(),
            nkey_seed_file: String::new(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

/// How long a stream keeps a message (the dead-letter stream keeps its own longer): a message
/// can be delivered, and so must be recognised as processed, at most this long after it was
/// published.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

impl crate::config::Validate for NatsConfig {
    fn check(&self, section: &str, problems: &mut crate::config::InvalidConfig) {
        use crate::config::key;
        if let Err(err) = self.url.parse::<async_nats::ServerAddr>() {
            problems.add(key(section, "url"), format!("not a NATS URL: {err}"));
        }
        if Subjects::new(&self.prefix).is_err() {
            problems.add(
                key(section, "prefix"),
                "may contain only letters, digits, '-' and '_'",
            );
        }
        problems.check(
            (1..=5).contains(&self.stream_replicas),
            key(section, "stream_replicas"),
            "must be between 1 and 5",
        );
        problems.check(
            !self.user.is_empty() || self.password.expose_secret().is_empty(),
            key(section, "password"),
            "is set without nats.user",
        );
        problems.check(
            self.tls_cert_file.is_empty() == self.tls_key_file.is_empty(),
            key(section, "tls_cert_file"),
            "and nats.tls_key_file go together",
        );
        let ways = [
            !self.user.is_empty(),
            !self.credentials_file.is_empty(),
            !self.nkey_seed_file.is_empty(),
        ];
        problems.check(
            ways.iter().filter(|&&set| set).count() <= 1,
            key(section, "user"),
            "nats.user, nats.credentials_file and nats.nkey_seed_file are alternatives: set one",
        );
    }
}

impl NatsConfig {
    /// Whether the connection authenticates (a user, a credentials file or an nkey).
    pub fn authenticates(&self) -> bool {
        !self.user.is_empty()
            || !self.credentials_file.is_empty()
            || !self.nkey_seed_file.is_empty()
    }

    /// The production rule: NATS is reached as a user of its own (so the server's
    /// permissions, `deploy/nats/accounts.conf`, apply), never anonymously.
    pub fn check_production(
        &self,
        profile: crate::runtime::Profile,
        section: &str,
        problems: &mut crate::config::InvalidConfig,
    ) {
        if profile != crate::runtime::Profile::Production {
            return;
        }
        problems.check(
            self.authenticates(),
            crate::config::key(section, "user"),
            "production needs a NATS identity: nats.user (with nats.password), nats.credentials_file or nats.nkey_seed_file",
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("invalid subject prefix '{0}': letters, digits, '-' and '_' only")]
    Prefix(String),
    #[error("stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
}

/// The servers of `url`: comma-separated, blanks ignored.
pub fn server_urls(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .collect()
}

pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, NatsError> {
    let mut options = async_nats::ConnectOptions::new()
        .name("wmslink")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    let connect_err = |reason: String| NatsError::Connect {
        url: config.url.clone(),
        reason,
    };
    if !config.user.is_empty() {
        options = options.user_and_password(
            config.user.clone(),
            config.password.expose_secret().to_owned(),
        );
    }
    if !config.credentials_file.is_empty() {
        options = options
            .credentials_file(&config.credentials_file)
            .await
            .map_err(|err| {
                connect_err(format!(
                    "credentials file {}: {err}",
                    config.credentials_file
                ))
            })?;
    }
    if !config.nkey_seed_file.is_empty() {
        options = options.nkey(read_nkey_seed(&config.nkey_seed_file).map_err(connect_err)?);
    }
    if !config.tls_ca_file.is_empty() {
        options = options
            .require_tls(true)
            .add_root_certificates(config.tls_ca_file.clone().into());
    }
    if !config.tls_cert_file.is_empty() {
        options = options.add_client_certificate(
            config.tls_cert_file.clone().into(),
            config.tls_key_file.clone().into(),
        );
    }
    options
        .connect(server_urls(&config.url))
        .await
        .map_err(|err| connect_err(err.to_string()))
}

/// The seed in `path`: its first non-blank line, which must be a user seed (`SU…`). The
/// error never quotes the file.
fn read_nkey_seed(path: &str) -> Result<String, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|err| format!("nkey seed file {path}: {err}"))?,
    );
    let seed = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    if !seed.starts_with("SU") {
        return Err(format!(
            "nkey seed file {path}: no user seed (a line starting with SU) in it"
        ));
    }
    Ok(seed.to_owned())
}

/// Every subject and stream name of wmslink, under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    subject_prefix: String,
    stream_prefix: String,
}

/// The streams wmslink uses. Each service ensures those it publishes to or consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `settings.{shop}.changed`
    Settings,
    /// `cart.orders.{shop}.>`, published by the cart.
    CartOrders,
    /// `orders.{shop}.status_changed|updated|status_change_rejected`
    Orders,
    /// `shipments.{shop}.updated`
    Shipments,
    /// `wms.{shop}.observed|anomaly`
    Wms,
    /// `deadletter.>`: messages no consumer could process, with the reason in headers.
    DeadLetters,
}

impl Subjects {
    pub fn new(prefix: &str) -> Result<Self, NatsError> {
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(NatsError::Prefix(prefix.to_owned()));
        }
        Ok(if prefix.is_empty() {
            Self {
                subject_prefix: String::new(),
                stream_prefix: String::new(),
            }
        } else {
            Self {
                subject_prefix: format!("{prefix}."),
                stream_prefix: format!("{}_", prefix.to_ascii_uppercase().replace('-', "_")),
            }
        })
    }

    fn subject(&self, rest: &str) -> String {
        format!("{}{rest}", self.subject_prefix)
    }

    /// Removes the prefix from a full subject, e.g. to read the shop token.
    pub fn strip<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(&self.subject_prefix)
    }

    pub fn stream_name(&self, kind: StreamKind) -> String {
        let base = match kind {
            StreamKind::Settings => "SETTINGS",
            StreamKind::CartOrders => "CART_ORDERS",
            StreamKind::Orders => "ORDERS",
            StreamKind::Shipments => "SHIPMENTS",
            StreamKind::Wms => "WMS",
            StreamKind::DeadLetters => "DEAD_LETTERS",
        };
        format!("{}{base}", self.stream_prefix)
    }

    pub fn stream_subjects(&self, kind: StreamKind) -> Vec<String> {
        let rest = match kind {
            StreamKind::Settings => "settings.*.changed",
            StreamKind::CartOrders => "cart.orders.*.>",
            StreamKind::Orders => "orders.*.*",
            StreamKind::Shipments => "shipments.*.*",
            StreamKind::Wms => "wms.*.*",
            StreamKind::DeadLetters => "deadletter.>",
        };
        vec![self.subject(rest)]
    }

    pub fn settings_changed(&self, shop: &ShopId) -> String {
        self.subject(&format!("settings.{shop}.changed"))
    }
    pub fn settings_changed_all(&self) -> String {
        self.subject("settings.*.changed")
    }
    pub fn cart_order_upserted(&self, shop: &ShopId) -> String {
        self.subject(&format!("cart.orders.{shop}.upserted"))
    }
    pub fn cart_orders_all(&self) -> String {
        self.subject("cart.orders.*.>")
    }
    /// `cart.orders.*.upserted`: every shop's order snapshots (a consumer filter).
    pub fn cart_orders_upserted_all(&self) -> String {
        self.subject("cart.orders.*.upserted")
    }
    pub fn order_status_changed(&self, shop: &ShopId) -> String {
        self.subject(&format!("orders.{shop}.status_changed"))
    }
    pub fn order_status_changed_all(&self) -> String {
        self.subject("orders.*.status_changed")
    }
    pub fn order_updated(&self, shop: &ShopId) -> String {
        self.subject(&format!("orders.{shop}.updated"))
    }
    pub fn order_updated_all(&self) -> String {
        self.subject("orders.*.updated")
    }
    pub fn order_status_change_rejected(&self, shop: &ShopId) -> String {
        self.subject(&format!("orders.{shop}.status_change_rejected"))
    }
    pub fn shipments_updated(&self, shop: &ShopId) -> String {
        self.subject(&format!("shipments.{shop}.updated"))
    }
    pub fn shipments_updated_all(&self) -> String {
        self.subject("shipments.*.updated")
    }
    pub fn wms_observed(&self, shop: &ShopId) -> String {
        self.subject(&format!("wms.{shop}.observed"))
    }
    pub fn wms_observed_all(&self) -> String {
        self.subject("wms.*.observed")
    }
    pub fn wms_anomaly(&self, shop: &ShopId) -> String {
        self.subject(&format!("wms.{shop}.anomaly"))
    }
    pub fn wms_anomaly_all(&self) -> String {
        self.subject("wms.*.anomaly")
    }
    /// Where a message that arrived on `original_subject` goes when it cannot be processed.
    pub fn dead_letter(&self, original_subject: &str) -> String {
        let original = self.strip(original_subject).unwrap_or(original_subject);
        self.subject(&format!("deadletter.{original}"))
    }
    pub fn dead_letters_all(&self) -> String {
        self.subject("deadletter.>")
    }

    /// The shop token of a subject `<prefix>.<area>.<shop>.…` (or `cart.orders.<shop>.…`).
    pub fn shop_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let rest = self.strip(subject)?;
        let rest = rest.strip_prefix("deadletter.").unwrap_or(rest);
        let mut tokens = rest.split('.');
        match tokens.next()? {
            "cart" => {
                tokens.next()?;
                tokens.next()
            }
            _ => tokens.next(),
        }
    }
}

/// Creates each stream, or updates its config when it exists (idempotent, safe on every start).
pub async fn ensure_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
    kinds: &[StreamKind],
    replicas: usize,
) -> Result<(), NatsError> {
    for &kind in kinds {
        let name = subjects.stream_name(kind);
        let max_age = match kind {
            StreamKind::DeadLetters => DEAD_LETTER_MAX_AGE,
            _ => STREAM_MAX_AGE,
        };
        let config = stream::Config {
            name: name.clone(),
            subjects: subjects.stream_subjects(kind),
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let stream_err = |reason: String| NatsError::Stream {
            stream: name.clone(),
            reason,
        };
        match js.get_stream(&name).await {
            Ok(_) => {
                js.update_stream(&config)
                    .await
                    .map_err(|err| stream_err(err.to_string()))?;
            }
            Err(_) => {
                if let Err(err) = js.create_stream(config.clone()).await {
                    // Another replica may have created it in between.
                    js.update_stream(&config)
                        .await
                        .map_err(|update| stream_err(format!("{err}; then {update}")))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_shop() {
        let subjects = Subjects::new("t-1").expect("prefix");
        let shop = ShopId::parse("shop1").expect("shop");
        assert_eq!(
            subjects.order_status_changed(&shop),
            "t-1.orders.shop1.status_changed"
        );
        assert_eq!(subjects.stream_name(StreamKind::Orders), "T_1_ORDERS");
        assert_eq!(
            subjects.shop_of("t-1.cart.orders.shop1.upserted"),
            Some("shop1")
        );
        assert_eq!(subjects.shop_of("t-1.orders.shop1.updated"), Some("shop1"));
        assert_eq!(
            subjects.dead_letter("t-1.cart.orders.shop1.upserted"),
            "t-1.deadletter.cart.orders.shop1.upserted"
        );
        assert_eq!(
            server_urls("nats://a:4222, nats://b:4222,,"),
            ["nats://a:4222", "nats://b:4222"]
        );
        let plain = Subjects::new("").expect("no prefix");
        assert_eq!(plain.settings_changed(&shop), "settings.shop1.changed");
        assert!(Subjects::new("a.b").is_err());
    }
}
