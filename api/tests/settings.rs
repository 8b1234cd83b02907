//! The real binary refuses a malformed setting at start, naming it without printing
//! the secret it may hold.

use std::process::Command;

#[test]
fn a_malformed_database_url_is_named_and_its_password_not_printed() {
    let output = Command::new(env!("CARGO_BIN_EXE_dora-api"))
        .env_clear()
        .env("DATABASE_URL", "mysql://dora:dbPassw0rd@db/dora")
        .env("DORA_API_ADDR", "127.0.0.1:0")
        .output()
        .expect("run dora-api");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("DATABASE_URL"), "{out}");
    assert!(!out.contains("dbPassw0rd"), "{out}");
}

#[test]
fn zero_database_connections_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_dora-api"))
        .env_clear()
        .env("DORA_API_DB_CONNECTIONS", "0")
        .env("DORA_API_ADDR", "127.0.0.1:0")
        .output()
        .expect("run dora-api");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("DORA_API_DB_CONNECTIONS"), "{err}");
}

#[test]
fn a_malformed_alerts_database_url_is_named_and_its_password_not_printed() {
    let output = Command::new(env!("CARGO_BIN_EXE_dora-api"))
        .env_clear()
        .env(
            "DORA_ALERTS_DATABASE_URL",
            "postgres://dora:dbPassw0rd@db:port/dora",
        )
        .env("DORA_API_ADDR", "127.0.0.1:0")
        .output()
        .expect("run dora-api");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("DORA_ALERTS_DATABASE_URL"), "{err}");
    assert!(!err.contains("dbPassw0rd"), "{err}");
}
