//! Authorization as a layer, so no handler can forget it: each service declares every RPC's
//! scope, and where the request names its shop, in one table ([`MethodRule`]s); the
//! [`Authorize`] layer authenticates the bearer token, checks the scope and, for a token bound
//! to shops, that the request's shop is one of them, before the handler runs. An RPC missing
//! from the table is refused.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

use crate::auth::{AuthConfig, Authenticator, Caller};

/// Where a request names its shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopRule {
    /// Field 1 of the request message is the shop id (`string shop_id = 1`).
    ShopIdField1,
    /// Field 1 of the message in the request's field 1 is the shop id
    /// (`UpsertOrderRequest { Order order = 1 }`, `Order { string shop_id = 1 }`).
    ShopIdField1OfField1,
    /// The RPC spans every shop (a listing): tokens bound to shops are refused.
    AllShops,
}

/// One RPC of the table: its full path (`/wmslink.settings.v1.SettingsService/GetSettings`),
/// the scope it needs and where its shop is.
#[derive(Debug, Clone, Copy)]
pub struct MethodRule {
    pub method: &'static str,
    pub scope: &'static str,
    pub shop: ShopRule,
}

/// The request message's field 1, as a shop id; every other field is skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct ShopIdOnly {
    #[prost(string, tag = "1")]
    shop_id: String,
}

/// The request's field 1 as a message whose field 1 is the shop id.
#[derive(Clone, PartialEq, prost::Message)]
struct NestedShopIdOnly {
    #[prost(message, optional, tag = "1")]
    inner: Option<ShopIdOnly>,
}

/// What is wrong with `rules` as the table of the gRPC service `service` (its full name, e.g.
/// `wmslink.orders.v1.OrderService`), read from the workspace's descriptors: an RPC missing
/// from the table, a rule for no RPC, a rule naming a shop field that is not a string
/// `shop_id`. Empty when the table is right. Each service's tests call this, so a new RPC
/// without a rule fails the build's tests (and is refused at run time meanwhile).
pub fn table_problems(service: &str, rules: &[MethodRule]) -> Vec<String> {
    let pool = match prost_reflect::DescriptorPool::decode(wmslink_proto::FILE_DESCRIPTOR_SET) {
        Ok(pool) => pool,
        Err(err) => return vec![format!("descriptors: {err}")],
    };
    let Some(descriptor) = pool.get_service_by_name(service) else {
        return vec![format!("no service {service}")];
    };
    let mut problems = Vec::new();
    let mut paths = BTreeSet::new();
    for method in descriptor.methods() {
        let path = format!("/{}/{}", descriptor.full_name(), method.name());
        paths.insert(path.clone());
        let Some(rule) = rules.iter().find(|rule| rule.method == path) else {
            problems.push(format!("{path} is not in the table"));
            continue;
        };
        let input = method.input();
        let field = match rule.shop {
            ShopRule::AllShops => continue,
            ShopRule::ShopIdField1 => input.get_field(1),
            ShopRule::ShopIdField1OfField1 => input
                .get_field(1)
                .and_then(|outer| outer.kind().as_message().and_then(|m| m.get_field(1))),
        };
        let is_shop_id = field.is_some_and(|field| {
            field.name() == "shop_id"
                && field.kind() == prost_reflect::Kind::String
                && !field.is_list()
        });
        if !is_shop_id {
            problems.push(format!("{path}: the rule's field is not a string shop_id"));
        }
    }
    for rule in rules {
        if !paths.contains(rule.method) {
            problems.push(format!("{} is not an RPC of {service}", rule.method));
        }
    }
    problems
}

/// The full paths (`/package.Service/Method`) of every RPC of `service`, from the workspace's
/// descriptors (tests use it to show they called every one).
pub fn methods_of(service: &str) -> Vec<String> {
    prost_reflect::DescriptorPool::decode(wmslink_proto::FILE_DESCRIPTOR_SET)
        .ok()
        .and_then(|pool| pool.get_service_by_name(service))
        .map(|descriptor| {
            descriptor
                .methods()
                .map(|method| format!("/{}/{}", descriptor.full_name(), method.name()))
                .collect()
        })
        .unwrap_or_default()
}

/// A gRPC service behind the authorization table.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    guard: Arc<Guard>,
}

/// What the layer checks against.
struct Guard {
    authenticator: Authenticator,
    rules: Vec<MethodRule>,
    max_message_bytes: usize,
}

impl<S> Authorize<S> {
    /// `inner` answering only what `rules` allow; request bodies are read (for shop-bound
    /// tokens) up to `max_message_bytes`.
    pub fn new(
        inner: S,
        auth: &AuthConfig,
        rules: &[MethodRule],
        max_message_bytes: usize,
    ) -> Self {
        Self {
            inner,
            guard: Arc::new(Guard {
                authenticator: Authenticator::new(auth),
                rules: rules.to_vec(),
                max_message_bytes,
            }),
        }
    }
}

