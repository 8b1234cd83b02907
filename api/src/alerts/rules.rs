//! The regression rules of CONTRACT.md section 6, on numbers already computed: no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::settings::AlertSettings;

/// A metric the alerts watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Failed attempts over all attempts.
    ChangeFailureRate,
    /// Median commit-to-production time.
    LeadTime,
}

impl Metric {
    /// Both, in the order messages list them.
    pub const ALL: [Metric; 2] = [Metric::ChangeFailureRate, Metric::LeadTime];

    /// The name stored and served (`change_failure_rate`, `lead_time`).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ChangeFailureRate => "change_failure_rate",
            Metric::LeadTime => "lead_time",
        }
    }

    /// The name people read.
    pub fn title(self) -> &'static str {
        match self {
            Metric::ChangeFailureRate => "Change failure rate",
            Metric::LeadTime => "Lead time for changes",
        }
    }

    /// Parses [`Metric::as_str`].
    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What one window says about one scope: the inputs of both rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowNumbers {
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    /// Deploy attempts in the window.
    pub attempts: i64,
    /// Of which failed (known by the check's `now`).
    pub failed: i64,
    /// Median lead time of the successful deploys that carry `commit_at`.
    pub lead_median_seconds: Option<f64>,
    /// Lead-time samples.
    pub lead_samples: i64,
}

impl WindowNumbers {
    /// `failed / attempts`, unrounded; `None` without attempts.
    pub fn rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.failed as f64 / self.attempts as f64)
    }
}

/// One scope (an environment, and one service or all) over both windows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeNumbers {
    /// The environment.
    pub environment: String,
    /// The service, `None` for all services together.
    pub service: Option<String>,
    /// The window before the current one.
    pub prior: WindowNumbers,
    /// The window ending at the check's `now`.
    pub current: WindowNumbers,
}

/// What a rule makes of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worse than the tolerance allows.
    Regressed,
    /// Both windows have enough data and the change is within tolerance.
    WithinTolerance,
    /// A window lacks the data to judge: not a regression, and not a recovery either
    /// (a firing scope stays firing until a check can see it is back).
    NotEnoughData,
}

