//! The real binary starts without a source key, warning once that sources go
//! unverified; it refuses an empty or short one, naming `DORA_SOURCE_KEY` and never
//! printing a key it was given.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_dora-projector");
const KEY: &str = "S0urceKeyValue-0123456789abcdef-xyz";

/// Servers nobody listens on: a run that got past its settings waits for them.
fn projector(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/dora")
        .env("DORA_PROJECTOR_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

fn refused(env: &[(&str, &str)]) -> (i32, String) {
    let output = projector(env).output().expect("run dora-projector");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The log lines warning that, without a key, sources go unverified.
fn unverified_warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains("DORA_SOURCE_KEY is not set"))
        .collect()
}

#[test]
fn no_source_key_starts_and_warns_once() {
    let log = log_until_not_ready(&[]);
    assert!(log.contains("starting"), "{log}");
    assert!(log.contains("not ready"), "it got past its settings: {log}");
    let warnings = unverified_warnings(&log);
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("kept unverified"), "{log}");
    assert!(
        warnings[0].contains("claim an ingest token's name"),
        "{log}"
    );

    // Replay keeps sources the same way, so it warns too, then fails on the database.
    let output = projector(&[]).arg("replay").output().unwrap();
    let out = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert_eq!(unverified_warnings(&out).len(), 1, "{out}");
    assert!(
        out.contains("DATABASE_URL"),
        "it failed on the database: {out}"
    );
}

#[test]
fn an_empty_or_short_source_key_is_refused_without_printing_it() {
    // Given but empty: refused, not read as "no key" (a secret that came out empty).
    let (code, out) = refused(&[("DORA_SOURCE_KEY", "")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DORA_SOURCE_KEY"), "{out}");
    assert!(out.contains("empty"), "{out}");

    let (code, out) = refused(&[("DORA_SOURCE_KEY", "sh0rtS0urceKey")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DORA_SOURCE_KEY"), "{out}");
    assert!(out.contains("shorter than 32"), "{out}");
    assert!(!out.contains("sh0rtS0urceKey"), "{out}");

    // The new key of a rotation is fine, the old one too short: neither is printed.
    let (code, out) = refused(&[("DORA_SOURCE_KEY", &format!("{KEY},sh0rtS0urceKey"))]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("key 2"), "{out}");
    assert!(
        !out.contains(KEY) && !out.contains("sh0rtS0urceKey"),
        "{out}"
    );
}

/// Starts the projector, reads its log until it says it waits for the unreachable
/// database (or 60 s pass), stops it and returns the log.
fn log_until_not_ready(env: &[(&str, &str)]) -> String {
    let mut child = projector(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dora-projector");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log.contains("not ready") && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn a_good_key_starts_and_stays_out_of_the_log() {
    let log = log_until_not_ready(&[("DORA_SOURCE_KEY", KEY)]);
    assert!(log.contains("starting"), "{log}");
    assert!(log.contains("not ready"), "it got past its settings: {log}");
    assert!(!log.contains(KEY), "{log}");
    assert!(unverified_warnings(&log).is_empty(), "{log}");
}
