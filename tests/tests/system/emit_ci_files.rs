//! The GitHub Action, the example workflows and the GitLab CI template: they parse as
//! YAML, and every dora-emit invocation in them, with the CI's expressions replaced by
//! plausible values, parses with dora-emit's own argument parser and makes a valid
//! event (run for real, with DORA_EMIT_DRY_RUN=true so nothing is sent).
//!
//! The schemas of the files are checked by `deploy/check-ci-files.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use dora_system_tests::emit::{self, Checkout};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(docs.len(), 1, "{path:?} is one YAML document");
    docs.remove(0)
}

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {suffix} files in {dir}");
    files
}

fn text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn hash(y: &Yaml) -> Vec<(String, &Yaml)> {
    y.as_hash()
        .map(|h| h.iter().map(|(k, v)| (text(k), v)).collect())
        .unwrap_or_default()
}

/// Runs a shell snippet with dora-emit first on PATH and `vars` as the whole
/// environment; returns (exit status, stdout, stderr).
async fn shell(
    shell: &str,
    script: &str,
    dir: &Path,
    vars: &BTreeMap<String, String>,
) -> emit::Ran {
    let bin_dir = emit::binary().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut command = tokio::process::Command::new(shell);
    command
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", path)
        .envs(vars)
        .env("DORA_EMIT_DRY_RUN", "true")
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    emit::run(&mut command).await
}

/// The event a dry run printed, validated as the contract says.
fn event_of(ran: &emit::Ran, what: &str) -> dora_event::Event {
    assert_eq!(
        ran.code,
        Some(0),
        "{what}: stdout {} stderr {}",
        ran.stdout,
        ran.stderr
    );
    let value: Value = serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: not one JSON event ({e}): {}", ran.stdout));
    dora_event::validate(&value, dora_event::Origin::Stream, Utc::now())
        .unwrap_or_else(|e| panic!("{what}: {e}: {value}"))
}

/// Plausible values for the GitHub expressions the examples use. An expression not
/// here fails the test: add it with a value a real run could have.
fn github_expression(expr: &str) -> &'static str {
    match expr {
        "job.status" => "cancelled",
        "vars.DORA_URL" => "",
        "secrets.DORA_TOKEN" => "dry-run-token-never-sent",
        "inputs.sha" => "9f2c1e7",
        "inputs.ref" => "INC-123",
        "inputs.service" => "checkout",
        "inputs.state" => "opened",
        other => panic!("no plausible value for the expression `${{{{ {other} }}}}`"),
    }
}

