//! Which service and environment a tool's payload is about (CONTRACT.md section 9):
//! the URL's `?service=` and `?environment=` win; else the tool's own name, through
//! `DORA_WEBHOOK_SERVICES` / `DORA_WEBHOOK_ENVIRONMENTS`; what remains is made to fit
//! the event's charset.

use std::fmt;

use dora_event::subject_token;

use crate::error::{Error, Result};

/// `from=to` pairs, comma-separated: a tool's name and dora's name for it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NameMap(Vec<(String, String)>);

impl fmt::Debug for NameMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(a, b)| (a, b)))
            .finish()
    }
}

impl NameMap {
    /// Parses `from=to,from2=to2` (spaces around each part ignored). `to` must already
    /// be a valid service or environment name: a mapping that had to be mangled again
    /// would be a typo nobody sees. An empty value maps nothing.
    pub fn parse(value: &str) -> std::result::Result<NameMap, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((from, to)) = pair.rsplit_once('=') else {
                return Err(format!("`{pair}` is not a from=to pair"));
            };
            let (from, to) = (from.trim(), to.trim());
            if from.is_empty() {
                return Err(format!("`{pair}` has nothing before `=`"));
            }
            subject_token("to", to).map_err(|_| {
                format!("`{to}` (for `{from}`) must be 1-64 characters of A-Z a-z 0-9 _ -")
            })?;
            if pairs.iter().any(|(f, _)| f == from) {
                return Err(format!("`{from}` is mapped twice"));
            }
            pairs.push((from.to_owned(), to.to_owned()));
        }
        Ok(NameMap(pairs))
    }

    /// Dora's name for the tool's `name`, if the map has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(from, _)| from == name)
            .map(|(_, to)| to.as_str())
    }
}

/// A tool's name made to fit the event's charset: each character outside
/// `A-Z a-z 0-9 _ -` becomes `-`, and the result is cut at 64 characters.
pub fn fit(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

/// The names of one delivery: the URL's overrides and the maps.
#[derive(Debug, Clone)]
pub struct Names<'a> {
    /// `?service=`, checked.
    pub service: Option<String>,
    /// `?environment=`, checked.
    pub environment: Option<String>,
    /// `DORA_WEBHOOK_SERVICES`.
    pub services: &'a NameMap,
    /// `DORA_WEBHOOK_ENVIRONMENTS`.
    pub environments: &'a NameMap,
}

impl Names<'_> {
    /// The service of an event whose tool calls it `name`, and whose map key is `key`
    /// (GitHub's `full_name` or GitLab's `path_with_namespace`; else the name itself).
    pub fn service(&self, key: &str, name: &str) -> String {
        if let Some(service) = &self.service {
            return service.clone();
        }
        match self.services.get(key) {
            Some(mapped) => mapped.to_owned(),
            None => fit(name),
        }
    }

    /// Whether the URL names the service, so a payload without one still counts.
    pub fn has_service(&self) -> bool {
        self.service.is_some()
    }

    /// The environment of an event the tool places in `name`; `None` (the event's
    /// default, `prod`) when neither the URL nor the tool says.
    pub fn environment(&self, name: Option<&str>) -> Option<String> {
        if let Some(environment) = &self.environment {
            return Some(environment.clone());
        }
        let name = name?;
        Some(match self.environments.get(name) {
            Some(mapped) => mapped.to_owned(),
            None => fit(name),
        })
    }

    /// The names of a request whose query is `query`: only `service` and
    /// `environment`, each at most once and already a valid name, so a typo in the
    /// URL a tool was given is refused rather than silently measured as another scope.
    pub fn from_query<'m>(
        query: Option<&str>,
        services: &'m NameMap,
        environments: &'m NameMap,
    ) -> Result<Names<'m>> {
        let mut names = Names {
            service: None,
            environment: None,
            services,
            environments,
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match key.as_ref() {
                "service" => &mut names.service,
                "environment" => &mut names.environment,
                other => {
                    let shown = fit(other);
                    return Err(Error::BadRequest(format!(
                        "unknown query parameter `{shown}`; a webhook URL takes `service` and `environment`"
                    )));
                }
            };
            if slot.is_some() {
                return Err(Error::BadRequest(format!(
                    "query parameter `{key}` is given more than once"
                )));
            }
            let checked = subject_token(&key, &value)
                .map_err(|e| Error::BadRequest(format!("query parameter {}", e.message)))?;
            *slot = Some(checked);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_charset_and_are_cut_at_64() {
        assert_eq!(fit("Hello-World"), "Hello-World");
        assert_eq!(fit("API Service"), "API-Service");
        assert_eq!(fit("payments.v2/eu"), "payments-v2-eu");
        assert_eq!(fit("café_1"), "caf-_1", "one character, one dash");
        assert_eq!(fit(&"x".repeat(70)).len(), 64);
        assert_eq!(fit(&"é".repeat(70)), "-".repeat(64));
    }

    #[test]
    fn maps_parse_and_refuse_what_they_cannot_mean() {
        let m = NameMap::parse(" octo/Hello-World = hello , API Service=api").unwrap();
        assert_eq!(m.get("octo/Hello-World"), Some("hello"));
        assert_eq!(m.get("API Service"), Some("api"));
        assert_eq!(m.get("api"), None);
        assert_eq!(
            format!("{m:?}"),
            r#"{"octo/Hello-World": "hello", "API Service": "api"}"#,
            "the startup log shows the maps"
        );
        assert_eq!(NameMap::parse("").unwrap(), NameMap::default());
        for (bad, why) in [
            ("a", "not a from=to pair"),
            ("=b", "nothing before"),
            ("a=b c", "must be 1-64"),
            ("a=", "must be 1-64"),
            ("a=b,a=c", "mapped twice"),
        ] {
            let err = NameMap::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_url_wins_then_the_map_then_the_tools_name() {
        let services = NameMap::parse("octo/Hello-World=hello").unwrap();
        let environments = NameMap::parse("production=prod").unwrap();
        let plain = Names::from_query(None, &services, &environments).unwrap();
        assert_eq!(plain.service("octo/Hello-World", "Hello-World"), "hello");
        assert_eq!(
            plain.service("other/Hello-World", "Hello-World"),
            "Hello-World"
        );
        assert_eq!(plain.service("API Service", "API Service"), "API-Service");
        assert_eq!(
            plain.environment(Some("production")).as_deref(),
            Some("prod")
        );
        assert_eq!(
            plain.environment(Some("staging 2")).as_deref(),
            Some("staging-2")
        );
        assert_eq!(plain.environment(None), None);
        assert!(!plain.has_service());

        let url = Names::from_query(
            Some("service=checkout&environment=eu"),
            &services,
            &environments,
        )
        .unwrap();
        assert_eq!(url.service("octo/Hello-World", "Hello-World"), "checkout");
        assert_eq!(url.environment(Some("production")).as_deref(), Some("eu"));
        assert_eq!(url.environment(None).as_deref(), Some("eu"));
        assert!(url.has_service());
    }

    #[test]
    fn a_bad_query_is_named() {
        let m = NameMap::default();
        for (query, why) in [
            ("servce=x", "unknown query parameter `servce`"),
            ("service=a&service=b", "`service` is given more than once"),
            ("service=a%20b", "`service` must be 1-64"),
            ("environment=", "`environment` must be 1-64"),
        ] {
            let err = Names::from_query(Some(query), &m, &m)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{query}: {err}");
        }
    }
}
