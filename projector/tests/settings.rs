//! The real binary refuses to start without a source key, or with a short one, naming
//! `DORA_SOURCE_KEY` and never printing a key it was given.

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

#[test]
fn no_source_key_no_start() {
    let (code, out) = refused(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("DORA_SOURCE_KEY"), "{out}");
    // Replay checks sources too, so it needs the key as well.
    let output = projector(&[]).arg("replay").output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DORA_SOURCE_KEY"));
}

#[test]
fn a_short_source_key_is_refused_without_printing_it() {
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

#[test]
fn a_good_key_starts_and_stays_out_of_the_log() {
    let mut child = projector(&[("DORA_SOURCE_KEY", KEY)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // It logs its config, then waits for the unreachable database.
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
    assert!(log.contains("starting"), "{log}");
    assert!(log.contains("not ready"), "it got past its settings: {log}");
    assert!(!log.contains(KEY), "{log}");
}
