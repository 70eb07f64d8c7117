//! Bearer-token authentication for gRPC callers, with scopes.
//!
//! Every calling service has its own token and a list of scopes. The [`Authenticator`] compares
//! the presented token against every configured one in constant time. Scopes are checked by
//! the [`Authorize`](crate::authz::Authorize) layer from each service's one table, never by
//! handlers, which only read the caller's name ([`caller_name`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Scopes understood by wmslink services.
pub mod scopes {
    pub const SETTINGS_READ: &str = "settings.read";
    pub const SETTINGS_WRITE: &str = "settings.write";
    /// Read the sealed WMS access key (services that call the WMS).
    pub const SETTINGS_CREDENTIALS: &str = "settings.credentials";
    pub const ORDERS_READ: &str = "orders.read";
    pub const ORDERS_WRITE: &str = "orders.write";
    pub const OPERATE: &str = "operate";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenConfig {
    /// Who holds the token, e.g. `cart`, `shipment-dispatcher`.
    pub caller: String,
    #[serde(serialize_with = "serialize_redacted")]
    pub token: SecretString,
    pub scopes: Vec<String>,
    /// The shops the token may act on (an operator console for one merchant); empty: every
    /// shop. Enforced by the [`Authorize`](crate::authz::Authorize) layer, which refuses
    /// calls that span every shop to a bound token.
    #[serde(default)]
    pub shops: Vec<String>,
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    scopes: Arc<BTreeSet<String>>,
    /// `None`: every shop.
    shops: Option<Arc<BTreeSet<String>>>,
}

impl Caller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The shops the caller is bound to; `None` for every shop.
    pub fn shops(&self) -> Option<&BTreeSet<String>> {
        self.shops.as_deref()
    }
}

struct Credential {
    token: SecretString,
    caller: Caller,
}

/// Finds the caller of a bearer token.
#[derive(Clone)]
pub struct Authenticator {
    credentials: Arc<Vec<Credential>>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        let credentials = config
            .tokens
            .iter()
            .filter(|token| !token.token.expose_secret().is_empty())
            .map(|token| Credential {
                token: token.token.clone(),
                caller: Caller {
                    name: token.caller.clone(),
                    scopes: Arc::new(token.scopes.iter().cloned().collect()),
                    shops: (!token.shops.is_empty())
                        .then(|| Arc::new(token.shops.iter().cloned().collect())),
                },
            })
            .collect();
        Self {
            credentials: Arc::new(credentials),
        }
    }

    /// The caller whose token is `presented`.
    pub fn caller_of(&self, presented: &[u8]) -> Option<Caller> {
        // Compare against every token, without stopping early, so timing tells nothing.
        let mut found = None;
        for credential in self.credentials.iter() {
            let expected = credential.token.expose_secret().as_bytes();
            if bool::from(expected.ct_eq(presented)) {
                found = Some(credential.caller.clone());
            }
        }
        found
    }
}

/// The name of the caller the [`Authorize`](crate::authz::Authorize) layer authenticated,
/// for logs and audit (`unknown` if the request did not pass the layer).
pub fn caller_name<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "unknown".to_owned(), |caller| caller.name.clone())
}

/// A client-side interceptor adding `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerToken {
    header: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl BearerToken {
    pub fn new(token: &SecretString) -> Result<Self, Status> {
        let mut header: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {}", token.expose_secret())
                .parse()
                .map_err(|_| Status::internal("token is not valid ASCII"))?;
        header.set_sensitive(true);
        Ok(Self { header })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig {
            tokens: vec![TokenConfig {
                caller: "cart".into(),
                token: SecretString::from("s3cret-token"),
                scopes: vec![scopes::SETTINGS_READ.into()],
                shops: Vec::new(),
            }],
        })
    }

    #[test]
    fn a_token_names_its_caller_and_scopes() {
        let auth = authenticator();
        for wrong in ["", "nope", "s3cret-toke", "s3cret-token2"] {
            assert!(auth.caller_of(wrong.as_bytes()).is_none(), "{wrong}");
        }
        let caller = auth.caller_of(b"s3cret-token").expect("known");
        assert_eq!(caller.name, "cart");
        assert!(caller.has_scope(scopes::SETTINGS_READ));
        assert!(!caller.has_scope(scopes::SETTINGS_WRITE));
        assert!(caller.shops().is_none());
    }
}
