//! Many windows and every service in one pass (`compute_grouped`, `GET /dora/trend`)
//! against the single-window `compute` on random logs: the numbers must be equal.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use dora_api::dora::{compute, compute_grouped, MetricsQuery};
use dora_system_tests::{get_json, Rng, TestEnv};

use crate::metrics::random_log;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A shuffled random log fed in batches of random size, as the metrics tests do.
async fn seeded_random_log(env: &TestEnv, rng: &mut Rng, n: usize) {
    let mut log = random_log(rng, n);
    for i in (1..log.len()).rev() {
        log.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for chunk in log.chunks(300) {
        env.seed(chunk).await;
    }
}

fn random_query(rng: &mut Rng) -> MetricsQuery {
    MetricsQuery {
        days: 1 + rng.below(10) as u32,
        offset: rng.below(10) as u32,
        as_of: t("2026-03-05T00:00:00Z") + TimeDelta::minutes(rng.below(20 * 24 * 60) as i64),
        service: [None, None, Some("api"), Some("web")][rng.below(4) as usize].map(str::to_owned),
        environment: ["prod", "prod", "staging"][rng.below(3) as usize].to_owned(),
    }
}

#[tokio::test]
async fn grouped_windows_and_services_equal_one_compute_each() {
    let env = TestEnv::new().await;
    let mut rng = Rng::new(0x7E4D_0012);
    seeded_random_log(&env, &mut rng, 1500).await;
    let pool = dora_api::connect(&env.database_url, 2).unwrap();

    let mut nonempty_services = 0;
    for _ in 0..12 {
        let q = random_query(&mut rng);
        let windows = 1 + rng.below(14) as u32;

        // One report per window, oldest first, each what /dora answers for it.
        let trend = compute_grouped(&pool, &q, windows, false).await.unwrap();
        assert_eq!(trend.len(), windows as usize, "{q:?}");
        for (k, got) in trend.iter().enumerate() {
            let single = MetricsQuery {
                offset: q.offset + (windows - 1 - k as u32) * q.days,
                ..q.clone()
            };
            assert_eq!(got, &compute(&pool, &single).await.unwrap(), "{single:?}");
        }
        assert_eq!(trend.last().unwrap().window, q.window());

        // By service: exactly the services with something in each window.
        let grouped = compute_grouped(&pool, &q, windows, true).await.unwrap();
        for k in 0..windows {
            let single = MetricsQuery {
                offset: q.offset + (windows - 1 - k) * q.days,
                ..q.clone()
            };
            let in_window: Vec<_> = grouped
                .iter()
                .filter(|r| r.window == single.window())
                .collect();
            let mut expected = BTreeSet::new();
            for service in ["api", "web", "db"] {
                if q.service.as_deref().is_some_and(|s| s != service) {
                    continue;
                }
                let one = compute(
                    &pool,
                    &MetricsQuery {
                        service: Some(service.to_owned()),
                        ..single.clone()
                    },
                )
                .await
                .unwrap();
                if one.change_failure_rate.attempts > 0
                    || one.time_to_restore.samples > 0
                    || one.time_to_restore.open_incidents > 0
                {
                    expected.insert(service);
                    let got = in_window
                        .iter()
                        .find(|r| r.service.as_deref() == Some(service))
                        .unwrap_or_else(|| panic!("{service} missing in {single:?}"));
                    assert_eq!(**got, one, "{single:?}");
                }
            }
            let listed: BTreeSet<&str> = in_window
                .iter()
                .map(|r| r.service.as_deref().unwrap())
                .collect();
            assert_eq!(listed, expected, "{single:?}");
            nonempty_services += listed.len();
        }
    }
    assert!(
        nonempty_services > 30,
        "the random queries hit data: {nonempty_services}"
    );
    pool.close().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_trend_endpoint_equals_twelve_dora_calls() {
    let env = TestEnv::new().await;
    let mut rng = Rng::new(0xD0A4_7E4D);
    seeded_random_log(&env, &mut rng, 1200).await;
    let api = env.spawn_api().await;
    for query in [
        "as_of=2026-03-18T00:00:00Z",
        "as_of=2026-03-17T13:30:00Z&days=3&service=api",
        "as_of=2026-03-20T00:00:00Z&days=5&offset=2&environment=staging",
    ] {
        let (status, trend) = get_json(&api.url, &format!("/dora/trend?{query}")).await;
        assert_eq!(status, 200, "{trend}");
        let windows = trend["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 12, "{query}");
        let days = trend["days"].as_u64().unwrap();
        let offset: u64 = query
            .split('&')
            .find_map(|p| p.strip_prefix("offset="))
            .map_or(0, |o| o.parse().unwrap());
        let mut with_data = 0;
        for (k, window) in windows.iter().enumerate() {
            let single_offset = offset + (11 - k as u64) * days;
            let single_query = query
                .split('&')
                .filter(|p| !p.starts_with("offset="))
                .chain([format!("offset={single_offset}").as_str()])
                .collect::<Vec<_>>()
                .join("&");
            let (status, single) = get_json(&api.url, &format!("/dora?{single_query}")).await;
            assert_eq!(status, 200, "{single}");
            assert_eq!(window, &single, "window {k} of {query}");
            if single["change_failure_rate"]["attempts"].as_i64().unwrap() > 0 {
                with_data += 1;
            }
        }
        assert!(with_data >= 3, "{query}: the windows hold data");
        assert_eq!(trend["environment"], windows[0]["environment"]);
        assert_eq!(trend["service"], windows[0]["service"]);
    }
    api.stop().await.unwrap();
    env.cleanup().await;
}
