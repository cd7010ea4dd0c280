//! `/latest/meta-data/network/interfaces`: one `macs/<mac>/` directory per
//! configured interface. The first is the instance's primary interface and
//! defaults to the core's facts; see `interface.rs` for every default.

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit/v0.2.0" });

// Every call is a fresh instance: allocation only moves a pointer on.
use bump_alloc as _;

mod derive;
mod interface;

use ersatz::plugin::types::{Answer, Leaf, Request, Response};
use exports::ersatz::plugin::provider::Guest;
use interface::Interface;

fn directory<S: Into<String>>(entries: impl IntoIterator<Item = S>) -> Response {
    Response::Directory(entries.into_iter().map(Into::into).collect())
}

fn leaf(text: String) -> Response {
    Response::Leaf(Leaf {
        body: text.into_bytes(),
        content_type: "text/plain".into(),
    })
}

fn answer(interfaces: &[Interface], path: &str) -> Response {
    let parts: Vec<&str> = path.split('/').collect();
    let (mac, rest) = match parts.as_slice() {
        [""] => return directory(["macs/"]),
        ["macs"] => return directory(interfaces.iter().map(|i| format!("{}/", i.mac))),
        ["macs", mac, rest @ ..] => (*mac, rest),
        _ => return Response::NotFound,
    };
    let Some(interface) = interfaces.iter().find(|i| i.mac == mac) else {
        return Response::NotFound;
    };
    let associations = &interface.ipv4_associations;
    let found = |value: Option<&String>| value.map_or(Response::NotFound, |v| leaf(v.clone()));
    match rest {
        [] => {
            let mut names: Vec<&str> = interface.leaves.iter().map(|(name, _)| *name).collect();
            if !associations.is_empty() {
                names.push("ipv4-associations/");
            }
            names.sort();
            directory(names)
        }
        ["ipv4-associations"] if !associations.is_empty() => {
            directory(associations.iter().map(|(public, _)| public.as_str()))
        }
        ["ipv4-associations", ip] => found(
            associations
                .iter()
                .find(|(p, _)| p == ip)
                .map(|(_, local)| local),
        ),
        [name] => found(
            interface
                .leaves
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v),
        ),
        _ => Response::NotFound,
    }
}

/// The answers depend only on the config and the instance's built-in values, which change only with a
/// configuration reload (and a reload drops reused answers): the host may
/// reuse each for an hour.
const MAX_AGE: u32 = 3600;

struct NetworkInterfaces;

impl Guest for NetworkInterfaces {
    fn resolve(request: Request) -> Result<Answer, String> {
        Ok(Answer {
            response: answer(&interface::load()?, &request.path),
            max_age: MAX_AGE,
        })
    }
}

export!(NetworkInterfaces);
