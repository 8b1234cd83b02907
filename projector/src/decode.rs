//! From a stream message to an event ready for the log, or a rejection with its reason.
//!
//! The projector validates exactly as the gateway does (same function), against the
//! time JetStream stored the message, so replaying an old message decides the same way.
//! With `DORA_SOURCE_KEY`, a message's `Dora-Source` is believed only with a valid
//! `Dora-Source-Signature` (see `dora_event::signature`); otherwise its source is
//! `nats`, as for any message published straight to NATS, and the refused claim is
//! reported. Without a key there is nothing to check a claim against: it is kept as
//! made (the projector warned at start).

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use dora_event::signature::{Sources, Verdict, SIGNATURE_HEADER};
use dora_event::{
    subject, validate, Event, Origin, ValidationError, MSG_ID_HEADER, NATS_SOURCE,
    RECEIVED_AT_HEADER, SOURCE_HEADER,
};

/// A message as the projector sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// JetStream sequence.
    pub stream_seq: u64,
    /// Subject it was published on.
    pub subject: String,
    /// Body, as published.
    pub payload: Vec<u8>,
    /// `Nats-Msg-Id` header, if any.
    pub msg_id: Option<String>,
    /// `Dora-Source` header, if any (set by the gateway).
    pub source: Option<String>,
    /// `Dora-Source-Signature` header, if any (set by the gateway).
    pub signature: Option<String>,
    /// When JetStream stored it.
    pub received_at: DateTime<Utc>,
    /// `Dora-Received-At` header, if any (set by the gateway).
    pub gateway_received_at: Option<String>,
}

impl Incoming {
    /// Reads a JetStream message.
    pub fn from_message(msg: &jetstream::Message) -> Result<Incoming, async_nats::Error> {
        let info = msg.info()?;
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        Ok(Incoming {
            stream_seq: info.stream_sequence,
            subject: msg.subject.to_string(),
            payload: msg.payload.to_vec(),
            msg_id: header(MSG_ID_HEADER),
            source: header(SOURCE_HEADER),
            signature: header(SIGNATURE_HEADER),
            received_at: info.published,
            gateway_received_at: header(RECEIVED_AT_HEADER),
        })
    }
}

/// A valid event with what the store adds to it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The event.
    pub event: Event,
    /// Token name, or `nats`.
    pub source: String,
    /// The source the message claimed and did not prove; it is stored as `nats`.
    pub refused_source: Option<RefusedSource>,
    /// JetStream sequence.
    pub stream_seq: i64,
    /// When JetStream stored it.
    pub received_at: DateTime<Utc>,
}

/// A `Dora-Source` the projector did not believe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedSource {
    /// The header's value.
    pub claimed: String,
    /// Why: no signature, or one that no key made.
    pub reason: &'static str,
}

/// A message that failed validation, kept with the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The message.
    pub incoming: Incoming,
    /// Why.
    pub error: ValidationError,
}

/// The projector's verdict on one message.
#[derive(Debug, Clone)]
pub enum Decoded {
    /// Goes into the log.
    Event(Stored),
    /// Goes into `rejected_events`.
    Rejected(Rejected),
}

/// Decides what one message is; a claimed source stands only if signed under one of
/// `sources`, or, with no keys (`None`), as claimed.
pub fn decode(prefix: &str, sources: Option<&Sources>, incoming: Incoming) -> Decoded {
    match check(prefix, &incoming) {
        Ok(event) => {
            let (source, refused_source) = source(sources, &event, &incoming);
            Decoded::Event(Stored {
                event,
                source,
                refused_source,
                stream_seq: i64::try_from(incoming.stream_seq).unwrap_or(i64::MAX),
                received_at: incoming.received_at,
            })
        }
        Err(error) => Decoded::Rejected(Rejected { incoming, error }),
    }
}

