//! A gRPC service whose implementation arrives later: routed (and reflected, health-checked)
//! from the moment the port is bound, answering `UNAVAILABLE` until the service's dependencies
//! are up and [`DeferredService::set`] installs it.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;

pub struct DeferredService<S> {
    slot: Arc<OnceLock<S>>,
}

impl<S> Clone for DeferredService<S> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
        }
    }
}

impl<S> Default for DeferredService<S> {
    fn default() -> Self {
        Self {
            slot: Arc::new(OnceLock::new()),
        }
    }
}

impl<S> DeferredService<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the implementation; later calls are routed to it. Only the first one counts.
    pub fn set(&self, service: S) {
        if self.slot.set(service).is_err() {
            tracing::warn!("the gRPC service was installed twice; keeping the first");
        }
    }

    pub fn is_set(&self) -> bool {
        self.slot.get().is_some()
    }
}

impl<S: NamedService> NamedService for DeferredService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<Body>> for DeferredService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.slot.get() {
            Some(service) => {
                let mut service = service.clone();
                Box::pin(async move {
                    futures::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                    Ok(service.call(request).await?.map(Body::new))
                })
            }
            None => Box::pin(std::future::ready(Ok(tonic::Status::unavailable(
                "the service is starting: waiting for its dependencies",
            )
            .into_http()))),
        }
    }
}
