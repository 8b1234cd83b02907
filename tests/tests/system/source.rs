//! Whose event is it: the gateway signs the `source` it publishes, and the projector
//! keeps a claimed source only when its signature checks; anything else is `nats`.
//! Without `DORA_SOURCE_KEY` (the contract does not require it) the claim is kept as
//! made, unverified.

use dora_event::signature::SIGNATURE_HEADER;
use dora_system_tests::{
    eventually, post_events, source_keys, Captured, TestEnv, CI_TOKEN, PAGER_TOKEN, SOURCE_KEY,
};
use serde_json::json;

/// A key the projector does not hold, and the key a rotation moves to.
const OTHER_KEY: &str = "other-source-key-fedcba9876543210-0123";

fn deploy(id: &str) -> serde_json::Value {
    json!({"id": id, "kind": "deploy", "service": "api", "git_sha": "abcd"})
}

/// Publishes a valid deploy straight to NATS with these `Dora-Source` and
/// `Dora-Source-Signature` headers.
async fn publish_claiming(env: &TestEnv, id: &str, source: Option<&str>, signature: Option<&str>) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(dora_event::MSG_ID_HEADER, id);
    if let Some(source) = source {
        headers.insert(dora_event::SOURCE_HEADER, source);
    }
    if let Some(signature) = signature {
        headers.insert(SIGNATURE_HEADER, signature);
    }
    env.js
        .publish_with_headers(
            env.subject("prod", "api", "deploy"),
            headers,
            deploy(id).to_string().into_bytes().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn source_of(env: &TestEnv, id: &str) -> String {
    sqlx::query_scalar("SELECT source FROM events WHERE id = $1")
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// `dora_projector_sources_refused_total` as the projector's `/metrics` says.
async fn refused(base: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("dora_projector_sources_refused_total "))
        .unwrap_or_else(|| panic!("no dora_projector_sources_refused_total in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

// Current-thread runtime, so the projector's warnings reach this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_forged_source_on_nats_is_stored_as_nats_and_counted() {
    let env = TestEnv::new().await;
    let (captured, guard) = Captured::json_logs("dora_projector=warn");
    let projector = env.spawn_projector(env.projector_config()).await;

    // No header at all: a plain NATS publisher, nothing claimed, nothing refused.
    publish_claiming(&env, "plain", None, None).await;
    // Claims a token without a signature.
    publish_claiming(&env, "unsigned", Some("ci"), None).await;
    // Claims a token with a signature no key made: well-formed, and garbage.
    publish_claiming(&env, "wrong", Some("ci"), Some(&"ab".repeat(32))).await;
    publish_claiming(&env, "garbage", Some("ci"), Some("not a signature")).await;
    // Signed, but under a key the projector does not hold.
    let other = source_keys(OTHER_KEY).sign("other-key", "ci");
    publish_claiming(&env, "other-key", Some("ci"), Some(&other)).await;
    // A real signature, copied onto another source and onto another event.
    let keys = source_keys(SOURCE_KEY);
    let genuine = keys.sign("signed", "ci");
    publish_claiming(
        &env,
        "copied-source",
        Some("pager"),
        Some(&keys.sign("copied-source", "ci")),
    )
    .await;
    publish_claiming(&env, "copied-id", Some("ci"), Some(&genuine)).await;
    // Signed under the shared key: whoever holds it is the gateway, NATS or not.
    publish_claiming(&env, "signed", Some("ci"), Some(&genuine)).await;
    env.wait_for_events(8).await;

    let forged = [
        "plain",
        "unsigned",
        "wrong",
        "garbage",
        "other-key",
        "copied-source",
        "copied-id",
    ];
    for id in forged {
        assert_eq!(source_of(&env, id).await, "nats", "{id}");
    }
    assert_eq!(source_of(&env, "signed").await, "ci");
    eventually("six refusals counted", || async {
        refused(&projector.url).await == 6.0
    })
    .await;
    projector.stop().await.unwrap();
    drop(guard);

    // Each refusal is a warning naming the claim, never the signature.
    let logs = captured.text();
    let warned: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("claimed source"))
        })
        .collect();
    assert_eq!(warned.len(), 6, "{logs}");
    let copied = warned.iter().find(|l| l["id"] == "copied-source").unwrap();
    assert_eq!(copied["claimed"], "pager", "{copied}");
    assert_eq!(copied["level"], "WARN", "{copied}");
    assert!(warned.iter().any(|l| l["reason"]
        .as_str()
        .unwrap()
        .contains("no Dora-Source-Signature")));
    for signature in [
        &"ab".repeat(32),
        &other,
        &genuine,
        &keys.sign("copied-source", "ci"),
    ] {
        assert!(
            !logs.contains(signature.as_str()),
            "a signature is logged: {logs}"
        );
    }

    // Replay checks the same way: the same sources again.
    dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    for id in forged {
        assert_eq!(source_of(&env, id).await, "nats", "{id} after replay");
    }
    assert_eq!(source_of(&env, "signed").await, "ci", "after replay");
    env.cleanup().await;
}

