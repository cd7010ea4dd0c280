//! Which endpoint a path is, and the checks IMDS makes before serving it:
//! first `api-version` (even for paths it does not serve: `/metadata`
//! itself answers the api-version error), then the path, then the method.

use crate::config::Config;
use crate::grants::Grants;
use crate::http::{method_not_allowed, not_found, Reply, Request};
use crate::ids::guid;
use crate::versions::{self, Accepts};
use crate::vm::Vm;
use crate::{events, identity, instance};

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Versions,
    Instance,
    Token,
    Info,
    ScheduledEvents,
    Unknown,
}

fn endpoint(path: &str) -> Endpoint {
    match path {
        "versions" => Endpoint::Versions,
        "instance" => Endpoint::Instance,
        _ if path.starts_with("instance/") => Endpoint::Instance,
        "identity/oauth2/token" => Endpoint::Token,
        "identity/info" => Endpoint::Info,
        "scheduledevents" => Endpoint::ScheduledEvents,
        _ => Endpoint::Unknown,
    }
}

impl Endpoint {
    fn accepts(self) -> Accepts {
        match self {
            Self::Token | Self::Info => Accepts::Identity,
            Self::ScheduledEvents => Accepts::ScheduledEvents,
            _ => Accepts::All,
        }
    }

    fn allows(self, method: &str) -> bool {
        matches!(method, "GET" | "HEAD") || (self == Self::ScheduledEvents && method == "POST")
    }
}

/// Answers one request. An error is the host's 500 (a failed signature or
/// store write), never a client's mistake.
pub fn handle(request: &Request, grants: &dyn Grants) -> Result<Reply, String> {
    let config = Config::load(&grants.config())?;
    let endpoint = endpoint(request.path);
    let reply = serve(endpoint, request, &config, grants)?;
    // IMDS tags its answers with a request id; the identity service's
    // answers carry none.
    if matches!(endpoint, Endpoint::Token | Endpoint::Info) {
        return Ok(reply);
    }
    let seed = format!("{}/{}/{}", grants.now_ms(), request.client, request.path);
    Ok(reply.with_header("x-ms-request-id", guid("request", &seed)))
}

fn serve(
    endpoint: Endpoint,
    request: &Request,
    config: &Config,
    grants: &dyn Grants,
) -> Result<Reply, String> {
    if endpoint == Endpoint::Versions {
        return Ok(match endpoint.allows(request.method) {
            true => versions::list(),
            false => method_not_allowed(),
        });
    }
    let version = match versions::check(&request.query, endpoint.accepts()) {
        Ok(version) => version,
        Err(reply) => return Ok(reply),
    };
    if endpoint == Endpoint::Unknown {
        return Ok(not_found());
    }
    if !endpoint.allows(request.method) {
        return Ok(method_not_allowed());
    }
    match endpoint {
        Endpoint::Instance => {
            let vm = Vm::gather(config, grants);
            Ok(instance::serve(
                request.path,
                &request.query,
                config,
                &vm,
                version,
            ))
        }
        Endpoint::Token => {
            identity::token(&request.query, config, &Vm::gather(config, grants), grants)
        }
        Endpoint::Info => Ok(identity::info(config)),
        Endpoint::ScheduledEvents if request.method == "POST" => events::post(grants, request.body),
        Endpoint::ScheduledEvents => events::get(grants, Vm::gather(config, grants).name()),
        Endpoint::Versions | Endpoint::Unknown => Ok(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::fake::Host;
    use crate::http::Query;

    fn ask(method: &str, path: &str, query: &str) -> Reply {
        let host = Host::new("{}");
        let request = Request {
            method,
            path,
            query: Query::parse(Some(query)),
            body: b"",
            client: "127.0.0.1:5000",
        };
        handle(&request, &host).unwrap()
    }

    #[test]
    fn statuses_by_path_method_and_version() {
        let v = "api-version=2021-02-01";
        let cases = [
            ("GET", "versions", "", 200),
            ("POST", "versions", "", 405),
            ("GET", "", "", 400),
            ("GET", "", v, 404),
            ("GET", "nothing/here", v, 404),
            ("GET", "instance", "", 400),
            ("GET", "instance", v, 200),
            ("HEAD", "instance/compute", v, 200),
            ("POST", "instance", v, 405),
            ("DELETE", "instance", v, 405),
            (
                "GET",
                "identity/oauth2/token",
                "api-version=2018-02-01&resource=r",
                200,
            ),
            (
                "GET",
                "identity/oauth2/token",
                "api-version=2017-12-01&resource=r",
                400,
            ),
            (
                "POST",
                "identity/oauth2/token",
                "api-version=2018-02-01&resource=r",
                405,
            ),
            ("GET", "identity/info", "api-version=2018-02-01", 200),
            ("GET", "identity", "api-version=2018-02-01", 404),
            ("GET", "scheduledevents", "api-version=2020-07-01", 200),
            ("GET", "scheduledevents", v, 400),
            ("POST", "scheduledevents", "api-version=2020-07-01", 400),
            ("PUT", "scheduledevents", "api-version=2020-07-01", 405),
        ];
        for (method, path, query, status) in cases {
            let reply = ask(method, path, query);
            assert_eq!(reply.status, status, "{method} /{path}?{query}");
            assert!(reply.content_type.starts_with("application/json"));
        }
    }

    #[test]
    fn request_ids_on_imds_answers_only() {
        let has_id = |r: &Reply| r.headers.iter().any(|(n, _)| n == "x-ms-request-id");
        assert!(has_id(&ask("GET", "instance", "api-version=2021-02-01")));
        assert!(!has_id(&ask(
            "GET",
            "identity/info",
            "api-version=2018-02-01"
        )));
    }
}
