//! Each tool's published webhook payloads (tests/fixtures/webhooks, SOURCES.md says
//! where each came from) mapped to events as CONTRACT.md section 9 says. Variants are
//! made from a real payload by changing the one field a case is about.

// A panic in a test is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use dora_event::{validate, Event, Origin};
use dora_ingest::webhooks::commits::{Lookup, Tool};
use dora_ingest::webhooks::names::{NameMap, Names};
use dora_ingest::webhooks::{alertmanager, github, gitlab, opsgenie, pagerduty};
use dora_ingest::webhooks::{Commit, Draft, Mapped};
use serde_json::{json, Value};

fn fixture(path: &str) -> Value {
    let file = format!(
        "{}/../tests/fixtures/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The names of a delivery to a URL with `query`, under the default maps plus `services`.
fn with<T>(query: Option<&str>, services: &str, f: impl FnOnce(&Names) -> T) -> T {
    let services = NameMap::parse(services).unwrap();
    let environments = NameMap::parse("production=prod").unwrap();
    let names = Names::from_query(query, &services, &environments).unwrap();
    f(&names)
}

/// The drafts as `POST /events` would validate them, each with its commit source.
fn events(mapped: Mapped) -> Vec<(Event, Commit)> {
    match mapped {
        Mapped::Events(drafts) => drafts
            .into_iter()
            .map(|Draft { fields, commit }| {
                let event = validate(&Value::Object(fields), Origin::Gateway, Utc::now())
                    .unwrap_or_else(|e| panic!("a real payload maps to an invalid event: {e}"));
                (event, commit)
            })
            .collect(),
        Mapped::Ignored(why) => panic!("ignored: {why}"),
    }
}

fn one(mapped: Mapped) -> (Event, Commit) {
    let mut all = events(mapped);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn ignored(mapped: Mapped) -> String {
    match mapped {
        Mapped::Ignored(why) => why,
        Mapped::Events(drafts) => panic!("expected nothing, got {drafts:?}"),
    }
}

fn no_workflows() -> NameMap {
    NameMap::default()
}

#[test]
fn github_deployment_status_success_is_a_deploy_with_a_commit_lookup() {
    let body = fixture("github/deployment_status.payload.json");
    let (event, commit) = one(with(None, "", |n| {
        github::map("deployment_status", &body, &no_workflows(), n).unwrap()
    }));
    assert_eq!(event.id, "github-deployment-status-209916254");
    assert_eq!(event.kind.as_str(), "deploy");
    assert_eq!(event.service, "Hello-World");
    assert_eq!(
        event.environment, "prod",
        "production maps to prod by default"
    );
    assert_eq!(
        event.git_sha.as_deref(),
        Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    );
    assert_eq!(event.succeeded, Some(true));
    assert_eq!(event.occurred_at, utc("2019-05-15T15:20:55Z"));
    assert_eq!(event.commit_at, None, "the payload carries no commit time");
    assert_eq!(
        commit,
        Commit::Lookup(Lookup {
            tool: Tool::GitHub,
            project: "Codertocat/Hello-World".to_owned(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".to_owned(),
        })
    );

    // The installation variant is the same delivery shape.
    let body = fixture("github/deployment_status.with-installation.payload.json");
    let (event, _) = one(with(None, "", |n| {
        github::map("deployment_status", &body, &no_workflows(), n).unwrap()
    }));
    assert_eq!(event.succeeded, Some(true));
}

#[test]
fn github_deployment_status_failure_and_error_are_failed_deploys_and_the_rest_ignored() {
    let real = fixture("github/deployment_status.payload.json");
    for (state, outcome) in [
        ("failure", Some(false)),
        ("error", Some(false)),
        ("success", Some(true)),
        ("pending", None),
        ("in_progress", None),
        ("queued", None),
        ("inactive", None),
    ] {
        let mut body = real.clone();
        body["deployment_status"]["state"] = json!(state);
        let mapped = with(None, "", |n| {
            github::map("deployment_status", &body, &no_workflows(), n).unwrap()
        });
        match outcome {
            Some(succeeded) => assert_eq!(one(mapped).0.succeeded, Some(succeeded), "{state}"),
            None => assert!(ignored(mapped).contains(state), "{state}"),
        }
    }
    // The published in-progress example is ignored.
    let pages = fixture("github/deployment_status.gh-pages.payload.json");
    let why = ignored(with(None, "", |n| {
        github::map("deployment_status", &pages, &no_workflows(), n).unwrap()
    }));
    assert!(why.contains("in_progress"), "{why}");
}

#[test]
fn github_names_the_environment_and_the_service_as_configured() {
    let real = fixture("github/deployment_status.payload.json");
    // The status's environment first, the deployment's when the status has none.
    let mut body = real.clone();
    body["deployment_status"]["environment"] = json!("staging");
    let (event, _) = one(with(None, "", |n| {
        github::map("deployment_status", &body, &no_workflows(), n).unwrap()
    }));
    assert_eq!(event.environment, "staging");
    body["deployment_status"]
        .as_object_mut()
        .unwrap()
        .remove("environment");
    body["deployment"]["environment"] = json!("eu west");
    let (event, _) = one(with(None, "", |n| {
        github::map("deployment_status", &body, &no_workflows(), n).unwrap()
    }));
    assert_eq!(event.environment, "eu-west", "made to fit the charset");
    // updated_at first, created_at when there is none.
    body["deployment_status"]["updated_at"] = Value::Null;
    body["deployment_status"]["created_at"] = json!("2019-05-15T15:20:54Z");
    let (event, _) = one(with(None, "", |n| {
        github::map("deployment_status", &body, &no_workflows(), n).unwrap()
    }));
    assert_eq!(event.occurred_at, utc("2019-05-15T15:20:54Z"));

    // DORA_WEBHOOK_SERVICES maps the repository's full name; the URL wins over both.
    let (event, _) = one(with(None, "Codertocat/Hello-World=hello", |n| {
        github::map("deployment_status", &real, &no_workflows(), n).unwrap()
    }));
    assert_eq!(event.service, "hello");
    let (event, _) = one(with(None, "Hello-World=hello", |n| {
        github::map("deployment_status", &real, &no_workflows(), n).unwrap()
    }));
    assert_eq!(
        event.service, "Hello-World",
        "the map's key is the full name"
    );
    let (event, _) = one(with(
        Some("service=web&environment=canary"),
        "Codertocat/Hello-World=hello",
        |n| github::map("deployment_status", &real, &no_workflows(), n).unwrap(),
    ));
    assert_eq!(
        (event.service.as_str(), event.environment.as_str()),
        ("web", "canary")
    );
}

#[test]
fn github_workflow_run_completed_is_a_deploy_only_for_listed_workflows() {
    let body = fixture("github/workflow_run.completed.payload.json");
    let why = ignored(with(None, "", |n| {
        github::map("workflow_run", &body, &no_workflows(), n).unwrap()
    }));
    assert!(why.contains("DORA_GITHUB_DEPLOY_WORKFLOWS"), "{why}");

    let workflows = NameMap::parse(".github/workflows/test.yml=production").unwrap();
    let (event, commit) = one(with(None, "", |n| {
        github::map("workflow_run", &body, &workflows, n).unwrap()
    }));
    assert_eq!(event.id, "github-workflow-run-289782451-1");
    assert_eq!(event.service, "octo-repo");
    assert_eq!(event.environment, "prod");
    assert_eq!(
        event.git_sha.as_deref(),
        Some("3484a3fb816e0859fd6e1cea078d76385ff50625")
    );
    assert_eq!(event.succeeded, Some(true));
    assert_eq!(event.occurred_at, utc("2020-10-05T16:33:49Z"));
    assert_eq!(commit, Commit::Known(utc("2020-10-05T16:32:07Z")));

    let with_prs = fixture("github/workflow_run.completed.with-pull-requests.payload.json");
    let (event, _) = one(with(None, "", |n| {
        github::map("workflow_run", &with_prs, &workflows, n).unwrap()
    }));
    assert_eq!(event.id, "github-workflow-run-289782451-1");

    let requested = fixture("github/workflow_run.requested.payload.json");
    let why = ignored(with(None, "", |n| {
        github::map("workflow_run", &requested, &workflows, n).unwrap()
    }));
    assert!(why.contains("requested"), "{why}");
}

#[test]
fn github_workflow_run_conclusions_attempts_and_refs() {
    let real = fixture("github/workflow_run.completed.payload.json");
    let workflows = NameMap::parse(".github/workflows/test.yml=staging").unwrap();
    for (conclusion, outcome) in [
        ("failure", Some(false)),
        ("timed_out", Some(false)),
        ("cancelled", None),
        ("skipped", None),
        ("neutral", None),
        ("action_required", None),
    ] {
        let mut body = real.clone();
        body["workflow_run"]["conclusion"] = json!(conclusion);
        let mapped = with(None, "", |n| {
            github::map("workflow_run", &body, &workflows, n).unwrap()
        });
        match outcome {
            Some(succeeded) => {
                let (event, _) = one(mapped);
                assert_eq!(event.succeeded, Some(succeeded), "{conclusion}");
                assert_eq!(event.environment, "staging");
            }
            None => assert!(ignored(mapped).contains(conclusion), "{conclusion}"),
        }
    }
    // A re-run is another attempt, another event; without the field, attempt 1.
    let mut body = real.clone();
    body["workflow_run"]["run_attempt"] = json!(3);
    let (event, _) = one(with(None, "", |n| {
        github::map("workflow_run", &body, &workflows, n).unwrap()
    }));
    assert_eq!(event.id, "github-workflow-run-289782451-3");
    body["workflow_run"]
        .as_object_mut()
        .unwrap()
        .remove("run_attempt");
    let (event, _) = one(with(None, "", |n| {
        github::map("workflow_run", &body, &workflows, n).unwrap()
    }));
    assert_eq!(event.id, "github-workflow-run-289782451-1");
    // A path with the ref it ran at is the same workflow.
    let mut body = real.clone();
    body["workflow_run"]["path"] = json!(".github/workflows/test.yml@refs/heads/main");
    assert!(matches!(
        with(None, "", |n| github::map(
            "workflow_run",
            &body,
            &workflows,
            n
        )
        .unwrap()),
        Mapped::Events(_)
    ));
}

#[test]
fn github_ping_and_other_events_are_ignored() {
    let ping = fixture("github/ping.payload.json");
    let why = ignored(with(None, "", |n| {
        github::map("ping", &ping, &no_workflows(), n).unwrap()
    }));
    assert!(why.starts_with("ping"), "{why}");
    let push = fixture("github/push.payload.json");
    let why = ignored(with(None, "", |n| {
        github::map("push", &push, &no_workflows(), n).unwrap()
    }));
    assert!(why.contains("`push`"), "{why}");
}

#[test]
fn github_payloads_missing_what_dora_needs_are_named() {
    let real = fixture("github/deployment_status.payload.json");
    for (path, expected) in [
        (
            &["deployment_status", "id"][..],
            "`deployment_status.id` is missing",
        ),
        (&["deployment", "sha"][..], "`deployment.sha` is missing"),
        (
            &["repository", "full_name"][..],
            "`repository.full_name` is missing",
        ),
        (
            &["deployment_status", "state"][..],
            "`deployment_status.state` is missing",
        ),
    ] {
        let mut body = real.clone();
        body[path[0]].as_object_mut().unwrap().remove(path[1]);
        let err = with(None, "", |n| {
            github::map("deployment_status", &body, &no_workflows(), n).unwrap_err()
        });
        assert!(err.0.contains(expected), "{}", err.0);
    }
    let mut body = real.clone();
    body["deployment_status"]["updated_at"] = json!("yesterday");
    let err = with(None, "", |n| {
        github::map("deployment_status", &body, &no_workflows(), n).unwrap_err()
    });
    assert!(
        err.0
            .contains("`deployment_status.updated_at` must be an RFC 3339 time"),
        "{}",
        err.0
    );
}

#[test]
fn gitlab_deployment_hook_is_a_deploy_with_a_commit_lookup() {
    let body = fixture("gitlab/deployment_hook.json");
    let (event, commit) = one(with(None, "", |n| {
        gitlab::map("Deployment Hook", &body, n).unwrap()
    }));
    assert_eq!(event.id, "gitlab-deployment-15-success");
    assert_eq!(event.service, "test-deployment-webhooks");
    assert_eq!(event.environment, "staging");
    assert_eq!(
        event.git_sha.as_deref(),
        Some("279484c09fbe69ededfced8c1bb6e6d24616b468"),
        "the whole sha from commit_url, not short_sha"
    );
    assert_eq!(event.succeeded, Some(true));
    assert_eq!(event.occurred_at, utc("2021-04-28T19:50:00Z"));
    assert_eq!(
        commit,
        Commit::Lookup(Lookup {
            tool: Tool::GitLab,
            project: "30".to_owned(),
            sha: "279484c09fbe69ededfced8c1bb6e6d24616b468".to_owned(),
        })
    );
    let (event, _) = one(with(
        None,
        "root/test-deployment-webhooks=deployments",
        |n| gitlab::map("Deployment Hook", &body, n).unwrap(),
    ));
    assert_eq!(
        event.service, "deployments",
        "mapped by path_with_namespace"
    );
}

#[test]
fn gitlab_statuses_and_the_short_sha() {
    let real = fixture("gitlab/deployment_hook.json");
    let mut failed = real.clone();
    failed["status"] = json!("failed");
    let (event, _) = one(with(None, "", |n| {
        gitlab::map("Deployment Hook", &failed, n).unwrap()
    }));
    assert_eq!(event.id, "gitlab-deployment-15-failed");
    assert_eq!(event.succeeded, Some(false));
    for status in ["running", "canceled", "created"] {
        let mut body = real.clone();
        body["status"] = json!(status);
        let why = ignored(with(None, "", |n| {
            gitlab::map("Deployment Hook", &body, n).unwrap()
        }));
        assert!(why.contains(status), "{why}");
    }
    let mut short = real.clone();
    short["commit_url"] = json!("http://10.126.0.2:3000/root/x/-/commit/279484c0");
    let (event, _) = one(with(None, "", |n| {
        gitlab::map("Deployment Hook", &short, n).unwrap()
    }));
    assert_eq!(event.git_sha.as_deref(), Some("279484c0"));
    let push = fixture("gitlab/push_hook.json");
    let why = ignored(with(None, "", |n| {
        gitlab::map("Push Hook", &push, n).unwrap()
    }));
    assert!(why.contains("Push Hook"), "{why}");
    let mut bad = real.clone();
    bad["status_changed_at"] = json!("28/04/2021");
    let err = with(None, "", |n| {
        gitlab::map("Deployment Hook", &bad, n).unwrap_err()
    });
    assert!(err.0.contains("`status_changed_at`"), "{}", err.0);
}

#[test]
fn pagerduty_incidents_open_reopen_and_close() {
    let triggered = fixture("pagerduty/zulip.incident.triggered.json");
    let (event, _) = one(with(None, "", |n| pagerduty::map(&triggered, n).unwrap()));
    assert_eq!(event.kind.as_str(), "incident_opened");
    assert_eq!(event.id, "pagerduty-01BZYIL05THJDFF2Y08X9SVMTU");
    assert_eq!(event.ref_id.as_deref(), Some("pagerduty:PFQZPSY"));
    assert_eq!(event.service, "pig208");
    assert_eq!(event.environment, "prod");
    assert_eq!(event.occurred_at, utc("2021-06-04T13:35:29.781Z"));
    assert_eq!(event.git_sha, None);

    let resolved = fixture("pagerduty/zulip.incident.resolved.json");
    let (event, _) = one(with(None, "", |n| pagerduty::map(&resolved, n).unwrap()));
    assert_eq!(event.kind.as_str(), "incident_closed");
    assert_eq!(event.ref_id.as_deref(), Some("pagerduty:PCPZE64"));
    assert_eq!(event.occurred_at, utc("2021-06-04T13:16:53.816Z"));

    let reopened = fixture("pagerduty/zulip.incident.reopened.json");
    let (event, _) = one(with(None, "", |n| pagerduty::map(&reopened, n).unwrap()));
    assert_eq!(event.kind.as_str(), "incident_opened");
    assert!(event.id.starts_with("pagerduty-"));

    for file in [
        "pagerduty/zulip.incident.acknowledged.json",
        "pagerduty/incident.priority_updated.json",
        "pagerduty/service.updated.json",
    ] {
        let body = fixture(file);
        let why = ignored(with(None, "", |n| pagerduty::map(&body, n).unwrap()));
        assert!(why.contains("event type"), "{file}: {why}");
    }
    // The service's name is mapped, and the URL wins.
    let (event, _) = one(with(None, "pig208=pig", |n| {
        pagerduty::map(&triggered, n).unwrap()
    }));
    assert_eq!(event.service, "pig");
    let (event, _) = one(with(Some("service=web&environment=stage"), "", |n| {
        pagerduty::map(&triggered, n).unwrap()
    }));
    assert_eq!(
        (event.service.as_str(), event.environment.as_str()),
        ("web", "stage")
    );
}

/// Opsgenie's published sample has neither a `service:` tag nor an entity.
#[test]
fn opsgenie_create_and_close_need_a_service() {
    let create = fixture("opsgenie/create.json");
    let why = ignored(with(None, "", |n| opsgenie::map(&create, n).unwrap()));
    assert!(why.contains("?service="), "{why}");

    let (event, _) = one(with(Some("service=checkout"), "", |n| {
        opsgenie::map(&create, n).unwrap()
    }));
    assert_eq!(event.kind.as_str(), "incident_opened");
    assert_eq!(
        event.id,
        "opsgenie-052652ac-5d1c-464a-812a-7dd18bbfba8c-create"
    );
    assert_eq!(
        event.ref_id.as_deref(),
        Some("opsgenie:052652ac-5d1c-464a-812a-7dd18bbfba8c")
    );
    assert_eq!(event.service, "checkout");
    assert_eq!(
        event.occurred_at,
        utc("2015-01-05T10:03:11.104Z"),
        "createdAt in ms"
    );

    let mut tagged = create.clone();
    tagged["alert"]["tags"] = json!([
        "team:core",
        "service:",
        "service: payments api",
        "service:other"
    ]);
    tagged["alert"]["entity"] = json!("billing");
    let (event, _) = one(with(None, "", |n| opsgenie::map(&tagged, n).unwrap()));
    assert_eq!(
        event.service, "payments-api",
        "the first non-empty service tag, fitted"
    );
    let mut entity = create.clone();
    entity["alert"]["entity"] = json!("billing");
    let (event, _) = one(with(None, "billing=bills", |n| {
        opsgenie::map(&entity, n).unwrap()
    }));
    assert_eq!(event.service, "bills", "the entity, mapped");

    // A Close: the published Create with its action and update time changed (SOURCES.md).
    let mut close = entity.clone();
    close["action"] = json!("Close");
    close["alert"]["updatedAt"] = json!(1_420_452_224_764_002_246_i64);
    let (event, _) = one(with(None, "", |n| opsgenie::map(&close, n).unwrap()));
    assert_eq!(event.kind.as_str(), "incident_closed");
    assert_eq!(
        event.id,
        "opsgenie-052652ac-5d1c-464a-812a-7dd18bbfba8c-close"
    );
    assert_eq!(
        event.occurred_at,
        utc("2015-01-05T10:03:44.764002Z"),
        "updatedAt in ns"
    );

    let ack = fixture("opsgenie/acknowledge.json");
    let why = ignored(with(Some("service=x"), "", |n| {
        opsgenie::map(&ack, n).unwrap()
    }));
    assert!(why.contains("`Acknowledge`"), "{why}");
}

#[test]
fn alertmanager_alerts_open_and_close_by_fingerprint_and_start() {
    let firing = fixture("alertmanager/zulip.firing.json");
    // Neither alert of the recorded group has a `service` or `job` label.
    let why = ignored(with(None, "", |n| alertmanager::map(&firing, n).unwrap()));
    assert!(why.contains("none of the 2 alert(s)"), "{why}");

    let opened = events(with(Some("service=andromeda"), "", |n| {
        alertmanager::map(&firing, n).unwrap()
    }));
    let ids: Vec<&str> = opened.iter().map(|(e, _)| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "alertmanager-a1bc48475b20e73d-1580948278-firing",
            "alertmanager-c2ea85182f28cbd9-1580948278-firing"
        ]
    );
    let (first, _) = &opened[0];
    assert_eq!(first.kind.as_str(), "incident_opened");
    assert_eq!(
        first.ref_id.as_deref(),
        Some("alertmanager:a1bc48475b20e73d:1580948278")
    );
    assert_eq!(first.occurred_at, utc("2020-02-06T00:17:58.432911Z"));
    assert_eq!(first.service, "andromeda");

    // Labels name the service (`service`, else `job`) and the environment.
    let mut labelled = firing.clone();
    labelled["alerts"][0]["labels"]["job"] = json!("node");
    labelled["alerts"][0]["labels"]["env"] = json!("production");
    labelled["alerts"][1]["labels"]["job"] = json!("node");
    labelled["alerts"][1]["labels"]["service"] = json!("api gateway");
    labelled["alerts"][1]["labels"]["environment"] = json!("staging");
    labelled["alerts"][1]["labels"]["env"] = json!("ignored");
    let both = events(with(None, "", |n| alertmanager::map(&labelled, n).unwrap()));
    assert_eq!(both[0].0.service, "node");
    assert_eq!(both[0].0.environment, "prod");
    assert_eq!(both[1].0.service, "api-gateway");
    assert_eq!(both[1].0.environment, "staging");
    // An alert without a service is skipped, the rest kept.
    let mut half = firing.clone();
    half["alerts"][1]["labels"]["job"] = json!("node");
    let kept = events(with(None, "", |n| alertmanager::map(&half, n).unwrap()));
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].0.id,
        "alertmanager-c2ea85182f28cbd9-1580948278-firing"
    );

    // Resolved: closed at endsAt, the same incident as the firing one.
    let mut resolved = fixture("alertmanager/zulip.resolved.json");
    resolved["alerts"][0]["endsAt"] = json!("2020-02-06T00:47:58.432911368Z");
    let (closed, _) = one(with(Some("service=andromeda"), "", |n| {
        alertmanager::map(&resolved, n).unwrap()
    }));
    assert_eq!(closed.kind.as_str(), "incident_closed");
    assert_eq!(
        closed.id,
        "alertmanager-a1bc48475b20e73d-1580948278-resolved"
    );
    assert_eq!(closed.ref_id, first.ref_id);
    assert_eq!(closed.occurred_at, utc("2020-02-06T00:47:58.432911Z"));

    let empty = json!({"version": "4", "status": "firing", "alerts": []});
    let why = ignored(with(None, "", |n| alertmanager::map(&empty, n).unwrap()));
    assert!(why.contains("no alerts"), "{why}");
    let mut broken = firing.clone();
    broken["alerts"][1]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    let err = with(Some("service=x"), "", |n| {
        alertmanager::map(&broken, n).unwrap_err()
    });
    assert!(
        err.0.contains("`alerts.1.fingerprint` is missing"),
        "{}",
        err.0
    );
}

/// PagerDuty's own Go client's signature test (go-pagerduty `webhookv3_test.go`): its
/// body, its secret, its valid header and its mismatching one.
#[test]
fn pagerdutys_signature_test_vector() {
    use dora_ingest::webhooks::proof::Secrets;
    let body = std::fs::read(format!(
        "{}/../tests/fixtures/webhooks/pagerduty/signature-vector.go-pagerduty.body.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let secrets =
        Secrets::parse("lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK").unwrap();
    let valid = "0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
    let mismatch = "7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";
    assert_eq!(secrets.sign(&body), valid);
    assert!(secrets.verify(&body, [valid]));
    assert!(!secrets.verify(&body, [mismatch]));
}