/// Replaces every `${{ expr }}` with `value(expr)`.
fn substitute(text: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed ${{") + start;
        out.push_str(&value(rest[start + 3..end].trim()));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn ci_files_github_action_uses_parse_and_make_valid_events() {
    let checkout = Checkout::new(Utc::now() - chrono::TimeDelta::hours(1));
    let action = load(&repo().join("deploy/github/action.yml"));
    assert_eq!(text(&action["runs"]["using"]), "composite");
    let steps = action["runs"]["steps"].as_vec().unwrap();
    let emit_step = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("emit"))
        .expect("the action has a step with id `emit`");
    let script = text(&emit_step["run"]);
    assert!(script.contains("dora-emit "), "{script}");
    let defaults: BTreeMap<String, String> = hash(&action["inputs"])
        .into_iter()
        .map(|(name, spec)| {
            (
                name,
                if spec["default"].is_badvalue() {
                    String::new()
                } else {
                    text(&spec["default"])
                },
            )
        })
        .collect();

    let github: BTreeMap<String, String> = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_REPOSITORY", "acme/shop"),
        ("GITHUB_RUN_ID", "8123456789"),
        ("GITHUB_RUN_ATTEMPT", "1"),
        ("GITHUB_JOB", "deploy"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    let mut kinds = Vec::new();
    for file in files("deploy/github/workflows", ".yml") {
        let workflow = load(&file);
        for (job_name, job) in hash(&workflow["jobs"]) {
            for step in job["steps"].as_vec().unwrap() {
                let what = format!(
                    "{}: job {job_name}, step {:?}",
                    file.display(),
                    step["name"].as_str()
                );
                if let Some(run) = step["run"].as_str().filter(|r| r.contains("dora-emit")) {
                    // dora-emit called straight from a run step.
                    let run = substitute(run, |e| github_expression(e).to_owned());
                    let event = event_of(&shell("bash", &run, &checkout.dir, &github).await, &what);
                    kinds.push(event.kind.as_str().to_owned());
                }
                let Some(uses) = step["uses"].as_str() else {
                    continue;
                };
                if !(uses.contains("/deploy/github@") || uses == "./deploy/github") {
                    continue;
                }
                // What `with:` gives the action, over its defaults.
                let mut inputs = defaults.clone();
                for (name, value) in hash(&step["with"]) {
                    assert!(
                        defaults.contains_key(&name),
                        "{what}: the action has no input `{name}`"
                    );
                    inputs.insert(
                        name,
                        substitute(&text(value), |e| github_expression(e).to_owned()),
                    );
                }
                let mut vars = github.clone();
                for (name, value) in hash(&emit_step["env"]) {
                    let value = substitute(&text(value), |e| {
                        let input = e
                            .strip_prefix("inputs.")
                            .unwrap_or_else(|| panic!("action step env uses `{e}`"));
                        inputs
                            .get(input)
                            .unwrap_or_else(|| panic!("no input `{input}`"))
                            .clone()
                    });
                    vars.insert(name, value);
                }
                let event = event_of(&shell("bash", &script, &checkout.dir, &vars).await, &what);
                let command = &inputs["command"];
                assert_eq!(event.kind.as_str(), command.replace('-', "_"), "{what}");
                assert_eq!(event.service, inputs["service"], "{what}");
                if command == "deploy" {
                    assert_eq!(
                        event.succeeded,
                        Some(false),
                        "{what}: job.status cancelled is a failure"
                    );
                    assert_eq!(
                        event.git_sha.as_deref(),
                        Some(checkout.sha.as_str()),
                        "{what}: HEAD"
                    );
                }
                assert!(
                    event.id.starts_with("gh-8123456789-1-"),
                    "{what}: {}",
                    event.id
                );
                kinds.push(event.kind.as_str().to_owned());
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        ["deploy", "incident_closed", "incident_opened", "rollback"],
        "the examples cover every use"
    );
}

/// A GitLab job's key, looked up through its `extends:` chain (a job's own key wins).
fn inherited<'a>(jobs: &BTreeMap<String, &'a Yaml>, job: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    if !job[key].is_badvalue() {
        return Some(&job[key]);
    }
    parents(job)
        .iter()
        .rev()
        .find_map(|p| jobs.get(p).and_then(|parent| inherited(jobs, parent, key)))
}

fn parents(job: &Yaml) -> Vec<String> {
    match &job["extends"] {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(list) => list.iter().map(text).collect(),
        _ => Vec::new(),
    }
}

/// A job's variables, its parents' first (GitLab merges `variables:` across extends).
fn variables(jobs: &BTreeMap<String, &Yaml>, job: &Yaml, into: &mut BTreeMap<String, String>) {
    for parent in parents(job) {
        if let Some(p) = jobs.get(&parent) {
            variables(jobs, p, into);
        }
    }
    for (name, value) in hash(&job["variables"]) {
        into.insert(name, text(value));
    }
}

fn script_lines(y: &Yaml, into: &mut Vec<String>) {
    match y {
        Yaml::String(s) => into.push(s.clone()),
        Yaml::Array(items) => items.iter().for_each(|i| script_lines(i, into)),
        _ => {}
    }
}

#[tokio::test]
async fn ci_files_gitlab_template_invocations_parse_and_make_valid_events() {
    let checkout = Checkout::new(Utc::now() - chrono::TimeDelta::hours(1));
    let docs: Vec<Yaml> = files("deploy/gitlab", ".gitlab-ci.yml")
        .iter()
        .map(|f| load(f))
        .collect();
    let reserved = [
        "include",
        "stages",
        "variables",
        "default",
        "workflow",
        "image",
        "services",
        "cache",
        "before_script",
        "after_script",
    ];
    let mut jobs: BTreeMap<String, &Yaml> = BTreeMap::new();
    for doc in &docs {
        for (name, job) in hash(doc) {
            if !reserved.contains(&name.as_str()) {
                jobs.insert(name, job);
            }
        }
    }
    assert!(
        jobs.contains_key(".dora-deploy")
            && jobs.contains_key(".dora-rollback")
            && jobs.contains_key(".dora-incident")
    );

    // What GitLab sets, and what a user sets when running the pipeline; pipeline
    // variables win over the job's own, as in GitLab.
    let pipeline: BTreeMap<String, String> = [
        ("GITLAB_CI", "true"),
        ("CI_PIPELINE_ID", "4711"),
        ("CI_JOB_ID", "90001"),
        ("CI_COMMIT_BRANCH", "main"),
        ("DORA_INCIDENT", "opened"),
        ("DORA_INCIDENT_REF", "INC-123"),
        ("DORA_INCIDENT_SHA", "9f2c1e7"),
        ("DORA_ROLLBACK_SHA", "9f2c1e7"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    let mut kinds = Vec::new();
    for (name, job) in &jobs {
        let mut lines = Vec::new();
        for key in ["before_script", "script", "after_script"] {
            if let Some(y) = inherited(&jobs, job, key) {
                script_lines(y, &mut lines);
            }
        }
        for line in lines.iter().filter(|l| l.contains("dora-emit")) {
            let mut vars = BTreeMap::new();
            vars.insert("DORA_SERVICE".to_owned(), "checkout".to_owned());
            variables(&jobs, job, &mut vars);
            vars.extend(pipeline.clone());
            for status in ["success", "failed", "canceled"] {
                vars.insert("CI_JOB_STATUS".to_owned(), status.to_owned());
                let what = format!("job {name} with CI_JOB_STATUS={status}: {line}");
                let ran = shell("sh", line, &checkout.dir, &vars).await;
                if status != "success" && ran.code == Some(0) && ran.stdout.trim().is_empty() {
                    continue; // e.g. a rollback that did not happen is not recorded
                }
                let event = event_of(&ran, &what);
                assert_eq!(event.service, vars["DORA_SERVICE"], "{what}");
                assert!(
                    event.id.starts_with("gl-4711-90001-"),
                    "{what}: {}",
                    event.id
                );
                if event.kind == dora_event::Kind::Deploy {
                    assert_eq!(event.succeeded, Some(status == "success"), "{what}");
                    assert_eq!(
                        event.git_sha.as_deref(),
                        Some(checkout.sha.as_str()),
                        "{what}"
                    );
                }
                kinds.push(event.kind.as_str().to_owned());
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        ["deploy", "incident_opened", "rollback"],
        "the template covers every use"
    );
}
