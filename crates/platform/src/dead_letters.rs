//! `wmslink.ops.v1.DeadLetterService`: lists the dead-letter stream and replays dead letters
//! to their original subjects. Every service that consumes mounts it ([`service`]); they share
//! the one stream, so any of them answers for all.

use std::collections::BTreeSet;

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use tonic::{Request, Response, Status};
use wmslink_proto::ops::v1 as ops;
use wmslink_proto::ops::v1::dead_letter_service_server::{
    DeadLetterService, DeadLetterServiceServer,
};

use crate::auth::{AuthConfig, scopes};
use crate::authz::{Authorize, MethodRule, ShopRule};
use crate::consumer::{
    DEAD_LETTER_CONSUMER, DEAD_LETTER_DELIVERIES, DEAD_LETTER_REASON, DEAD_LETTER_SUBJECT,
    DEAD_LETTER_TRUNCATED,
};
use crate::nats::{StreamKind, Subjects};
use crate::validation::FieldViolations;

/// Header the dead letter keeps the original `Nats-Msg-Id` in.
pub const ORIGINAL_MSG_ID: &str = "Wmslink-Original-Msg-Id";
/// Header of a replayed message: the dead-letter sequence it was replayed from.
pub const REPLAY_OF: &str = "Wmslink-Replay-Of";

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;
const MAX_REPLAY: usize = 100;

/// The gRPC service over the dead-letter stream of one subject prefix.
#[derive(Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    subjects: Subjects,
}

/// The service, behind the authorization layer, ready for `Routes::add_service`.
pub type DeadLetterServer = Authorize<DeadLetterServiceServer<DeadLetters>>;

/// Every RPC and its scope, checked by the [`Authorize`] layer. Dead letters are of every shop
/// (one stream), so tokens bound to shops are refused.
pub const AUTHORIZATION: &[MethodRule] = &[
    MethodRule {
        method: "/wmslink.ops.v1.DeadLetterService/List",
        scope: scopes::OPERATE,
        shop: ShopRule::AllShops,
    },
    MethodRule {
        method: "/wmslink.ops.v1.DeadLetterService/Replay",
        scope: scopes::OPERATE,
        shop: ShopRule::AllShops,
    },
];

/// Requests are small (a filter, at most 100 sequences).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The dead-letter service for `subjects`' prefix, authorized with `auth` ([`AUTHORIZATION`]).
pub fn service(js: jetstream::Context, subjects: Subjects, auth: &AuthConfig) -> DeadLetterServer {
    Authorize::new(
        DeadLetterServiceServer::new(DeadLetters::new(js, subjects))
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        auth,
        AUTHORIZATION,
        MAX_REQUEST_BYTES,
    )
}