/// Applies `metric`'s rule to a scope.
pub fn judge(metric: Metric, scope: &ScopeNumbers, settings: &AlertSettings) -> Verdict {
    let (prior, current) = (&scope.prior, &scope.current);
    let min = i64::from(settings.min_attempts);
    match metric {
        Metric::ChangeFailureRate => {
            let (Some(before), Some(now)) = (prior.rate(), current.rate()) else {
                return Verdict::NotEnoughData;
            };
            if current.attempts < min {
                return Verdict::NotEnoughData;
            }
            // Percentage points; a prior rate of 0 is a baseline like any other. The
            // margin keeps float noise (2/10 - 1/10) from turning "exactly" into "more".
            if (now - before) * 100.0 - settings.cfr_points > 1e-9 {
                Verdict::Regressed
            } else {
                Verdict::WithinTolerance
            }
        }
        Metric::LeadTime => {
            let (Some(before), Some(now)) =
                (prior.lead_median_seconds, current.lead_median_seconds)
            else {
                return Verdict::NotEnoughData;
            };
            if current.lead_samples < min || prior.lead_samples == 0 {
                return Verdict::NotEnoughData;
            }
            let rise_ok = now > (1.0 + settings.lead_time_rise) * before;
            let min_ok = now - before >= settings.lead_time_min.as_secs_f64();
            if rise_ok && min_ok {
                Verdict::Regressed
            } else {
                Verdict::WithinTolerance
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn window(attempts: i64, failed: i64, lead_hours: Option<f64>, samples: i64) -> WindowNumbers {
        WindowNumbers {
            start: "2026-03-02T00:00:00Z".parse().unwrap(),
            end: "2026-03-09T00:00:00Z".parse().unwrap(),
            attempts,
            failed,
            lead_median_seconds: lead_hours.map(|h| h * 3600.0),
            lead_samples: samples,
        }
    }

    fn scope(prior: WindowNumbers, current: WindowNumbers) -> ScopeNumbers {
        ScopeNumbers {
            environment: "prod".into(),
            service: Some("api".into()),
            prior,
            current,
        }
    }

    fn cfr(prior: (i64, i64), current: (i64, i64)) -> Verdict {
        let s = scope(
            window(prior.0, prior.1, None, 0),
            window(current.0, current.1, None, 0),
        );
        judge(Metric::ChangeFailureRate, &s, &AlertSettings::default())
    }

    fn lead(prior: (Option<f64>, i64), current: (Option<f64>, i64)) -> Verdict {
        let s = scope(
            window(5, 0, prior.0, prior.1),
            window(5, 0, current.0, current.1),
        );
        judge(Metric::LeadTime, &s, &AlertSettings::default())
    }

    /// The names stored in `dora_alerts` and served by `GET /alerts`, and read back.
    #[test]
    fn metric_names_round_trip() {
        assert_eq!(Metric::ChangeFailureRate.as_str(), "change_failure_rate");
        assert_eq!(Metric::LeadTime.as_str(), "lead_time");
        assert_eq!(Metric::ChangeFailureRate.title(), "Change failure rate");
        assert_eq!(Metric::LeadTime.title(), "Lead time for changes");
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metric::parse("deployment_frequency"), None);
    }

    /// "At least `DORA_ALERT_MIN_ATTEMPTS`" (3 by default): exactly that many is judged.
    #[test]
    fn the_minimum_is_inclusive() {
        assert_eq!(cfr((4, 0), (3, 2)), Verdict::Regressed, "3 attempts now");
        assert_eq!(
            cfr((4, 0), (2, 2)),
            Verdict::NotEnoughData,
            "2 attempts now"
        );
        let h = |x: f64| Some(x);
        assert_eq!(
            lead((h(1.0), 1), (h(9.0), 3)),
            Verdict::Regressed,
            "3 samples now"
        );
        assert_eq!(lead((h(1.0), 1), (h(9.0), 2)), Verdict::NotEnoughData);
        // One sample before is a baseline; none is not.
        assert_eq!(lead((h(1.0), 0), (h(9.0), 3)), Verdict::NotEnoughData);
    }

    /// Lead time fires when the median rose by more than the rise (25%) and by at least
    /// the minimum (1 h): each condition alone is not enough, and each bound is exact.
    #[test]
    fn lead_time_needs_both_the_rise_and_the_minimum() {
        let h = |x: f64| Some(x);
        // 20% rise, 2 h longer: the minimum alone does not fire.
        assert_eq!(lead((h(10.0), 4), (h(12.0), 4)), Verdict::WithinTolerance);
        // Exactly 25% (8 h to 10 h) is not more than 25%; a second over is.
        assert_eq!(lead((h(8.0), 4), (h(10.0), 4)), Verdict::WithinTolerance);
        assert_eq!(
            lead((h(8.0), 4), (h(10.0 + 1.0 / 3600.0), 4)),
            Verdict::Regressed
        );
        // Exactly 1 h longer (2 h to 3 h, +50%) is at least the minimum.
        assert_eq!(lead((h(2.0), 4), (h(3.0), 4)), Verdict::Regressed);
        assert_eq!(
            lead((h(2.0), 4), (h(3.0 - 1.0 / 3600.0), 4)),
            Verdict::WithinTolerance
        );
    }

    #[test]
    fn change_failure_rate() {
        assert_eq!(cfr((4, 0), (7, 3)), Verdict::Regressed, "0% to 42.9%");
        assert_eq!(
            cfr((10, 1), (10, 2)),
            Verdict::WithinTolerance,
            "exactly 10 points is not more"
        );
        assert_eq!(cfr((10, 1), (10, 3)), Verdict::Regressed);
        assert_eq!(
            cfr((0, 0), (7, 7)),
            Verdict::NotEnoughData,
            "empty prior window"
        );
        assert_eq!(
            cfr((4, 0), (2, 2)),
            Verdict::NotEnoughData,
            "too few attempts now"
        );
        assert_eq!(cfr((4, 2), (7, 0)), Verdict::WithinTolerance, "better");
    }

    #[test]
    fn lead_time() {
        let h = |x: f64| Some(x);
        assert_eq!(lead((h(1.75), 4), (h(3.5), 4)), Verdict::Regressed);
        assert_eq!(
            lead((h(1.75), 4), (h(2.1), 4)),
            Verdict::WithinTolerance,
            "20% rise"
        );
        // 50% rise, but only 30 minutes longer than the 1h minimum allows.
        assert_eq!(lead((h(1.0), 4), (h(1.5), 4)), Verdict::WithinTolerance);
        assert_eq!(
            lead((h(0.0), 4), (h(1.0), 4)),
            Verdict::Regressed,
            "0 is a baseline"
        );
        assert_eq!(lead((None, 0), (h(9.0), 4)), Verdict::NotEnoughData);
        assert_eq!(lead((h(1.0), 4), (h(9.0), 2)), Verdict::NotEnoughData);
        let settings = AlertSettings {
            lead_time_min: Duration::from_secs(60),
            ..AlertSettings::default()
        };
        let s = scope(window(5, 0, h(1.0), 4), window(5, 0, h(1.5), 4));
        assert_eq!(judge(Metric::LeadTime, &s, &settings), Verdict::Regressed);
    }
}
