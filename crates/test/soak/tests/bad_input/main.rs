//! I5 over every inbound path: bad NATS order messages, bad gRPC requests to every service, bad
//! WMS answers. Each gets a clear error (a dead letter with the reason, or INVALID_ARGUMENT
//! naming the field), nothing panics, the messages behind keep flowing and nothing reaches the
//! WMS that should not. Table-driven against the real system, plus property tests of the
//! decoders and checks, and the committed corpus replayed.

mod common;
mod corpus;
mod grpc;
mod nats;
mod props;
mod wms;
