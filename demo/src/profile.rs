//! Delivery profiles: how often a service deploys, how long its changes wait, how often
//! a deploy fails and how long an incident lasts. The demo's services each follow one.

/// How one service delivers. Rates are per deploy unless they say otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Mean deploys to production per working day (weekends see a fifth of it).
    pub deploys_per_day: f64,
    /// Median hours from commit to production.
    pub lead_hours: f64,
    /// Spread of the lead time (log-normal sigma).
    pub lead_sigma: f64,
    /// Chance that the first attempt fails (`succeeded: false`) and is retried.
    pub failed_attempt: f64,
    /// Chance that a successful deploy is rolled back.
    pub rollback: f64,
    /// Chance that a successful deploy causes an incident (`incident_opened` naming it).
    pub incident: f64,
    /// Median minutes from an incident's open to its close.
    pub restore_minutes: f64,
    /// Chance that an incident is fixed forward: a fix deployed while it runs (rework,
    /// in DORA 2024's terms), before it closes.
    pub fix_forward: f64,
    /// Chance that a deploy went to staging first.
    pub staging: f64,
}

/// A named service with its behaviour, and optionally a worse one for the last week.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The service name (it becomes a NATS subject token).
    pub service: String,
    /// What kind of team this is, for the printed summary: `elite`, `struggling`, ...
    pub label: &'static str,
    /// How it delivers.
    pub normal: Behaviour,
    /// How it delivers in the last 7 days of the history, if it regressed.
    pub last_week: Option<Behaviour>,
}

impl Profile {
    /// The behaviour in force `days_before_end` days before the end of the history.
    pub fn at(&self, days_before_end: f64) -> &Behaviour {
        match &self.last_week {
            Some(worse) if days_before_end < 7.0 => worse,
            _ => &self.normal,
        }
    }
}

/// Several deploys a day, changes out within hours, rare failures, fast restores.
pub fn elite(service: &str) -> Profile {
    Profile {
        service: service.to_owned(),
        label: "elite",
        normal: Behaviour {
            deploys_per_day: 5.0,
            lead_hours: 3.0,
            lead_sigma: 0.6,
            failed_attempt: 0.02,
            rollback: 0.01,
            incident: 0.01,
            restore_minutes: 35.0,
            fix_forward: 0.0,
            staging: 0.3,
        },
        last_week: None,
    }
}

/// Weekly-ish deploys of changes that waited for weeks, a third of them failing, and
/// incidents that last days.
pub fn struggling(service: &str) -> Profile {
    Profile {
        service: service.to_owned(),
        label: "struggling",
        normal: Behaviour {
            deploys_per_day: 0.2,
            lead_hours: 14.0 * 24.0,
            lead_sigma: 0.5,
            failed_attempt: 0.15,
            rollback: 0.12,
            incident: 0.12,
            restore_minutes: 2.0 * 24.0 * 60.0,
            fix_forward: 0.0,
            staging: 0.0,
        },
        last_week: None,
    }
}

/// Healthy for most of the history; in the last week two deploys in three fail, its
/// changes wait ten times longer and its incidents are fixed forward, which the
/// week-over-week comparison and the alerts should show.
pub fn regressing(service: &str) -> Profile {
    let normal = Behaviour {
        deploys_per_day: 3.0,
        lead_hours: 5.0,
        lead_sigma: 0.5,
        failed_attempt: 0.02,
        rollback: 0.01,
        incident: 0.01,
        restore_minutes: 60.0,
        fix_forward: 0.0,
        staging: 0.2,
    };
    Profile {
        service: service.to_owned(),
        label: "regressing",
        // Two deploys in three fail: clear on any week's handful of attempts, so the
        // comparison never depends on the luck of the draw.
        last_week: Some(Behaviour {
            lead_hours: 50.0,
            failed_attempt: 0.4,
            rollback: 0.3,
            incident: 0.5,
            restore_minutes: 6.0 * 60.0,
            // Every incident gets a fix deployed while it runs: rework the dashboard shows.
            fix_forward: 1.0,
            ..normal.clone()
        }),
        normal,
    }
}

/// A middling team: about a deploy a day, lead times of a day or two, one deploy in
/// eight failing. `variant` shifts the numbers so the ordinary services differ.
pub fn ordinary(service: &str, variant: usize) -> Profile {
    let shift = (variant % 4) as f64;
    Profile {
        service: service.to_owned(),
        label: "ordinary",
        normal: Behaviour {
            deploys_per_day: 0.6 + 0.3 * shift,
            lead_hours: 20.0 + 8.0 * shift,
            lead_sigma: 0.7,
            failed_attempt: 0.06,
            rollback: 0.04,
            incident: 0.03 + 0.01 * shift,
            restore_minutes: 150.0 + 60.0 * shift,
            fix_forward: 0.0,
            staging: 0.2,
        },
        last_week: None,
    }
}

/// Names of the ordinary services, in order; past the list they are `service-<n>`.
const ORDINARY_NAMES: [&str; 8] = [
    "accounts",
    "catalog",
    "notifications",
    "payments",
    "web",
    "mobile-api",
    "inventory",
    "reporting",
];

/// The demo's `n` services: `checkout` (elite), `billing` (struggling), `search`
/// (regressing in the last week), then ordinary ones.
pub fn demo_services(n: usize) -> Vec<Profile> {
    let mut profiles = vec![
        elite("checkout"),
        struggling("billing"),
        regressing("search"),
    ];
    profiles.truncate(n);
    for i in 0..n.saturating_sub(3) {
        let name = ORDINARY_NAMES
            .get(i)
            .map_or_else(|| format!("service-{}", i + 1), |s| (*s).to_owned());
        profiles.push(ordinary(&name, i));
    }
    profiles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_profiles_come_first_and_names_are_unique() {
        let six: Vec<String> = demo_services(6).into_iter().map(|p| p.service).collect();
        assert_eq!(
            six,
            [
                "checkout",
                "billing",
                "search",
                "accounts",
                "catalog",
                "notifications"
            ]
        );
        assert_eq!(demo_services(2).len(), 2);
        let many = demo_services(40);
        let mut names: Vec<&str> = many.iter().map(|p| p.service.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 40);
    }

    #[test]
    fn only_the_last_week_of_the_regressing_service_is_worse() {
        let p = regressing("search");
        assert_eq!(p.at(8.0), &p.normal);
        assert!(p.at(6.9).failed_attempt > p.normal.failed_attempt);
        assert_eq!(elite("x").at(1.0), &elite("x").normal);
    }
}