/// The source to store, and the claim refused if there was one. The signature covers
/// the event's id as validated, not the header's, so it names this event only.
fn source(
    sources: Option<&Sources>,
    event: &Event,
    incoming: &Incoming,
) -> (String, Option<RefusedSource>) {
    let claimed = match incoming.source.as_deref() {
        // Claiming to be a plain NATS publisher needs no proof.
        None | Some("" | NATS_SOURCE) => return (NATS_SOURCE.to_owned(), None),
        Some(claimed) => claimed,
    };
    let Some(sources) = sources else {
        // No key to check it with: the claim is kept unverified, as the warning at start
        // says, so a deployment without DORA_SOURCE_KEY still records token names.
        return (claimed.to_owned(), None);
    };
    let reason = match sources.verify(&event.id, claimed, incoming.signature.as_deref()) {
        Verdict::Signed => return (claimed.to_owned(), None),
        Verdict::Unsigned => "no Dora-Source-Signature header",
        Verdict::WrongSignature => "Dora-Source-Signature made by no key in DORA_SOURCE_KEY",
    };
    let refused = RefusedSource {
        claimed: claimed.to_owned(),
        reason,
    };
    (NATS_SOURCE.to_owned(), Some(refused))
}

fn check(prefix: &str, incoming: &Incoming) -> Result<Event, ValidationError> {
    // Strict: a key given twice is refused here as at the gateway.
    let value = dora_event::json::from_slice(&incoming.payload)?;
    // The gateway's clock where it judged the message, within limits, so what it
    // accepted is not refused here for the NATS server's clock being behind.
    let judged_at = dora_event::gateway_clock(
        incoming.received_at,
        incoming.gateway_received_at.as_deref(),
    );
    let event = validate(&value, Origin::Stream, judged_at)?;
    subject::check(prefix, &incoming.subject, &event)?;
    match &incoming.msg_id {
        // `<id>` or `<id>:<digest>` (the gateway's form, dora_event::dedup).
        Some(msg_id) if !dora_event::dedup::names(msg_id, &event.id) => {
            Err(ValidationError::field(
                "id",
                format!(
                    "header {MSG_ID_HEADER} `{msg_id}` disagrees with the event id `{}`",
                    event.id
                ),
            ))
        }
        _ => Ok(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(subject: &str, body: &str) -> Incoming {
        Incoming {
            stream_seq: 7,
            subject: subject.to_owned(),
            payload: body.as_bytes().to_vec(),
            msg_id: None,
            source: None,
            signature: None,
            received_at: "2026-03-16T12:00:00Z".parse().unwrap(),
            gateway_received_at: None,
        }
    }

    const KEY: &str = "decode-test-key-0123456789abcdef-0123";

    fn keys() -> Sources {
        Sources::parse(KEY).unwrap()
    }

    const BODY: &str = r#"{"id":"d1","kind":"deploy","service":"api","git_sha":"abcd"}"#;

    #[test]
    fn a_valid_message_from_nats_has_source_nats() {
        match decode(
            "dora.events",
            Some(&keys()),
            incoming("dora.events.prod.api.deploy", BODY),
        ) {
            Decoded::Event(s) => {
                assert_eq!(s.source, "nats");
                assert_eq!(
                    s.event.occurred_at, s.received_at,
                    "defaults to stream time"
                );
            }
            Decoded::Rejected(r) => panic!("{r:?}"),
        }
    }

    #[test]
    fn the_future_limit_follows_the_gateway_clock_within_five_minutes() {
        let at = |occurred: &str, header: Option<&str>| {
            let body = format!(
                r#"{{"id":"d1","kind":"deploy","service":"api","git_sha":"abcd","occurred_at":"{occurred}"}}"#
            );
            let mut m = incoming("dora.events.prod.api.deploy", &body);
            m.gateway_received_at = header.map(str::to_owned);
            match decode("dora.events", Some(&keys()), m) {
                Decoded::Event(_) => Ok(()),
                Decoded::Rejected(r) => Err(r.error.field),
            }
        };
        let future = Err(Some("occurred_at".to_owned()));
        // JetStream's clock (12:00) is 1 minute behind the gateway's (12:01), which
        // accepted an event at 12:05:30.
        assert_eq!(at("2026-03-16T12:05:30Z", None), future);
        assert_eq!(
            at("2026-03-16T12:05:30Z", Some("2026-03-16T12:01:00.000000Z")),
            Ok(())
        );
        // A header behind JetStream does not narrow the limit; an unreadable one is ignored.
        assert_eq!(
            at("2026-03-16T12:04:00Z", Some("2026-03-16T11:00:00Z")),
            Ok(())
        );
        assert_eq!(at("2026-03-16T12:04:00Z", Some("soon")), Ok(()));
        // A forged header far ahead counts for 5 minutes at most: 10 in all.
        assert_eq!(
            at("2026-03-16T12:10:00Z", Some("2026-03-17T00:00:00Z")),
            Ok(())
        );
        assert_eq!(
            at("2026-03-16T12:10:01Z", Some("2026-03-17T00:00:00Z")),
            future
        );
    }

    #[test]
    fn a_key_given_twice_is_rejected_as_at_the_gateway() {
        let body = r#"{"id":"d1","kind":"deploy","service":"api","git_sha":"abcd","succeeded":false,"succeeded":true}"#;
        let Decoded::Rejected(r) = decode(
            "dora.events",
            Some(&keys()),
            incoming("dora.events.prod.api.deploy", body),
        ) else {
            panic!("accepted a body with `succeeded` twice");
        };
        assert_eq!(r.error.field.as_deref(), Some("succeeded"));
    }

    #[test]
    fn subject_and_header_must_agree_with_the_body() {
        let Decoded::Rejected(r) = decode(
            "dora.events",
            Some(&keys()),
            incoming("dora.events.staging.api.deploy", BODY),
        ) else {
            panic!("accepted a subject that disagrees");
        };
        assert_eq!(r.error.field.as_deref(), Some("subject"));
        let mut m = incoming("dora.events.prod.api.deploy", BODY);
        m.msg_id = Some("other".into());
        assert!(matches!(
            decode("dora.events", Some(&keys()), m),
            Decoded::Rejected(_)
        ));
        let Decoded::Rejected(r) = decode(
            "dora.events",
            Some(&keys()),
            incoming("dora.events.prod.api.deploy", "{nope"),
        ) else {
            panic!("accepted invalid JSON");
        };
        assert!(
            r.error.message.starts_with("invalid JSON"),
            "{}",
            r.error.message
        );
    }

    fn stored(m: Incoming) -> Stored {
        match decode("dora.events", Some(&keys()), m) {
            Decoded::Event(s) => s,
            Decoded::Rejected(r) => panic!("{r:?}"),
        }
    }

    /// A valid deploy whose headers claim `source`, signed with `signature`.
    fn claiming(source: &str, signature: Option<String>) -> Incoming {
        let mut m = incoming("dora.events.prod.api.deploy", BODY);
        m.source = Some(source.to_owned());
        m.signature = signature;
        m
    }

    #[test]
    fn a_claimed_source_stands_only_with_its_signature() {
        let signed = stored(claiming("ci", Some(keys().sign("d1", "ci"))));
        assert_eq!(
            (signed.source.as_str(), signed.refused_source),
            ("ci", None)
        );

        for (m, reason) in [
            (claiming("ci", None), "no Dora-Source-Signature"),
            (
                claiming("pager", Some(keys().sign("d1", "ci"))),
                "by no key",
            ),
            (claiming("ci", Some(keys().sign("d2", "ci"))), "by no key"),
            (claiming("ci", Some("xyz".to_owned())), "by no key"),
        ] {
            let s = stored(m);
            assert_eq!(s.source, "nats");
            let refused = s.refused_source.expect("the claim is reported");
            assert!(refused.reason.contains(reason), "{refused:?}");
        }
        // Claiming to be `nats` is no claim to refuse.
        let s = stored(claiming("nats", None));
        assert_eq!((s.source.as_str(), s.refused_source), ("nats", None));
    }

    #[test]
    fn without_a_key_a_claimed_source_is_kept_unverified() {
        let unkeyed = |m: Incoming| match decode("dora.events", None, m) {
            Decoded::Event(s) => (s.source, s.refused_source),
            Decoded::Rejected(r) => panic!("{r:?}"),
        };
        // Unsigned, signed, or signed by a key nobody holds: nothing to check against.
        assert_eq!(unkeyed(claiming("ci", None)), ("ci".to_owned(), None));
        assert_eq!(
            unkeyed(claiming("pager", Some(keys().sign("d1", "pager")))),
            ("pager".to_owned(), None)
        );
        assert_eq!(
            unkeyed(claiming("ci", Some("xyz".to_owned()))),
            ("ci".to_owned(), None)
        );
        // No claim is still `nats`.
        assert_eq!(
            unkeyed(incoming("dora.events.prod.api.deploy", BODY)),
            ("nats".to_owned(), None)
        );
        // The same unsigned claim, with a key: `nats`, and the claim reported.
        let keyed = stored(claiming("ci", None));
        assert_eq!(keyed.source, "nats");
        assert_eq!(keyed.refused_source.map(|r| r.claimed), Some("ci".into()));
    }
}
