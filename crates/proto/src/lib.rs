//! gRPC services and event payloads of wmslink, generated from the root `proto/` directory.

pub mod settings {
    pub mod v1 {
        tonic::include_proto!("wmslink.settings.v1");
    }
}

pub mod orders {
    pub mod v1 {
        tonic::include_proto!("wmslink.orders.v1");
    }
}

pub mod dispatch {
    pub mod v1 {
        tonic::include_proto!("wmslink.dispatch.v1");
    }
}

pub mod sync {
    pub mod v1 {
        tonic::include_proto!("wmslink.sync.v1");
    }
}

pub mod ops {
    pub mod v1 {
        tonic::include_proto!("wmslink.ops.v1");
    }
}

/// Encoded `FileDescriptorSet` of every wmslink proto, for gRPC reflection and proto3 JSON.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wmslink_descriptor.bin"));

pub mod field_paths;
pub mod json;
mod redact;
pub mod time;

pub use time::{from_timestamp, to_timestamp};

/// A protobuf timestamp of `seconds` since the epoch and `nanos` (a constructor for fixed
/// instants; a `DateTime<Utc>` converts with [`to_timestamp`]).
pub fn timestamp(seconds: i64, nanos: u32) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds,
        nanos: i32::try_from(nanos).unwrap_or(0),
    }
}