impl DeadLetters {
    pub fn new(js: jetstream::Context, subjects: Subjects) -> Self {
        Self { js, subjects }
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream<()>, Status> {
        let name = self.subjects.stream_name(StreamKind::DeadLetters);
        self.js
            .get_stream_no_info(&name)
            .await
            .map_err(|err| Status::unavailable(format!("dead-letter stream {name}: {err}")))
    }

    /// The dead letter at `sequence`, `None` when there is none (or it is not a dead letter).
    async fn get(
        &self,
        stream: &jetstream::stream::Stream<()>,
        sequence: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, Status> {
        match stream.get_raw_message(sequence).await {
            Ok(message) if self.is_dead_letter_subject(&message.subject) => Ok(Some(message)),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(Status::unavailable(format!(
                "reading dead letter {sequence}: {err}"
            ))),
        }
    }

    fn is_dead_letter_subject(&self, subject: &str) -> bool {
        self.subjects
            .strip(subject)
            .is_some_and(|rest| rest.starts_with("deadletter."))
    }

    /// The original subject of a dead letter, with the prefix (as published).
    fn original_subject(&self, message: &jetstream::message::StreamMessage) -> Option<String> {
        let from_header = message
            .headers
            .get(DEAD_LETTER_SUBJECT)
            .map(|value| value.as_str().to_owned());
        from_header.or_else(|| {
            let subject = message.subject.as_str();
            let rest = self.subjects.strip(subject)?;
            let original = rest.strip_prefix("deadletter.")?;
            let prefix = &subject[..subject.len() - rest.len()];
            Some(format!("{prefix}{original}"))
        })
    }

    fn view(&self, message: &jetstream::message::StreamMessage) -> ops::DeadLetter {
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default()
        };
        let original = self.original_subject(message).unwrap_or_default();
        ops::DeadLetter {
            sequence: message.sequence,
            subject: self
                .subjects
                .strip(&original)
                .unwrap_or(&original)
                .to_owned(),
            reason: header(DEAD_LETTER_REASON),
            consumer: header(DEAD_LETTER_CONSUMER),
            deliveries: header(DEAD_LETTER_DELIVERIES).parse().unwrap_or(0),
            dead_lettered_at: Some(wmslink_proto::timestamp(
                message.time.unix_timestamp(),
                message.time.nanosecond(),
            )),
            original_msg_id: header(ORIGINAL_MSG_ID),
            content_type: header("content-type"),
            payload_bytes: u64::try_from(message.payload.len()).unwrap_or(u64::MAX),
        }
    }

    async fn replay_one(
        &self,
        message: jetstream::message::StreamMessage,
    ) -> Result<ops::ReplayedDeadLetter, Status> {
        let sequence = message.sequence;
        let original = self
            .original_subject(&message)
            .filter(|subject| {
                self.subjects
                    .strip(subject)
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with("deadletter."))
            })
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "dead letter {sequence} names no original subject of this environment"
                ))
            })?;
        if let Some(size) = message.headers.get(DEAD_LETTER_TRUNCATED) {
            return Err(Status::failed_precondition(format!(
                "dead letter {sequence} holds only the start of a message of {} bytes; it cannot be replayed",
                size.as_str()
            )));
        }
        let dropped: BTreeSet<&str> = [
            DEAD_LETTER_REASON,
            DEAD_LETTER_SUBJECT,
            DEAD_LETTER_CONSUMER,
            DEAD_LETTER_DELIVERIES,
            ORIGINAL_MSG_ID,
            REPLAY_OF,
            async_nats::header::NATS_MESSAGE_ID.as_ref(),
        ]
        .into_iter()
        .collect();
        let mut headers = async_nats::HeaderMap::new();
        for (name, values) in message.headers.iter() {
            let name: &str = name.as_ref();
            if dropped.contains(name) {
                continue;
            }
            for value in values {
                headers.append(name, value.as_str());
            }
        }
        // A fresh id: the original one may still be in JetStream's duplicate window.
        let msg_id = format!("replay-{sequence}-{}", uuid::Uuid::new_v4().simple());
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
        headers.insert(REPLAY_OF, sequence.to_string().as_str());
        let unavailable =
            |err: String| Status::unavailable(format!("replaying dead letter {sequence}: {err}"));
        let ack = self
            .js
            .publish_with_headers(original.clone(), headers, message.payload)
            .await
            .map_err(|err| unavailable(err.to_string()))?
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        tracing::info!(
            dead_letter = sequence,
            stream_sequence = ack.sequence,
            "dead letter replayed"
        );
        Ok(ops::ReplayedDeadLetter {
            sequence,
            subject: self
                .subjects
                .strip(&original)
                .unwrap_or(&original)
                .to_owned(),
            msg_id,
            stream_sequence: ack.sequence,
        })
    }
}

/// A subject filter as NATS understands it: dot-separated non-empty tokens without spaces,
/// `*` alone in a token, `>` only as the last token.
fn valid_filter(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(index, token)| {
        !token.is_empty()
            && !token.contains(char::is_whitespace)
            && (!token.contains('*') || *token == "*")
            && (!token.contains('>') || (*token == ">" && index + 1 == tokens.len()))
    })
}

