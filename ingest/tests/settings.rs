//! The real binary refuses bad settings at start, naming the setting and never
//! printing a secret it was given.

use std::process::Command;

/// A valid `DORA_SOURCE_KEY`; a test that is about another setting passes it.
const KEY: &str = "S0urceKeyValue-0123456789abcdef-xyz";

fn start(env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dora-ingest"))
        .env_clear()
        .envs(env.iter().copied())
        // A port nobody listens on: a run that got past its settings fails fast.
        .env(
            "NATS_URL",
            env.iter()
                .find(|(k, _)| *k == "NATS_URL")
                .map_or("nats://127.0.0.1:1", |(_, v)| v),
        )
        .output()
        .expect("run dora-ingest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn no_token_no_start() {
    let (code, out) = start(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("DORA_INGEST_TOKENS"), "{out}");
}

#[test]
fn a_malformed_setting_names_itself_and_hides_every_secret() {
    // One short secret beside a good one: clap's own message would print both.
    let (code, out) = start(&[
        (
            "DORA_INGEST_TOKENS",
            "ci=Sup3rSecretValue-123456,pager=sh0rtpw",
        ),
        ("DORA_SOURCE_KEY", KEY),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DORA_INGEST_TOKENS"), "{out}");
    assert!(!out.contains("Sup3rSecretValue"), "{out}");
    assert!(!out.contains("sh0rtpw"), "{out}");

    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", KEY),
        ("NATS_URL", "nats://dora:natsPassw0rd@[::1"),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("NATS_URL"), "{out}");
    assert!(!out.contains("natsPassw0rd"), "{out}");
}

#[test]
fn nats_credentials_stay_out_of_the_startup_log_and_the_connect_error() {
    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", KEY),
        ("NATS_URL", "nats://dora:natsPassw0rd@127.0.0.1:1"),
        ("DORA_INGEST_ADDR", "127.0.0.1:0"),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("127.0.0.1:1"),
        "the log names the server: {out}"
    );
    assert!(!out.contains("natsPassw0rd"), "{out}");
    assert!(!out.contains("Sup3rSecretValue"), "{out}");
    assert!(out.contains("starting"), "the config was logged: {out}");
    assert!(!out.contains(KEY), "{out}");
}

#[test]
fn a_body_limit_that_refuses_every_event_is_refused() {
    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", KEY),
        ("DORA_INGEST_MAX_BODY_BYTES", "0"),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DORA_INGEST_MAX_BODY_BYTES"), "{out}");
}

#[test]
fn no_source_key_starts_and_warns_once() {
    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_INGEST_ADDR", "127.0.0.1:0"),
    ]);
    // Past its settings: it fails on the unreachable NATS server, not on the key.
    assert_ne!(code, 2, "refused as a setting: {out}");
    assert!(out.contains("starting"), "{out}");
    assert!(out.contains("127.0.0.1:1"), "it tried NATS: {out}");
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("DORA_SOURCE_KEY is not set"))
        .collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(warnings[0].contains("unsigned"), "{out}");
    assert!(warnings[0].contains("claim a token's name"), "{out}");

    // With a key, no such warning.
    let (_, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", KEY),
        ("DORA_INGEST_ADDR", "127.0.0.1:0"),
    ]);
    assert!(out.contains("starting"), "{out}");
    assert!(!out.contains("DORA_SOURCE_KEY is not set"), "{out}");
}

#[test]
fn a_malformed_source_key_is_refused_and_not_printed() {
    // Given but empty: refused, not read as "no key" (a secret that came out empty).
    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", ""),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DORA_SOURCE_KEY"), "{out}");
    assert!(out.contains("empty"), "{out}");

    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", "sh0rtS0urceKey"),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DORA_SOURCE_KEY"), "{out}");
    assert!(out.contains("shorter than 32"), "{out}");
    assert!(!out.contains("sh0rtS0urceKey"), "{out}");

    // A good key beside a short one: neither is printed.
    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", &format!("{KEY},sh0rtS0urceKey")),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("key 2"), "{out}");
    assert!(
        !out.contains(KEY) && !out.contains("sh0rtS0urceKey"),
        "{out}"
    );
}

#[test]
fn malformed_webhook_settings_name_themselves_and_hide_their_secrets() {
    let base = [
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", KEY),
    ];
    for (setting, value, why, secret) in [
        (
            "DORA_GITHUB_WEBHOOK_SECRET",
            "Gh0okGoodSecret-1234,sh0rt",
            "secret 2 of the list is shorter than 16",
            "Gh0ok",
        ),
        (
            "DORA_PAGERDUTY_WEBHOOK_SECRET",
            "pdsh0rt",
            "secret 1 of the list is shorter than 16",
            "pdsh0rt",
        ),
        (
            "DORA_GITHUB_TOKEN",
            "ghp_has space",
            "printable ASCII",
            "ghp_has",
        ),
        ("DORA_GITLAB_TOKEN", "   ", "empty", "\u{0}"),
        (
            "DORA_GITHUB_API_URL",
            "ftp://ghe.example.com",
            "http:// or https://",
            "\u{0}",
        ),
        (
            "DORA_GITLAB_API_URL",
            "gitlab.example.com",
            "not a URL",
            "\u{0}",
        ),
        (
            "DORA_WEBHOOK_SERVICES",
            "octo/web=web site",
            "must be 1-64",
            "\u{0}",
        ),
        (
            "DORA_WEBHOOK_ENVIRONMENTS",
            "production",
            "not a from=to pair",
            "\u{0}",
        ),
        (
            "DORA_GITHUB_DEPLOY_WORKFLOWS",
            ".github/workflows/deploy.yml=",
            "must be 1-64",
            "\u{0}",
        ),
    ] {
        let mut env = base.to_vec();
        env.push((setting, value));
        let (code, out) = start(&env);
        assert_eq!(code, 2, "{setting}: {out}");
        assert!(out.contains(setting), "{setting}: {out}");
        assert!(out.contains(why), "{setting}: {out}");
        assert!(!out.contains(secret), "{setting} printed its value: {out}");
    }
}

#[test]
fn webhook_secrets_and_tokens_stay_out_of_the_startup_log() {
    let (code, out) = start(&[
        ("DORA_INGEST_TOKENS", "ci=Sup3rSecretValue-123456"),
        ("DORA_SOURCE_KEY", KEY),
        ("DORA_INGEST_ADDR", "127.0.0.1:0"),
        ("DORA_GITHUB_WEBHOOK_SECRET", "Gh0okSecretValue-123456"),
        ("DORA_PAGERDUTY_WEBHOOK_SECRET", "PdS3cretValue-123456"),
        ("DORA_GITHUB_TOKEN", "ghp_T0kenValue123456"),
        ("DORA_GITLAB_TOKEN", "glpat-T0kenValue123456"),
        ("DORA_WEBHOOK_SERVICES", "octo-org/octo-repo=octo"),
    ]);
    assert_ne!(code, 2, "refused as a setting: {out}");
    assert!(out.contains("starting"), "the config was logged: {out}");
    assert!(
        out.contains("octo-org/octo-repo"),
        "the names are shown: {out}"
    );
    for secret in [
        "Gh0okSecretValue",
        "PdS3cretValue",
        "ghp_T0kenValue",
        "glpat-T0kenValue",
    ] {
        assert!(!out.contains(secret), "{secret} printed: {out}");
    }
}
