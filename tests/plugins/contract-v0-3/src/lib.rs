//! Contract 0.3.0's capabilities, one path each, for the host's tests:
//! - `init`: config `refuse` is refused with that message; `shape` is
//!   "leaf" or "directory" (the default);
//! - `status/N`: answers status N; `headers/KIND`: a chosen set of headers
//!   (`good`, or ones the host must refuse);
//! - `now`, `lookup/PATH`, `lookup-many?A,B`: the host's clock and tree;
//! - `sign?AUDIENCE`, `sign-not-object`, `sign-other-key`: `sign-jwt`;
//! - `store/KEY`: GET reads, POST puts the body (empty removes);
//! - `request`: the request as the plugin saw it, as JSON.

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../../wit/v0.3.0" });

use ersatz::plugin::host;
use ersatz::plugin::types::{Answer, Leaf, Request, Response, Shape, Value};
use exports::ersatz::plugin::provider::Guest;
use serde_json::{json, Value as Json};

struct Contract;

fn text(body: impl Into<String>) -> Response {
    Response::Leaf(Leaf {
        body: body.into().into_bytes(),
        content_type: "text/plain".into(),
    })
}

fn answer(response: Response, status: Option<u16>, headers: &[(&str, &str)]) -> Answer {
    Answer {
        response,
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        max_age: 0,
    }
}

fn as_json(value: Option<Value>) -> Json {
    match value {
        Some(Value::Leaf(text)) => json!({ "leaf": text }),
        Some(Value::Listing(entries)) => json!({ "listing": entries }),
        None => Json::Null,
    }
}

fn shape() -> Shape {
    let config: Json = serde_json::from_str(&host::config()).unwrap_or_default();
    match config["shape"].as_str() {
        Some("leaf") => Shape::Leaf,
        _ => Shape::Directory,
    }
}

fn store(request: &Request, key: &str) -> Answer {
    if request.method == "POST" {
        let value = String::from_utf8_lossy(&request.body).into_owned();
        let value = (!value.is_empty()).then_some(value);
        return match host::store_put(key, value.as_deref()) {
            Ok(()) => answer(text("stored"), None, &[]),
            Err(reason) => answer(text(reason), Some(507), &[]),
        };
    }
    match host::store_get(key) {
        Some(value) => answer(text(value), None, &[]),
        None => answer(Response::NotFound, None, &[]),
    }
}

fn sign(claims: &str, key_id: Option<&str>) -> Answer {
    match host::sign_jwt(claims, key_id) {
        Ok(token) => answer(text(token), None, &[]),
        Err(reason) => answer(text(reason), Some(400), &[]),
    }
}

impl Guest for Contract {
    fn init(config: String) -> Result<Shape, String> {
        let config: Json = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if let Some(reason) = config["refuse"].as_str() {
            return Err(reason.to_owned());
        }
        Ok(shape())
    }

    fn resolve(request: Request) -> Result<Answer, String> {
        let path = request.path.as_str();
        let query = request.query.clone().unwrap_or_default();
        if let Some(code) = path.strip_prefix("status/") {
            let code = code.parse().map_err(|_| "not a status")?;
            return Ok(answer(text(format!("status {code}")), Some(code), &[]));
        }
        if let Some(path) = path.strip_prefix("lookup/") {
            let found = as_json(host::lookup(path));
            return Ok(answer(text(found.to_string()), None, &[]));
        }
        if let Some(key) = path.strip_prefix("store/") {
            return Ok(store(&request, key));
        }
        Ok(match path {
            "" if matches!(shape(), Shape::Leaf) => answer(text("a leaf"), None, &[]),
            "" => answer(
                Response::Directory(vec!["now".into(), "status/".into()]),
                None,
                &[],
            ),
            "headers/good" => answer(
                text("{}"),
                None,
                &[
                    ("content-type", "application/json"),
                    ("x-plugin", "yes"),
                    ("x-plugin", "twice"),
                ],
            ),
            "headers/framing" => answer(text("x"), None, &[("content-length", "1")]),
            "headers/smuggle" => answer(text("x"), None, &[("x-a", "1\r\nx-b: 2")]),
            "now" => answer(text(host::now().to_string()), None, &[]),
            "lookup-many" => {
                let paths: Vec<String> = query.split(',').map(str::to_owned).collect();
                let found: Vec<Json> = host::lookup_many(&paths).into_iter().map(as_json).collect();
                answer(text(Json::from(found).to_string()), None, &[])
            }
            "sign" => sign(
                &json!({ "aud": query, "iat": host::now() / 1000 }).to_string(),
                None,
            ),
            "sign-not-object" => sign("[1]", None),
            "sign-other-key" => sign("{}", Some("not-the-hosts")),
            "request" => {
                let seen = json!({
                    "method": request.method, "path": request.path,
                    "trailing_slash": request.trailing_slash, "query": request.query,
                    "body": String::from_utf8_lossy(&request.body),
                });
                answer(text(seen.to_string()), None, &[])
            }
            _ => answer(Response::NotFound, None, &[]),
        })
    }
}

export!(Contract);