#[tonic::async_trait]
impl DeadLetterService for DeadLetters {
    async fn list(
        &self,
        request: Request<ops::ListDeadLettersRequest>,
    ) -> Result<Response<ops::ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        if !request.subject.is_empty()
            && (request.subject.len() > 512 || !valid_filter(&request.subject))
        {
            violations.add(
                "subject",
                "not a NATS subject filter (dot-separated tokens; `*` for one token, `>` last)",
            );
        }
        if request.page_size > MAX_PAGE_SIZE {
            violations.add("page_size", format!("at most {MAX_PAGE_SIZE}"));
        }
        let start = if request.page_token.is_empty() {
            Ok(1)
        } else {
            request
                .page_token
                .parse::<u64>()
                .ok()
                .filter(|start| *start > 0)
                .ok_or(())
        };
        if start.is_err() {
            violations.add("page_token", "not a token this service handed out");
        }
        violations.into_result()?;
        let mut next = start.unwrap_or(1);
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size,
        };
        let filter = if request.subject.is_empty() {
            self.subjects.dead_letters_all()
        } else {
            self.subjects.dead_letter(&request.subject)
        };

        let stream = self.stream().await?;
        let mut dead_letters = Vec::new();
        let mut exhausted = false;
        while dead_letters.len() < page_size as usize {
            match stream.get_first_raw_message_by_subject(&filter, next).await {
                Ok(message) => {
                    next = message.sequence.saturating_add(1);
                    dead_letters.push(self.view(&message));
                }
                Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    exhausted = true;
                    break;
                }
                Err(err) => {
                    return Err(Status::unavailable(format!("reading dead letters: {err}")));
                }
            }
        }
        // A full page may be the last one: look once more so the last page says so.
        if !exhausted {
            match stream.get_first_raw_message_by_subject(&filter, next).await {
                Ok(_) => {}
                Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    exhausted = true;
                }
                Err(err) => {
                    return Err(Status::unavailable(format!("reading dead letters: {err}")));
                }
            }
        }
        Ok(Response::new(ops::ListDeadLettersResponse {
            dead_letters,
            next_page_token: if exhausted {
                String::new()
            } else {
                next.to_string()
            },
        }))
    }

    async fn replay(
        &self,
        request: Request<ops::ReplayDeadLettersRequest>,
    ) -> Result<Response<ops::ReplayDeadLettersResponse>, Status> {
        let sequences = request.into_inner().sequences;
        let mut violations = FieldViolations::new();
        if sequences.is_empty() || sequences.len() > MAX_REPLAY {
            violations.add("sequences", format!("1 to {MAX_REPLAY} sequences"));
        }
        let mut seen = BTreeSet::new();
        for (index, sequence) in sequences.iter().enumerate() {
            if *sequence == 0 {
                violations.add(format!("sequences[{index}]"), "must be positive");
            } else if !seen.insert(*sequence) {
                violations.add(format!("sequences[{index}]"), "given twice");
            }
        }
        violations.into_result()?;

        // Read them all first: an unknown sequence replays nothing.
        let stream = self.stream().await?;
        let mut messages = Vec::with_capacity(sequences.len());
        let mut missing = Vec::new();
        for sequence in &sequences {
            match self.get(&stream, *sequence).await? {
                Some(message) => messages.push(message),
                None => missing.push(sequence.to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(Status::not_found(format!(
                "no dead letter with sequence {}; nothing replayed",
                missing.join(", ")
            )));
        }
        let mut replayed = Vec::with_capacity(messages.len());
        for message in messages {
            replayed.push(self.replay_one(message).await?);
        }
        Ok(Response::new(ops::ReplayDeadLettersResponse { replayed }))
    }
}

#[cfg(test)]
mod tests {
    use super::{AUTHORIZATION, valid_filter};

    #[test]
    fn every_rpc_is_in_the_authorization_table() {
        let problems =
            crate::authz::table_problems("wmslink.ops.v1.DeadLetterService", AUTHORIZATION);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn subject_filters_follow_nats_rules() {
        for good in [
            "cart.orders.demo-shop.upserted",
            "orders.*.status_changed",
            "cart.>",
            ">",
        ] {
            assert!(valid_filter(good), "{good}");
        }
        for bad in ["", "a..b", "a.>.b", "a.b*", "a b", "a.>x"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }
}
