//! A steady flow of events through the gateway, from clients that retry as the README
//! tells them to, and the bookkeeping that shows afterwards whether anything accepted
//! was lost or anything stored was never sent.
//!
//! Half the requests carry their own event ids; the other half carry none and send an
//! `Idempotency-Key` instead, so both ways the README offers to make a retry safe are
//! exercised. A retry repeats the request byte for byte. Clients retry connection
//! errors, `5xx`, `408` and `429` with backoff, as `dora-emit` does; anything else
//! (`400`, `401`) is a failure of the test itself.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinSet;

/// The token the flow sends with; its name, `ci`, is the events' source.
pub const TOKEN: &str = "ci-faults-secret-0123456789";
/// `DORA_INGEST_TOKENS` for a gateway that accepts [`TOKEN`].
pub const TOKENS: &str = "ci=ci-faults-secret-0123456789";

/// How much to send, and how fast.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Events in all.
    pub events: usize,
    /// Events per request.
    pub batch: usize,
    /// Clients sending at once.
    pub clients: usize,
    /// How long the whole flow should take: requests are spread evenly over it, so the
    /// flow is still going when a fault strikes and after it.
    pub over: Duration,
}

/// What the flow did, updated as it goes.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every id put in a request (given, or derived from the request's key).
    pub sent: Mutex<HashSet<String>>,
    /// Every id the gateway answered `202` for.
    pub accepted: Mutex<HashSet<String>>,
    /// Requests sent again after a connection error or a retryable status.
    pub retries: AtomicU64,
    /// Requests answered `202`.
    pub requests_accepted: AtomicU64,
    /// Requests that never got a `202` before the client gave up.
    pub given_up: AtomicU64,
    /// Attempts that ended in a connection error (refused, reset, timed out) rather
    /// than an answer: the gateway was not there, or went away mid-request.
    pub cut: AtomicU64,
    /// Requests on the wire right now.
    pub in_flight: AtomicU64,
    /// Answers that were neither `202` nor retryable, with their body.
    pub refusals: Mutex<Vec<String>>,
}

impl Ledger {
    /// Ids accepted so far.
    pub fn accepted_count(&self) -> usize {
        self.accepted.lock().expect("ledger").len()
    }

    /// Ids sent so far.
    pub fn sent_count(&self) -> usize {
        self.sent.lock().expect("ledger").len()
    }
}

/// How long a client keeps retrying one request before it gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Starts the flow against the gateway at `base`; `run` tags the ids so two flows
/// never share one. The ledger fills in as it goes; the set finishes with the flow.
pub fn start(base: String, run: &str, plan: Plan) -> (Arc<Ledger>, JoinSet<()>) {
    let ledger = Arc::new(Ledger::default());
    let next = Arc::new(AtomicU64::new(0));
    let batches = plan.events.div_ceil(plan.batch) as u64;
    let pace = plan.over / batches as u32;
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client");
    let mut set = JoinSet::new();
    for _ in 0..plan.clients {
        let (ledger, next, client, base, run) = (
            ledger.clone(),
            next.clone(),
            client.clone(),
            base.clone(),
            run.to_owned(),
        );
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= batches {
                    return;
                }
                // Batch i goes no earlier than its slot: a steady rate, not a burst.
                tokio::time::sleep_until((started + pace * i as u32).into()).await;
                let first = i as usize * plan.batch;
                let count = plan.batch.min(plan.events - first);
                let request = Request::new(&run, i, first, count);
                ledger
                    .sent
                    .lock()
                    .expect("ledger")
                    .extend(request.ids.iter().cloned());
                send(&client, &base, &request, &ledger).await;
            }
        });
    }
    (ledger, set)
}

/// One request of the flow, as it is sent every time.
struct Request {
    body: Vec<u8>,
    key: Option<String>,
    ids: Vec<String>,
}

impl Request {
    /// Events `first..first+count`; even batches carry ids, odd ones an idempotency key.
    fn new(run: &str, batch: u64, first: usize, count: usize) -> Request {
        let keyed = batch % 2 == 1;
        let key = keyed.then(|| format!("{run}-batch-{batch}"));
        let mut ids = Vec::with_capacity(count);
        let events: Vec<Value> = (0..count)
            .map(|j| {
                let n = first + j;
                let mut event = json!({
                    "kind": "deploy",
                    "service": format!("svc-{}", n % 7),
                    // One sha per event: the flow measures loss, not a sha's history.
                    "git_sha": format!("{:08x}", n + 0x1000_0000),
                });
                match &key {
                    Some(key) => ids.push(dora_ingest::idempotency::derived_id("ci", key, j)),
                    None => {
                        let id = format!("{run}-{n}");
                        event["id"] = json!(id);
                        ids.push(id);
                    }
                }
                event
            })
            .collect();
        Request {
            body: serde_json::to_vec(&events).expect("json"),
            key,
            ids,
        }
    }
}

