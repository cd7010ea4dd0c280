//! Fault rules at run time (`ersatz fault …` calls these):
//!
//! - `GET /faults`: the rules in force, as written, with how many requests
//!   each matched and how many it applied to;
//! - `POST /faults` with one rule as JSON (the keys of `[[faults]]`): added
//!   after the others; answers its name;
//! - `DELETE /faults`: every rule; `DELETE /faults/NAME`: that one.

use http::{Method, Response, StatusCode};
use serde_json::json;

use super::{json, json_error};
use crate::config::FaultSpec;
use crate::encoder::Body;
use crate::fault::Faults;

pub fn handle(faults: &Faults, method: &Method, name: &str, body: &[u8]) -> Response<Body> {
    match (method, name) {
        (&Method::GET, "") => json(StatusCode::OK, &json!({ "faults": faults.list() })),
        (&Method::POST, "") => add(faults, body),
        (&Method::DELETE, "") => json(StatusCode::OK, &json!({ "cleared": faults.clear(None) })),
        (&Method::DELETE, name) => match faults.clear(Some(name)) {
            0 => json_error(
                StatusCode::NOT_FOUND,
                &format!("no fault rule named \"{name}\""),
            ),
            cleared => json(StatusCode::OK, &json!({ "cleared": cleared })),
        },
        (_, "") => json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET, POST or DELETE"),
        _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "use DELETE"),
    }
}

fn add(faults: &Faults, body: &[u8]) -> Response<Body> {
    let spec: FaultSpec = match serde_json::from_slice(body) {
        Ok(spec) => spec,
        Err(error) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "not a fault rule: {error} (write it as JSON with the keys of [[faults]])"
                ),
            )
        }
    };
    match faults.add(&spec) {
        Ok(name) => json(StatusCode::CREATED, &json!({ "name": name })),
        Err((field, reason)) => json_error(StatusCode::BAD_REQUEST, &format!("{field}: {reason}")),
    }
}
