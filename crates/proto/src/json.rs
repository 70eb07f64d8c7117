//! proto3 JSON for event payloads, for publishers that cannot speak protobuf (PHP, Java carts).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("descriptor pool: {0}")]
    Descriptors(String),
    #[error("unknown message type {0}")]
    UnknownMessage(String),
    #[error("invalid proto3 JSON: {0}")]
    Invalid(String),
}

fn pool() -> Result<&'static DescriptorPool, JsonError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).map_err(|err| err.to_string())
    })
    .as_ref()
    .map_err(|err| JsonError::Descriptors(err.clone()))
}

/// Decodes proto3 JSON into the generated message type `T` named `full_name`
/// (e.g. `wmslink.orders.v1.Order`). Unknown fields are refused.
pub fn decode<T: prost::Message + Default>(full_name: &str, json: &[u8]) -> Result<T, JsonError> {
    let descriptor = pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_owned()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer)
        .map_err(|err| JsonError::Invalid(err.to_string()))?;
    deserializer
        .end()
        .map_err(|err| JsonError::Invalid(err.to_string()))?;
    dynamic
        .transcode_to::<T>()
        .map_err(|err| JsonError::Invalid(err.to_string()))
}

/// Encodes a generated message as proto3 JSON, using its descriptor from the pool.
pub fn encode<T: prost::Message>(full_name: &str, message: &T) -> Result<Vec<u8>, JsonError> {
    let descriptor = pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_owned()))?;
    let mut dynamic = DynamicMessage::new(descriptor);
    dynamic
        .transcode_from(message)
        .map_err(|err| JsonError::Invalid(err.to_string()))?;
    let _ = dynamic.descriptor();
    serde_json::to_vec(&dynamic).map_err(|err| JsonError::Invalid(err.to_string()))
}