/// Sends `request` until it gets a `202`, a final refusal, or the client gives up.
async fn send(client: &reqwest::Client, base: &str, request: &Request, ledger: &Ledger) {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            ledger.retries.fetch_add(1, Ordering::SeqCst);
        }
        attempt += 1;
        let mut builder = client
            .post(format!("{base}/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(request.body.clone());
        if let Some(key) = &request.key {
            builder = builder.header("idempotency-key", key);
        }
        ledger.in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = builder.send().await;
        ledger.in_flight.fetch_sub(1, Ordering::SeqCst);
        match answer {
            Ok(response) if response.status().as_u16() == 202 => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let ids: Vec<String> = body["ids"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|id| id.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids != request.ids {
                    ledger
                        .refusals
                        .lock()
                        .expect("ledger")
                        .push(format!("202 with ids other than the request's: {body}"));
                }
                ledger.accepted.lock().expect("ledger").extend(ids);
                ledger.requests_accepted.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                if !(status >= 500 || status == 408 || status == 429) {
                    ledger
                        .refusals
                        .lock()
                        .expect("ledger")
                        .push(format!("{status}: {text}"));
                    return;
                }
            }
            // Refused, reset, timed out: the gateway may or may not have published.
            Err(_) => {
                ledger.cut.fetch_add(1, Ordering::SeqCst);
            }
        }
        if Instant::now() + backoff > deadline {
            ledger.given_up.fetch_add(1, Ordering::SeqCst);
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// What the log holds against what was sent and accepted.
#[derive(Debug)]
pub struct Audit {
    /// Distinct ids sent.
    pub sent: usize,
    /// Distinct ids answered `202`.
    pub accepted: usize,
    /// Requests sent again.
    pub retried: u64,
    /// Attempts that ended in a connection error.
    pub cut: u64,
    /// Requests never accepted before the client gave up.
    pub given_up: u64,
    /// Rows in the log.
    pub stored: i64,
    /// Distinct ids in the log.
    pub stored_distinct: i64,
    /// Messages the projector kept as rejected.
    pub rejected: i64,
    /// Accepted ids not in the log (a few, for the message).
    pub lost: Vec<String>,
    /// How many accepted ids are not in the log.
    pub lost_count: usize,
    /// Ids in the log that were never sent (a few, for the message).
    pub strangers: Vec<String>,
    /// Answers that were neither `202` nor retryable.
    pub refusals: Vec<String>,
}

impl std::fmt::Display for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, accepted {}, retried {} requests ({} connection errors), given up {}, \
             stored {} ({} distinct), rejected {}, lost {}, never sent {}",
            self.sent,
            self.accepted,
            self.retried,
            self.cut,
            self.given_up,
            self.stored,
            self.stored_distinct,
            self.rejected,
            self.lost_count,
            self.strangers.len()
        )
    }
}

impl Audit {
    /// Reads the log (`dora.events`) through `pool` and compares it with the ledger.
    pub async fn take(ledger: &Ledger, pool: &sqlx::PgPool) -> Audit {
        let (stored, stored_distinct): (i64, i64) =
            sqlx::query_as("SELECT count(*), count(DISTINCT id) FROM dora.events")
                .fetch_one(pool)
                .await
                .expect("count the log");
        let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM dora.rejected_events")
            .fetch_one(pool)
            .await
            .expect("count rejected");
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM dora.events")
            .fetch_all(pool)
            .await
            .expect("read the log's ids");
        let in_log: HashSet<String> = ids.into_iter().collect();
        let sent = ledger.sent.lock().expect("ledger").clone();
        let accepted = ledger.accepted.lock().expect("ledger").clone();
        let mut lost: Vec<String> = accepted.difference(&in_log).cloned().collect();
        let lost_count = lost.len();
        lost.sort();
        lost.truncate(10);
        let mut strangers: Vec<String> = in_log.difference(&sent).cloned().collect();
        strangers.sort();
        strangers.truncate(10);
        Audit {
            sent: sent.len(),
            accepted: accepted.len(),
            retried: ledger.retries.load(Ordering::SeqCst),
            cut: ledger.cut.load(Ordering::SeqCst),
            given_up: ledger.given_up.load(Ordering::SeqCst),
            stored,
            stored_distinct,
            rejected,
            lost,
            lost_count,
            strangers,
            refusals: ledger.refusals.lock().expect("ledger").clone(),
        }
    }

    /// Every accepted id in the log exactly once, nothing in it that was never sent,
    /// nothing rejected, no request refused. Panics with the counts otherwise.
    pub fn assert_nothing_lost_or_leaked(&self, scenario: &str) {
        assert!(
            self.refusals.is_empty(),
            "{scenario}: requests refused ({self}): {:?}",
            &self.refusals[..self.refusals.len().min(5)]
        );
        assert_eq!(
            self.lost_count, 0,
            "{scenario}: accepted events missing from the log ({self}), e.g. {:?}",
            self.lost
        );
        assert_eq!(
            self.stored, self.stored_distinct,
            "{scenario}: an id is in the log more than once ({self})"
        );
        assert!(
            self.strangers.is_empty(),
            "{scenario}: the log holds ids that were never sent ({self}), e.g. {:?}",
            self.strangers
        );
        assert_eq!(
            self.rejected, 0,
            "{scenario}: the projector rejected messages the gateway had accepted ({self})"
        );
    }
}

/// Waits until every consumer of `stream` has nothing pending and nothing unacked: the
/// projector has caught up with everything the stream holds. Whatever the consumer is
/// called, so it keeps working if its default name changes.
pub async fn wait_caught_up(nats_url: &str, stream: &str, limit: Duration) {
    use futures::TryStreamExt;
    // One URL, or a cluster's several, comma-separated.
    let client = dora_event::stream::connect(nats_url)
        .await
        .expect("connect to the private nats-server");
    let js = async_nats::jetstream::new(client);
    let mut last = String::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(mut s) = js.get_stream(stream).await {
            let messages = s.info().await.map(|i| i.state.messages).unwrap_or(0);
            let consumers: Vec<_> = s.consumers().try_collect().await.unwrap_or_default();
            last = format!(
                "{messages} messages; consumers: {:?}",
                consumers
                    .iter()
                    .map(|c| (&c.name, c.num_pending, c.num_ack_pending))
                    .collect::<Vec<_>>()
            );
            if !consumers.is_empty()
                && consumers
                    .iter()
                    .all(|c| c.num_pending == 0 && c.num_ack_pending == 0)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the projector did not catch up within {limit:?}: {last}");
}
