//! API versions: `/metadata/versions`, and the `api-version` every other
//! endpoint requires, checked against the versions that endpoint accepts.

use serde::Serialize;

use crate::http::{Query, Reply};

/// Every version IMDS lists (Microsoft's "Supported API versions"), oldest
/// first, as `/metadata/versions` lists them.
pub const ALL: &[&str] = &[
    "2017-03-01",
    "2017-04-02",
    "2017-08-01",
    "2017-10-01",
    "2017-12-01",
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
    "2020-07-15",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
    "2021-03-01",
    "2021-05-01",
    "2021-08-01",
    "2021-10-01",
    "2021-11-01",
    "2021-11-15",
    "2021-12-13",
    "2023-07-01",
    "2023-11-15",
    "2024-03-15",
    "2024-07-17",
    "2025-04-07",
];

/// Scheduled events keep their own, older, version line.
pub const SCHEDULED_EVENTS: &[&str] = &[
    "2017-03-01",
    "2017-08-01",
    "2017-11-01",
    "2019-01-01",
    "2019-04-01",
    "2019-08-01",
    "2020-07-01",
];

/// The versions an endpoint accepts.
#[derive(Clone, Copy)]
pub enum Accepts {
    /// `instance` and any path IMDS does not serve.
    All,
    /// `identity/…`: managed identity arrived with 2018-02-01.
    Identity,
    ScheduledEvents,
}

impl Accepts {
    fn list(self) -> &'static [&'static str] {
        match self {
            Self::All => ALL,
            Self::Identity => &ALL[5..],
            Self::ScheduledEvents => SCHEDULED_EVENTS,
        }
    }
}

const MISSING_OR_INVALID: &str = "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds";

#[derive(Serialize)]
struct VersionError<'a> {
    error: &'a str,
    #[serde(rename = "newest-versions")]
    newest_versions: Vec<&'a str>,
}

/// The request's `api-version`, if the endpoint accepts it; otherwise the
/// 400 IMDS answers, naming its three newest versions (clients such as
/// MSAL's region discovery read them to pick a version).
pub fn check(query: &Query, accepts: Accepts) -> Result<&'static str, Reply> {
    let list = accepts.list();
    let asked = query.get("api-version").unwrap_or("");
    list.iter().copied().find(|v| *v == asked).ok_or_else(|| {
        let body = VersionError {
            error: MISSING_OR_INVALID,
            newest_versions: list.iter().rev().take(3).copied().collect(),
        };
        Reply::json(400, &body)
    })
}

#[derive(Serialize)]
struct Versions {
    #[serde(rename = "apiVersions")]
    api_versions: &'static [&'static str],
}

/// `/metadata/versions`: unversioned, and the same until the plugin
/// changes, so the host may reuse it for an hour.
pub fn list() -> Reply {
    Reply::json(200, &Versions { api_versions: ALL }).cached_for(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn missing_and_unknown_versions_get_the_newest_three() {
        for query in [None, Some("api-version=2099-01-01"), Some("api-version=")] {
            let reply = check(&Query::parse(query), Accepts::All).err().unwrap();
            assert_eq!(reply.status, 400);
            let body = body(&reply);
            assert!(body["error"]
                .as_str()
                .unwrap()
                .starts_with("Bad request. api-version"));
            assert_eq!(body["newest-versions"][0], "2025-04-07");
            assert_eq!(body["newest-versions"].as_array().unwrap().len(), 3);
        }
    }

    #[test]
    fn each_endpoint_has_its_own_versions() {
        let q = |v: &str| Query::parse(Some(&format!("api-version={v}")));
        assert!(check(&q("2017-04-02"), Accepts::All).is_ok());
        assert!(check(&q("2017-04-02"), Accepts::Identity).is_err());
        assert!(check(&q("2018-02-01"), Accepts::Identity).is_ok());
        assert!(check(&q("2020-07-01"), Accepts::ScheduledEvents).is_ok());
        let reply = check(&q("2021-02-01"), Accepts::ScheduledEvents)
            .err()
            .unwrap();
        assert_eq!(body(&reply)["newest-versions"][0], "2020-07-01");
    }

    #[test]
    fn versions_are_listed_oldest_first() {
        let body = body(&list());
        assert_eq!(body["apiVersions"][0], "2017-03-01");
        assert_eq!(body["apiVersions"].as_array().unwrap().len(), ALL.len());
        assert!(ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