#[tokio::test]
async fn the_gateways_events_keep_their_token_name_and_carry_a_signature() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;

    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("by-ci")).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post_events(&ingest.url, Some(PAGER_TOKEN), &deploy("by-pager")).await;
    assert_eq!(status, 202, "{body}");
    env.wait_for_events(2).await;
    assert_eq!(source_of(&env, "by-ci").await, "ci");
    assert_eq!(source_of(&env, "by-pager").await, "pager");
    assert_eq!(refused(&projector.url).await, 0.0);

    // What the gateway published carries the signature.
    let stream = env.js.get_stream(&env.stream).await.unwrap();
    let message = stream.get_raw_message(1).await.unwrap();
    let signature = message
        .headers
        .get(SIGNATURE_HEADER)
        .map(|v| v.as_str().to_owned());
    let signature =
        signature.unwrap_or_else(|| panic!("no {SIGNATURE_HEADER}: {:?}", message.headers));
    let by_ci: String = sqlx::query_scalar("SELECT source FROM events WHERE stream_seq = 1")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        source_keys(SOURCE_KEY).verify("by-ci", &by_ci, Some(&signature)),
        dora_event::signature::Verdict::Signed,
        "{signature}"
    );

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_rotated_key_keeps_the_sources_signed_with_either_key() {
    let env = TestEnv::new().await;
    // A gateway still on the old key, one already on the new (which lists the old one
    // too, as the rotation has it), and a projector that accepts both.
    let old = env.spawn_ingest(env.ingest_config()).await;
    let mut config = env.ingest_config();
    config.sources = Some(source_keys(&format!("{OTHER_KEY},{SOURCE_KEY}")));
    let new = env.spawn_ingest(config).await;
    let mut config = env.projector_config();
    config.sources = Some(source_keys(&format!("{OTHER_KEY}, {SOURCE_KEY}")));
    let projector = env.spawn_projector(config.clone()).await;

    let (status, body) = post_events(&old.url, Some(CI_TOKEN), &deploy("via-old")).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post_events(&new.url, Some(PAGER_TOKEN), &deploy("via-new")).await;
    assert_eq!(status, 202, "{body}");
    env.wait_for_events(2).await;
    assert_eq!(source_of(&env, "via-old").await, "ci");
    assert_eq!(source_of(&env, "via-new").await, "pager");
    assert_eq!(refused(&projector.url).await, 0.0);
    projector.stop().await.unwrap();

    // The new gateway signed with the new key: once the old key is dropped, its event
    // keeps its source and the old gateway's does not.
    config.sources = Some(source_keys(OTHER_KEY));
    dora_projector::replay(&config).await.unwrap();
    assert_eq!(source_of(&env, "via-new").await, "pager");
    assert_eq!(source_of(&env, "via-old").await, "nats");

    new.stop().await.unwrap();
    old.stop().await.unwrap();
    env.cleanup().await;
}

/// The WARN lines of a JSON log that say `DORA_SOURCE_KEY` is not set, by target.
fn unverified_warnings(logs: &str, target: &str) -> usize {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["level"] == "WARN"
                && l["target"] == target
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("DORA_SOURCE_KEY is not set"))
        })
        .count()
}

// Current-thread runtime, so the processes' warnings reach this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn without_a_key_the_claimed_source_is_kept_unverified() {
    let env = TestEnv::new().await;
    let (captured, guard) = Captured::json_logs("dora_projector=warn,dora_ingest=warn");

    // A deployment that follows the contract alone: no key on either side.
    let mut config = env.ingest_config();
    config.sources = None;
    let ingest = env.spawn_ingest(config).await;
    let mut unkeyed = env.projector_config();
    unkeyed.sources = None;
    let projector = env.spawn_projector(unkeyed.clone()).await;

    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("by-ci")).await;
    assert_eq!(status, 202, "{body}");
    publish_claiming(&env, "unsigned", Some("pager"), None).await;
    publish_claiming(&env, "plain", None, None).await;
    env.wait_for_events(3).await;
    // The gateway's event keeps its token's name; so does anyone's claim on NATS.
    assert_eq!(source_of(&env, "by-ci").await, "ci");
    assert_eq!(source_of(&env, "unsigned").await, "pager");
    assert_eq!(source_of(&env, "plain").await, "nats");
    assert_eq!(refused(&projector.url).await, 0.0);
    // The gateway sent its claim unsigned.
    let stream = env.js.get_stream(&env.stream).await.unwrap();
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        message
            .headers
            .get(dora_event::SOURCE_HEADER)
            .map(|v| v.as_str()),
        Some("ci")
    );
    assert!(
        message.headers.get(SIGNATURE_HEADER).is_none(),
        "{:?}",
        message.headers
    );
    projector.stop().await.unwrap();

    // A projector with a key, behind the same unkeyed gateway: the unsigned claim is
    // stored as `nats` and counted, as any unsigned claim.
    let keyed = env.spawn_projector(env.projector_config()).await;
    let (status, body) = post_events(&ingest.url, Some(PAGER_TOKEN), &deploy("by-pager")).await;
    assert_eq!(status, 202, "{body}");
    env.wait_for_events(4).await;
    assert_eq!(source_of(&env, "by-pager").await, "nats");
    eventually("the unsigned claim counted", || async {
        refused(&keyed.url).await == 1.0
    })
    .await;
    keyed.stop().await.unwrap();

    // Replay decides as the projector it runs as: with the key every claim is `nats`,
    // without it every claim is kept again.
    dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    for id in ["by-ci", "unsigned", "by-pager"] {
        assert_eq!(
            source_of(&env, id).await,
            "nats",
            "{id} after a keyed replay"
        );
    }
    dora_projector::replay(&unkeyed).await.unwrap();
    assert_eq!(source_of(&env, "by-ci").await, "ci");
    assert_eq!(source_of(&env, "unsigned").await, "pager");
    assert_eq!(source_of(&env, "by-pager").await, "pager");
    ingest.stop().await.unwrap();
    drop(guard);

    // Each unkeyed process said so once at start (the projector also at its replay);
    // the keyed ones said nothing.
    let logs = captured.text();
    assert_eq!(unverified_warnings(&logs, "dora_ingest"), 1, "{logs}");
    assert_eq!(unverified_warnings(&logs, "dora_projector"), 2, "{logs}");
    env.cleanup().await;
}
