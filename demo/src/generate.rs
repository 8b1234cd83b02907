//! Turns profiles into a history of lifecycle events: deploy attempts (some failed and
//! retried), staging deploys, rollbacks and incidents naming the shas they blame.
//!
//! Everything comes from the seed: the same seed, days, end and profiles give the same
//! events with the same ids, so sending them again adds nothing to the store. Ids are
//! numbered per service in the order the events are made; another end time shifts the
//! whole history, so to repeat a run exactly pass the same end (`deploy/run.sh --demo`
//! keeps the first run's).

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Utc, Weekday};
use serde::Serialize;

use crate::profile::{Behaviour, Profile};
use crate::rng::Rng;

/// The kinds of event the demo sends (CONTRACT.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A deploy attempt.
    Deploy,
    /// A rollback of a deployed sha.
    Rollback,
    /// An incident started, naming the deploy that caused it.
    IncidentOpened,
    /// An incident ended.
    IncidentClosed,
}

/// One event in its wire form: what `POST /events` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Stable idempotency key: `demo-<seed>-<service>-<n>`.
    pub id: String,
    /// What happened.
    pub kind: Kind,
    /// The service.
    pub service: String,
    /// `prod` or `staging`.
    pub environment: &'static str,
    /// The sha deployed, rolled back or blamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_sha: Option<String>,
    /// A deploy attempt's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    /// When a deployed change was committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_at: Option<DateTime<Utc>>,
    /// Pairs an incident's close with its open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_id: Option<String>,
    /// When it happened; never after the history's end.
    pub occurred_at: DateTime<Utc>,
}

/// What one service's history holds, for the printed summary and for checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSummary {
    /// The service.
    pub service: String,
    /// Its profile's label.
    pub label: &'static str,
    /// Deploy attempts to production, failed ones included.
    pub prod_attempts: usize,
    /// Attempts that failed outright (`succeeded: false`).
    pub failed_attempts: usize,
    /// Rollbacks.
    pub rollbacks: usize,
    /// Incidents opened; `open_incidents` of them are not closed by the end.
    pub incidents: usize,
    /// Incidents still open at the end.
    pub open_incidents: usize,
    /// Deploys to staging.
    pub staging_deploys: usize,
    /// Fixes deployed to production while an incident of the service ran (of
    /// `prod_attempts`).
    pub fix_deploys: usize,
}

/// A generated history, events in time order.
#[derive(Debug, Clone)]
pub struct History {
    /// First instant of the history (`end - days`).
    pub start: DateTime<Utc>,
    /// The instant the history ends; every event is before it.
    pub end: DateTime<Utc>,
    /// Every event, oldest first.
    pub events: Vec<Event>,
    /// Per service, in the order of the profiles.
    pub services: Vec<ServiceSummary>,
}

impl History {
    /// Production deploy attempts over all services: what `/dora?days=<days>` reports
    /// as `attempts` once the store holds the whole history.
    pub fn prod_attempts(&self) -> usize {
        self.services.iter().map(|s| s.prod_attempts).sum()
    }
}

