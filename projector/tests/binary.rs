//! The real `dora-projector` binary against a database that does not exist: it creates
//! it when it may, and otherwise stops naming the database and how to create it.
//! Uses the PostgreSQL of `DORA_TEST_DATABASE_URL` (default the local one), with
//! `dora_test_*` names that the test suite's sweep removes.

// A panic in a test is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

fn server_url() -> String {
    std::env::var("DORA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn projector(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dora-projector"));
    command
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("DORA_PROJECTOR_ADDR", "127.0.0.1:0")
        // Nothing listens there: the store comes first, then the projector waits for NATS.
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("RUST_LOG", "dora_projector=info")
        .env("DORA_SOURCE_KEY", "binary-test-source-key-0123456789abcdef")
        .stdin(Stdio::null());
    command
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn admin() -> PgConnection {
    PgConnection::connect(&format!("{}/postgres", server_url()))
        .await
        .unwrap()
}

fn tag() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[tokio::test]
async fn a_missing_database_is_created_and_migrated() {
    let name = format!("dora_test_missing_{}", tag());
    let url = format!("{}/{name}", server_url());
    let child = Kill(
        projector(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let migrated = loop {
        let found = match PgConnection::connect(&url).await {
            Ok(mut db) => {
                sqlx::query_scalar::<_, bool>("SELECT to_regclass('dora.events') IS NOT NULL")
                    .fetch_one(&mut db)
                    .await
                    .unwrap_or(false)
            }
            Err(_) => false,
        };
        if found || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(child);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin().await)
        .await;
    assert!(migrated, "database {name} was not created and migrated");
}

#[tokio::test]
async fn a_database_it_may_not_create_is_named_with_how_to_create_it() {
    let tag = tag();
    let role = format!("dora_test_nocreatedb_{tag}");
    let name = format!("dora_test_missing_{tag}");
    let mut admin = admin().await;
    sqlx::query(&format!("CREATE ROLE {role} LOGIN NOCREATEDB"))
        .execute(&mut admin)
        .await
        .unwrap();
    let host = server_url().replace("postgres://postgres@", &format!("postgres://{role}@"));
    let output = projector(&format!("{host}/{name}")).output().unwrap();
    let _ = sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&mut admin)
        .await;
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{out}");
    assert!(out.contains(&format!("the database `{name}`")), "{out}");
    assert!(out.contains("does not exist"), "{out}");
    assert!(
        out.contains(&format!("CREATE DATABASE \"{name}\"")),
        "{out}"
    );
    assert!(out.contains("permission denied"), "the reason: {out}");
}
