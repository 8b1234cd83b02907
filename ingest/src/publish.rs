//! Publishing validated events to JetStream, pipelined: every publish of a request is
//! sent before any ack is awaited, so a batch of 1000 costs about one round trip.

use std::future::IntoFuture;

use async_nats::jetstream;
use async_nats::HeaderMap;
use dora_event::signature::{Sources, SIGNATURE_HEADER};
use dora_event::{subject, Event, MSG_ID_HEADER, RECEIVED_AT_HEADER, SOURCE_HEADER};

use crate::error::{Error, Result};

/// Publishes events to the stream's subjects.
#[derive(Debug, Clone)]
pub struct Publisher {
    js: jetstream::Context,
    prefix: String,
    sources: Option<Sources>,
}

impl Publisher {
    /// A publisher on `prefix` subjects that signs each event's source with the first
    /// of `sources`, or sends it unsigned without a key.
    pub fn new(js: jetstream::Context, prefix: &str, sources: Option<Sources>) -> Publisher {
        Publisher {
            js,
            prefix: prefix.to_owned(),
            sources,
        }
    }

    /// Publishes every event and waits for every ack. Returns how many JetStream
    /// reported as duplicates: the same event (same id, same canonical content) seen
    /// within the stream's duplicate window.
    /// An error means some events may not be stored: the client must retry, which the
    /// event ids make safe.
    /// `msg_ids[i]` is event `i`'s `Nats-Msg-Id` ([`dora_event::dedup::msg_id`]).
    pub async fn publish(
        &self,
        events: &[Event],
        msg_ids: &[String],
        source: &str,
    ) -> Result<usize> {
        let mut acks = Vec::with_capacity(events.len());
        for (event, msg_id) in events.iter().zip(msg_ids) {
            let mut headers = HeaderMap::new();
            headers.insert(MSG_ID_HEADER, msg_id.as_str());
            headers.insert(SOURCE_HEADER, source);
            // At or after validation: the projector's limit is then never stricter.
            headers.insert(RECEIVED_AT_HEADER, dora_event::received_at_now().as_str());
            if let Some(sources) = &self.sources {
                headers.insert(SIGNATURE_HEADER, sources.sign(&event.id, source).as_str());
            }
            let ack = self
                .js
                .publish_with_headers(
                    subject::for_event(&self.prefix, event),
                    headers,
                    event.to_json().into(),
                )
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            acks.push(ack.into_future());
        }
        let acks = futures::future::try_join_all(acks)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(acks.iter().filter(|ack| ack.duplicate).count())
    }
}
