//! The gateway's handling of a request body (reading it as one event or an array,
//! the batch limit, strict JSON, validation), under libFuzzer. The properties are the
//! property tests': no input panics; a refusal is a client error (4xx), never a server
//! error; an accepted event obeys the contract's rules (`dora_event::invariants`,
//! written apart from `validate`) and its canonical JSON re-validates to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // A leading 0x01 (never valid JSON) stands for a request with an Idempotency-Key,
    // so both ways of assigning ids are fuzzed.
    let (key, body) = match body.split_first() {
        Some((1, rest)) => (Some("fuzz-key"), rest),
        _ => (None, body),
    };
    let before = chrono::Utc::now();
    match dora_ingest::http::parse(body, "ci", key) {
        Ok(parsed) => {
            let after = chrono::Utc::now();
            let events = parsed.events;
            assert!((1..=dora_ingest::http::MAX_BATCH).contains(&events.len()));
            assert_eq!(parsed.msg_ids.len(), events.len());
            for event in &events {
                if let Err(rule) = dora_event::invariants::check(event, after) {
                    panic!("accepted an event that breaks `{rule}`: {event:?}");
                }
                let back = dora_event::json::from_slice(&event.to_json()).expect("canonical JSON");
                let again = dora_event::validate(&back, dora_event::Origin::Stream, before);
                assert_eq!(again.as_ref().ok(), Some(event), "{again:?}");
            }
        }
        Err(e) => assert!(
            e.rejection().is_some(),
            "a body made the gateway fail instead of refusing it: {e}"
        ),
    }
});
