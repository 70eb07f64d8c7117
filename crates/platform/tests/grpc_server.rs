//! The gRPC server's rules over a real socket: undecodable requests are the caller's fault
//! (`INVALID_ARGUMENT`), and reflection can be switched off.

use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use wmslink_platform::grpc::{self, GrpcConfig};

/// `HealthCheckRequest` has `string service = 1`; this sends field 1 as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongWireType {
    #[prost(int64, tag = "1")]
    service: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Anything {}

async fn server(config: GrpcConfig) -> (Channel, CancellationToken) {
    let (listener, addr) = grpc::bind(&config).await.expect("bind");
    let (routes, _) = grpc::base_routes(&config).expect("routes");
    let stop = CancellationToken::new();
    let serving = stop.clone();
    tokio::spawn(async move { grpc::serve(listener, routes, &config, serving).await });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connected");
    (channel, stop)
}

async fn call<Req: prost::Message + Default + 'static>(
    channel: &Channel,
    path: &'static str,
    request: Req,
) -> Result<Anything, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(request),
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::<Req, Anything>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn an_undecodable_request_is_invalid_argument() {
    let (channel, stop) = server(GrpcConfig::listening_on("127.0.0.1:0")).await;
    let status = call(
        &channel,
        "/grpc.health.v1.Health/Check",
        WrongWireType { service: 7 },
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    stop.cancel();
}

#[tokio::test]
async fn reflection_can_be_switched_off() {
    const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    let (on, stop_on) = server(GrpcConfig::listening_on("127.0.0.1:0")).await;
    let answer = call(&on, REFLECTION, Anything {}).await;
    assert!(
        answer
            .as_ref()
            .err()
            .is_none_or(|s| s.code() != Code::Unimplemented),
        "served when on: {answer:?}"
    );
    let (off, stop_off) = server(GrpcConfig {
        reflection: false,
        ..GrpcConfig::listening_on("127.0.0.1:0")
    })
    .await;
    let status = call(&off, REFLECTION, Anything {}).await.expect_err("off");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    stop_on.cancel();
    stop_off.cancel();
}
