//! Performance levels (CONTRACT.md section 5.3): which cluster of the State of DevOps
//! research a metric's value falls in.
//!
//! The thresholds are data: one [`LevelTable`] per published table, so another year's
//! table is one more constant beside [`DORA_2023`].

use serde::Serialize;

/// A performance cluster, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The best cluster.
    Elite,
    /// The second.
    High,
    /// The third.
    Medium,
    /// Everything below medium.
    Low,
}

impl Level {
    /// The lower-case name used in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Elite => "elite",
            Level::High => "high",
            Level::Medium => "medium",
            Level::Low => "low",
        }
    }
}

/// One table of thresholds. Each array holds the bounds of elite, high and medium, in
/// that order; a value that meets none of them is low.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelTable {
    /// The name reported as `"levels"`.
    pub name: &'static str,
    /// Successful deploys per day: at least this much.
    pub deploys_per_day_at_least: [f64; 3],
    /// Median lead time in seconds: less than this.
    pub lead_time_below_seconds: [f64; 3],
    /// Change failure rate as a fraction: at most this.
    pub failure_rate_at_most: [f64; 3],
    /// Median time to restore in seconds: less than this.
    pub restore_below_seconds: [f64; 3],
}

const HOUR: f64 = 3600.0;
const DAY: f64 = 24.0 * HOUR;

/// Source: Google Cloud, "Accelerate State of DevOps Report 2023", the software delivery
/// performance clusters (elite / high / medium / low), as DevLake
/// (https://devlake.apache.org/docs/DORA) and Middleware apply them to the four metrics:
/// on-demand (daily or more) / weekly to daily / monthly to weekly / less than monthly
/// deploys; lead time under a day / under a week / under a month; failure rate 5% / 10% /
/// 15%; restore under an hour / under a day / under a week.
pub const DORA_2023: LevelTable = LevelTable {
    name: "dora-2023",
    deploys_per_day_at_least: [1.0, 1.0 / 7.0, 1.0 / 30.0],
    lead_time_below_seconds: [DAY, 7.0 * DAY, 30.0 * DAY],
    failure_rate_at_most: [0.05, 0.10, 0.15],
    restore_below_seconds: [HOUR, DAY, 7.0 * DAY],
};

/// The table every report uses.
pub const CURRENT: LevelTable = DORA_2023;

const CLUSTERS: [Level; 3] = [Level::Elite, Level::High, Level::Medium];

fn first_met(bounds: [f64; 3], meets: impl Fn(f64) -> bool) -> Level {
    CLUSTERS
        .into_iter()
        .zip(bounds)
        .find(|(_, bound)| meets(*bound))
        .map_or(Level::Low, |(level, _)| level)
}

impl LevelTable {
    /// The level of `deploys` successful deploys over `days` days. It is judged on the
    /// exact ratio, not the rounded `per_day`: one deploy in 30 days is monthly (medium),
    /// although `per_day` reads 0.033, which is less than 1/30.
    pub fn deployment_frequency(&self, deploys: i64, days: u32) -> Level {
        let per_day = deploys as f64 / f64::from(days);
        first_met(self.deploys_per_day_at_least, |b| per_day >= b)
    }

    /// The level of a median lead time.
    pub fn lead_time(&self, median_seconds: Option<f64>) -> Option<Level> {
        median_seconds.map(|s| first_met(self.lead_time_below_seconds, |b| s < b))
    }

    /// The level of `failed` failures in `attempts` attempts, on the exact ratio.
    pub fn change_failure_rate(&self, failed: i64, attempts: i64) -> Option<Level> {
        (attempts > 0).then(|| {
            let rate = failed as f64 / attempts as f64;
            first_met(self.failure_rate_at_most, |b| rate <= b)
        })
    }

    /// The level of a median time to restore.
    pub fn time_to_restore(&self, median_seconds: Option<f64>) -> Option<Level> {
        median_seconds.map(|s| first_met(self.restore_below_seconds, |b| s < b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_frequency_boundaries() {
        let t = DORA_2023;
        assert_eq!(t.deployment_frequency(7, 7), Level::Elite);
        assert_eq!(t.deployment_frequency(6, 7), Level::High);
        assert_eq!(t.deployment_frequency(1, 7), Level::High);
        assert_eq!(t.deployment_frequency(4, 30), Level::Medium);
        assert_eq!(t.deployment_frequency(1, 30), Level::Medium);
        assert_eq!(t.deployment_frequency(2, 60), Level::Medium);
        assert_eq!(t.deployment_frequency(1, 31), Level::Low);
        assert_eq!(t.deployment_frequency(0, 7), Level::Low);
    }

    /// The bounds in seconds as CONTRACT.md section 5.3 states them, written out here
    /// rather than through the table's own `HOUR` and `DAY`: a wrong constant there
    /// would otherwise move both sides of each assertion (cargo mutants found that).
    #[test]
    fn lead_time_and_restore_boundaries_are_strict() {
        let t = DORA_2023;
        let (hour, day, week, month) = (3_600.0, 86_400.0, 604_800.0, 2_592_000.0);
        assert_eq!(t.lead_time(None), None);
        for (below, level_below, at) in [
            (day, Level::Elite, Level::High),
            (week, Level::High, Level::Medium),
            (month, Level::Medium, Level::Low),
        ] {
            assert_eq!(t.lead_time(Some(below - 1.0)), Some(level_below), "{below}");
            assert_eq!(t.lead_time(Some(below)), Some(at), "{below}");
        }
        assert_eq!(t.time_to_restore(None), None);
        for (below, level_below, at) in [
            (hour, Level::Elite, Level::High),
            (day, Level::High, Level::Medium),
            (week, Level::Medium, Level::Low),
        ] {
            assert_eq!(
                t.time_to_restore(Some(below - 1.0)),
                Some(level_below),
                "{below}"
            );
            assert_eq!(t.time_to_restore(Some(below)), Some(at), "{below}");
        }
    }

    /// The names the JSON and the dashboard's badges carry.
    #[test]
    fn level_names() {
        let names = [Level::Elite, Level::High, Level::Medium, Level::Low].map(Level::as_str);
        assert_eq!(names, ["elite", "high", "medium", "low"]);
        assert_eq!(
            serde_json::to_value(Level::Medium).unwrap(),
            serde_json::json!("medium")
        );
    }

    #[test]
    fn failure_rate_boundaries_are_inclusive() {
        let t = DORA_2023;
        assert_eq!(t.change_failure_rate(0, 0), None);
        assert_eq!(t.change_failure_rate(0, 5), Some(Level::Elite));
        assert_eq!(t.change_failure_rate(1, 20), Some(Level::Elite));
        assert_eq!(t.change_failure_rate(2, 20), Some(Level::High));
        assert_eq!(t.change_failure_rate(3, 20), Some(Level::Medium));
        assert_eq!(t.change_failure_rate(4, 20), Some(Level::Low));
        assert_eq!(t.change_failure_rate(1, 19), Some(Level::High));
    }
}