impl<S: NamedService> NamedService for Authorize<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Authorize<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.authorize(request).await {
                Ok(request) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

impl Guard {
    async fn authorize(&self, request: http::Request<Body>) -> Result<http::Request<Body>, Status> {
        let path = request.uri().path();
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.method == path)
            .copied()
            .ok_or_else(|| {
                Status::permission_denied(format!("{path} is not in the authorization table"))
            })?;
        let presented = request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let caller = self
            .authenticator
            .caller_of(presented.trim().as_bytes())
            .ok_or_else(|| Status::unauthenticated("invalid bearer token"))?;
        if !caller.has_scope(rule.scope) {
            return Err(Status::permission_denied(format!(
                "caller '{}' lacks scope '{}'",
                caller.name, rule.scope
            )));
        }
        let mut request = match (caller.shops(), rule.shop) {
            (None, _) => request,
            (Some(_), ShopRule::AllShops) => {
                return Err(Status::permission_denied(format!(
                    "caller '{}' is bound to shops and this call spans every shop",
                    caller.name
                )));
            }
            (Some(shops), ShopRule::ShopIdField1 | ShopRule::ShopIdField1OfField1) => {
                let (request, shop) = self.read_shop(request, rule.shop).await?;
                check_shop(&caller, shops, &shop)?;
                request
            }
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    /// Reads the (one, uncompressed) request message and its shop id where `rule` says, and
    /// rebuilds the request.
    async fn read_shop(
        &self,
        request: http::Request<Body>,
        rule: ShopRule,
    ) -> Result<(http::Request<Body>, String), Status> {
        let (parts, body) = request.into_parts();
        let bytes = http_body_util::Limited::new(body, self.max_message_bytes + 5)
            .collect()
            .await
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "the request is larger than {} bytes",
                    self.max_message_bytes
                ))
            })?
            .to_bytes();
        let message = match bytes.as_ref() {
            [0, len @ ..] if len.len() >= 4 => {
                let size = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                len.get(4..4 + size)
            }
            _ => None,
        }
        .ok_or_else(|| Status::invalid_argument("the request is not one uncompressed message"))?;
        let undecodable = |_| Status::invalid_argument("the request message cannot be decoded");
        let shop = match rule {
            ShopRule::ShopIdField1OfField1 => {
                <NestedShopIdOnly as prost::Message>::decode(message)
                    .map_err(undecodable)?
                    .inner
                    .unwrap_or_default()
                    .shop_id
            }
            _ => {
                <ShopIdOnly as prost::Message>::decode(message)
                    .map_err(undecodable)?
                    .shop_id
            }
        };
        Ok((
            http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes))),
            shop,
        ))
    }
}

fn check_shop(caller: &Caller, shops: &BTreeSet<String>, shop: &str) -> Result<(), Status> {
    if shops.contains(shop) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "caller '{}' may not access shop '{shop}'",
            caller.name
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use secrecy::SecretString;

    use super::*;
    use crate::auth::TokenConfig;

    const TOKEN: &str = "authz-unit-test-token";

    fn guard(shops: &[&str]) -> Guard {
        Guard {
            authenticator: Authenticator::new(&AuthConfig {
                tokens: vec![TokenConfig {
                    caller: "console".into(),
                    token: SecretString::from(TOKEN),
                    scopes: vec!["orders.write".into()],
                    shops: shops.iter().map(|shop| (*shop).to_owned()).collect(),
                }],
            }),
            rules: vec![MethodRule {
                method: "/wmslink.orders.v1.OrderService/UpsertOrder",
                scope: "orders.write",
                shop: ShopRule::ShopIdField1OfField1,
            }],
            max_message_bytes: 1024,
        }
    }

    /// A gRPC request to `path` carrying `message` in one uncompressed frame.
    fn request(path: &str, message: &impl prost::Message) -> http::Request<Body> {
        let encoded = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(&encoded);
        http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::new(http_body_util::Full::new(bytes_of(frame))))
            .unwrap()
    }

    fn bytes_of(frame: Vec<u8>) -> prost::bytes::Bytes {
        prost::bytes::Bytes::from(frame)
    }

    fn upsert_for(shop: &str) -> wmslink_proto::orders::v1::UpsertOrderRequest {
        wmslink_proto::orders::v1::UpsertOrderRequest {
            order: Some(wmslink_proto::orders::v1::Order {
                shop_id: shop.into(),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn an_rpc_missing_from_the_table_is_refused() {
        let status = guard(&[])
            .authorize(request(
                "/wmslink.orders.v1.OrderService/GetOrder",
                &upsert_for("shop-a"),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("not in the authorization table"));
    }

    #[tokio::test]
    async fn a_nested_shop_id_binds_the_token() {
        let path = "/wmslink.orders.v1.OrderService/UpsertOrder";
        let guard = guard(&["shop-a"]);
        let allowed = guard.authorize(request(path, &upsert_for("shop-a"))).await;
        assert!(allowed.is_ok());
        for other in ["shop-b", ""] {
            let status = guard
                .authorize(request(path, &upsert_for(other)))
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{other:?}");
        }
        let no_order = wmslink_proto::orders::v1::UpsertOrderRequest { order: None };
        let status = guard.authorize(request(path, &no_order)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn the_table_check_finds_missing_extra_and_wrong_rules() {
        let problems = table_problems(
            "wmslink.orders.v1.OrderService",
            &[
                MethodRule {
                    method: "/wmslink.orders.v1.OrderService/UpsertOrder",
                    scope: "orders.write",
                    // Field 1 of UpsertOrderRequest is a message, not the shop id.
                    shop: ShopRule::ShopIdField1,
                },
                MethodRule {
                    method: "/wmslink.orders.v1.OrderService/Nope",
                    scope: "orders.read",
                    shop: ShopRule::AllShops,
                },
            ],
        );
        let joined = problems.join("\n");
        assert!(joined.contains("UpsertOrder: the rule's field"), "{joined}");
        assert!(joined.contains("GetOrder is not in the table"), "{joined}");
        assert!(joined.contains("Nope is not an RPC"), "{joined}");
    }
}
