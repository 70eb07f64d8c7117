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
            (Some(shops), ShopRule::ShopIdField1) => {
                let (request, shop) = self.read_shop(request).await?;
                check_shop(&caller, shops, &shop)?;
                request
            }
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    /// Reads the (one, uncompressed) request message and its field 1, and rebuilds the request.
    async fn read_shop(
        &self,
        request: http::Request<Body>,
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
        let shop = <ShopIdOnly as prost::Message>::decode(message)
            .map_err(|_| Status::invalid_argument("the request message cannot be decoded"))?
            .shop_id;
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