/// A history of `days` days ending at `end` (truncated to the second) for `profiles`.
pub fn generate(seed: u64, days: u32, end: DateTime<Utc>, profiles: &[Profile]) -> History {
    let end = whole_seconds(end);
    let start = end - TimeDelta::days(i64::from(days));
    let mut events = Vec::new();
    let mut services = Vec::new();
    for (index, profile) in profiles.iter().enumerate() {
        let mut service = ServiceHistory {
            rng: Rng::new(seed, index as u64 + 1),
            profile,
            prefix: format!("demo-{seed}-{}", profile.service),
            start,
            end,
            next_id: 0,
            events: Vec::new(),
            summary: ServiceSummary {
                service: profile.service.clone(),
                label: profile.label,
                ..ServiceSummary::default()
            },
        };
        service.run();
        events.append(&mut service.events);
        services.push(service.summary);
    }
    // Pipelines report in time order; the id breaks ties so the order is stable.
    events.sort_by(|a, b| {
        a.occurred_at
            .cmp(&b.occurred_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    History {
        start,
        end,
        events,
        services,
    }
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn minutes(m: f64) -> TimeDelta {
    TimeDelta::seconds((m * 60.0).round() as i64)
}

/// One service's generator state.
struct ServiceHistory<'a> {
    rng: Rng,
    profile: &'a Profile,
    prefix: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    next_id: u32,
    events: Vec<Event>,
    summary: ServiceSummary,
}

impl ServiceHistory<'_> {
    fn run(&mut self) {
        let mut day = self.start.date_naive();
        while day <= self.end.date_naive() {
            let midnight = day.and_time(NaiveTime::MIN).and_utc();
            let behaviour = self.behaviour_at(midnight + TimeDelta::hours(12));
            let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
            let mean = behaviour.deploys_per_day * if weekend { 0.2 } else { 1.0 };
            let count = self.rng.poisson(mean);
            // Working hours, UTC; sorted so ids follow time within a service.
            let mut times: Vec<DateTime<Utc>> = (0..count)
                .map(|_| midnight + minutes(self.rng.between(7.5 * 60.0, 19.0 * 60.0)))
                .collect();
            times.sort();
            for at in times {
                if at >= self.start && at < self.end {
                    self.deploy(at);
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
    }

    fn behaviour_at(&self, at: DateTime<Utc>) -> Behaviour {
        let days_before_end = (self.end - at).num_seconds() as f64 / 86_400.0;
        self.profile.at(days_before_end).clone()
    }

    /// One change's way to production, and what went wrong after.
    fn deploy(&mut self, at: DateTime<Utc>) {
        let b = self.behaviour_at(at);
        let sha = self.rng.sha();
        let lead = minutes(
            self.rng
                .log_normal(b.lead_hours * 60.0, b.lead_sigma)
                .max(10.0),
        );
        let commit_at = at - lead;
        if self.rng.chance(b.staging) {
            let staged = at - minutes(self.rng.between(20.0, 90.0));
            if staged >= self.start && staged > commit_at {
                self.push_deploy("staging", &sha, commit_at, staged, true);
            }
        }
        let mut at = at;
        if self.rng.chance(b.failed_attempt) {
            self.push_deploy("prod", &sha, commit_at, at, false);
            at += minutes(self.rng.between(15.0, 60.0));
            if at >= self.end {
                return;
            }
        }
        self.push_deploy("prod", &sha, commit_at, at, true);
        if self.rng.chance(b.rollback) {
            let rolled_back = at + minutes(self.rng.between(5.0, 45.0));
            if rolled_back < self.end {
                let event = self.event(Kind::Rollback, "prod", rolled_back);
                self.events.push(Event {
                    git_sha: Some(sha),
                    ..event
                });
                self.summary.rollbacks += 1;
            }
        } else if self.rng.chance(b.incident) {
            let opened = at + minutes(self.rng.between(10.0, 240.0));
            let restore_minutes = self.rng.log_normal(b.restore_minutes, 0.6).max(3.0);
            self.incident(&sha, opened, opened + minutes(restore_minutes));
            // Only a profile that fixes forward draws for it, so every other profile's
            // history stays what it was before the rework rate.
            if b.fix_forward > 0.0 && self.rng.chance(b.fix_forward) {
                let fixed = opened + minutes(restore_minutes * self.rng.between(0.2, 0.8));
                let committed = fixed - minutes(self.rng.between(10.0, 60.0));
                if fixed < self.end {
                    let fix = self.rng.sha();
                    self.push_deploy("prod", &fix, committed, fixed, true);
                    self.summary.fix_deploys += 1;
                }
            }
        }
    }

    fn incident(&mut self, sha: &str, opened: DateTime<Utc>, closed: DateTime<Utc>) {
        if opened >= self.end {
            return;
        }
        let ref_id = format!("INC-{}-{}", self.prefix, self.next_id);
        let open = self.event(Kind::IncidentOpened, "prod", opened);
        self.events.push(Event {
            git_sha: Some(sha.to_owned()),
            ref_id: Some(ref_id.clone()),
            ..open
        });
        self.summary.incidents += 1;
        if closed < self.end {
            let close = self.event(Kind::IncidentClosed, "prod", closed);
            self.events.push(Event {
                ref_id: Some(ref_id),
                ..close
            });
        } else {
            self.summary.open_incidents += 1;
        }
    }

    fn push_deploy(
        &mut self,
        environment: &'static str,
        sha: &str,
        commit_at: DateTime<Utc>,
        at: DateTime<Utc>,
        succeeded: bool,
    ) {
        let event = self.event(Kind::Deploy, environment, at);
        self.events.push(Event {
            git_sha: Some(sha.to_owned()),
            succeeded: Some(succeeded),
            commit_at: Some(commit_at),
            ..event
        });
        if environment == "prod" {
            self.summary.prod_attempts += 1;
            if !succeeded {
                self.summary.failed_attempts += 1;
            }
        } else {
            self.summary.staging_deploys += 1;
        }
    }

    fn event(&mut self, kind: Kind, environment: &'static str, at: DateTime<Utc>) -> Event {
        self.next_id += 1;
        Event {
            id: format!("{}-{:05}", self.prefix, self.next_id),
            kind,
            service: self.profile.service.clone(),
            environment,
            git_sha: None,
            succeeded: None,
            commit_at: None,
            ref_id: None,
            occurred_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::demo_services;

    fn end() -> DateTime<Utc> {
        "2026-03-16T09:30:00.250Z".parse().unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_other_ids() {
        let a = generate(42, 90, end(), &demo_services(6));
        let b = generate(42, 90, end(), &demo_services(6));
        let c = generate(43, 90, end(), &demo_services(6));
        assert_eq!(a.events, b.events);
        assert!(a
            .events
            .iter()
            .all(|e| !c.events.iter().any(|f| f.id == e.id)));
    }

    #[test]
    fn every_event_is_inside_the_history_and_ids_are_unique() {
        let h = generate(7, 90, end(), &demo_services(6));
        assert_eq!(
            h.end,
            "2026-03-16T09:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let mut ids: Vec<&str> = h.events.iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), h.events.len());
        for e in &h.events {
            assert!(e.occurred_at >= h.start && e.occurred_at < h.end, "{e:?}");
            if let Some(commit) = e.commit_at {
                assert!(commit <= e.occurred_at, "{e:?}");
            }
            assert!(e.id.len() <= 128);
        }
        let staging = h
            .events
            .iter()
            .filter(|e| e.environment == "staging")
            .count();
        assert_eq!(
            staging,
            h.services.iter().map(|s| s.staging_deploys).sum::<usize>()
        );
        assert!(staging > 0);
    }

    #[test]
    fn rollbacks_and_incidents_name_shas_that_were_deployed_before_them() {
        let h = generate(1, 90, end(), &demo_services(6));
        let mut blamed = 0;
        for e in h
            .events
            .iter()
            .filter(|e| matches!(e.kind, Kind::Rollback | Kind::IncidentOpened))
        {
            blamed += 1;
            assert!(h.events.iter().any(|d| d.kind == Kind::Deploy
                && d.environment == "prod"
                && d.service == e.service
                && d.git_sha == e.git_sha
                && d.occurred_at <= e.occurred_at));
        }
        assert!(blamed > 10);
        for close in h.events.iter().filter(|e| e.kind == Kind::IncidentClosed) {
            let open = h
                .events
                .iter()
                .find(|o| o.kind == Kind::IncidentOpened && o.ref_id == close.ref_id)
                .unwrap();
            assert!(open.occurred_at < close.occurred_at);
        }
    }

    /// The regressing service fixes its last week's incidents forward: each fix is a
    /// deploy while one of its incidents runs (rework). No other profile does, and none
    /// draws for it, so their histories are what they were before.
    #[test]
    fn fixes_forward_are_deployed_while_an_incident_runs() {
        let h = generate(42, 30, end(), &demo_services(4));
        let week = h.end - TimeDelta::days(7);
        let during_an_incident = |service: &str| {
            let of = |kind| {
                h.events
                    .iter()
                    .filter(move |e| e.service == service && e.kind == kind)
            };
            let incidents: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = of(Kind::IncidentOpened)
                .map(|o| {
                    let close = of(Kind::IncidentClosed).find(|c| c.ref_id == o.ref_id);
                    (o.occurred_at, close.map(|c| c.occurred_at))
                })
                .collect();
            of(Kind::Deploy)
                .filter(|d| d.environment == "prod" && d.occurred_at >= week)
                .filter(|d| {
                    incidents
                        .iter()
                        .any(|(o, c)| *o <= d.occurred_at && c.is_none_or(|c| c > d.occurred_at))
                })
                .count()
        };
        let search = &h.services[2];
        assert_eq!(search.service, "search");
        assert!(search.fix_deploys >= 2, "{search:?}");
        assert!(during_an_incident("search") >= search.fix_deploys);
        for s in h.services.iter().filter(|s| s.service != "search") {
            assert_eq!(s.fix_deploys, 0, "{s:?}");
        }
    }

    #[test]
    fn the_profiles_show_in_the_counts() {
        let h = generate(42, 90, end(), &demo_services(3));
        let rate = |s: &ServiceSummary| {
            (s.failed_attempts + s.rollbacks + s.incidents) as f64 / s.prod_attempts as f64
        };
        let (elite, struggling) = (&h.services[0], &h.services[1]);
        assert!(elite.prod_attempts > 5 * struggling.prod_attempts);
        assert!(rate(struggling) > 3.0 * rate(elite));
    }
}
