//! The Azure Instance Metadata Service (IMDS), mounted at `/metadata` of a
//! flavour listener: enough of it that Microsoft's clients (azure-identity's
//! `ManagedIdentityCredential`, MSAL, cloud-init, scheduled-event agents)
//! cannot tell it from a VM's.
//!
//! Served below the mount (the host's gates have already refused requests
//! without `Metadata: true`, with `X-Forwarded-For`, or with a repeated
//! query parameter):
//!
//! - `versions`: the API versions (no `api-version` needed);
//! - `instance[/compute|/network/…]?api-version=V[&format=json|text]`;
//! - `identity/oauth2/token?api-version=V&resource=R[&client_id=|object_id=|msi_res_id=]`;
//! - `identity/info?api-version=V`: the tenant;
//! - `scheduledevents?api-version=V`: GET the events, POST
//!   `{"StartRequests":[{"EventId":"…"}]}` to approve them.
//!
//! Configuration, the `[[plugins]]` entry's `config` (every key optional;
//! `config = {}` is a working VM):
//!
//! ```toml
//! [plugins.config]
//! tenant_id = "GUID"                 # the directory tokens come from
//! tags = { env = "test" }            # compute/tags and compute/tagsList
//! user_data = "#cloud-config\n…"     # compute/userData, served base64-encoded
//! network = { private_ip = "10.0.0.4", public_ip = "", mac = "00:0d:3a:…", subnet = "10.0.0.0/24" }
//! token_lifetime = 86400             # seconds, 60 to 86400
//! compute = { name = "web-1", location = "westeurope" }  # any string field of instance/compute
//! system_identity = { enabled = true, client_id = "GUID", object_id = "GUID", resource_id = "/subscriptions/…" }
//! user_identities = [{ client_id = "GUID", object_id = "GUID", name = "app", resource_id = "/subscriptions/…" }]
//! ```
//!
//! Defaults come from the host's EC2 tree where that keeps the machine
//! consistent (private and public address, MAC, subnet, hostname as the VM
//! name, zone, spot life cycle, SSH keys); identifiers not configured are
//! derived from the EC2 instance id, so they are stable.

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit/v0.3.0" });

// Every call is a fresh instance: allocation only moves a pointer on.
use bump_alloc as _;

mod config;
mod events;
mod grants;
mod http;
mod identity;
mod ids;
mod instance;
mod route;
mod timefmt;
mod versions;
mod vm;

use ersatz::plugin::host;
use ersatz::plugin::types::{Answer, Leaf, Request, Response, Shape, Value};
use exports::ersatz::plugin::provider::Guest;

/// The host's imports, as the logic's `Grants`.
struct Wit;

impl grants::Grants for Wit {
    fn config(&self) -> String {
        host::config()
    }
    fn now_ms(&self) -> u64 {
        host::now()
    }
    fn lookup_many(&self, paths: &[String]) -> Vec<Option<grants::Found>> {
        let found = |value| match value {
            Value::Leaf(text) => grants::Found::Leaf(text),
            Value::Listing(entries) => grants::Found::Listing(entries),
        };
        host::lookup_many(paths)
            .into_iter()
            .map(|v| v.map(found))
            .collect()
    }
    fn sign_jwt(&self, claims: &str) -> Result<String, String> {
        host::sign_jwt(claims, None)
    }
    fn store_get(&self, key: &str) -> Option<String> {
        host::store_get(key)
    }
    fn store_put(&self, key: &str, value: Option<&str>) -> Result<(), String> {
        host::store_put(key, value)
    }
}

struct Azure;

impl Guest for Azure {
    fn init(config: String) -> Result<Shape, String> {
        config::Config::load(&config)?;
        Ok(Shape::Directory)
    }

    fn resolve(request: Request) -> Result<Answer, String> {
        let internal = http::Request {
            method: &request.method,
            path: &request.path,
            query: http::Query::parse(request.query.as_deref()),
            body: &request.body,
            client: &request.client,
        };
        let reply = route::handle(&internal, &Wit)?;
        Ok(Answer {
            response: Response::Leaf(Leaf {
                body: reply.body,
                content_type: reply.content_type.to_owned(),
            }),
            status: Some(reply.status),
            headers: reply.headers,
            max_age: reply.max_age,
        })
    }
}

export!(Azure);
