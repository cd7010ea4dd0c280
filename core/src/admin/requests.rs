//! The request journal and the IMDSv1 audit (`ersatz requests`, `ersatz audit`):
//!
//! - `GET /requests?path=PREFIX&client=CIDR&status=N&since=T&after=ID&limit=N`:
//!   the journal's entries that match, oldest first; `since` is an RFC 3339
//!   time or a duration ago (`30s`); with `follow`, JSON lines, then each new
//!   entry as it comes, until the client goes;
//! - `DELETE /requests`: forgets them;
//! - `GET /audit`: per client, its requests without a token, their paths
//!   and, for loopback clients, the processes; `DELETE /audit` forgets it.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{json, json_error};
use crate::config::{Cidr, HumanDuration};
use crate::encoder::Body;
use crate::journal::{Entry, Filter, Journal};

pub fn requests(journal: &Arc<Journal>, method: &Method, query: Option<&str>) -> Response<Body> {
    match *method {
        Method::GET => match parse(query) {
            Ok((filter, false)) => {
                let entries = journal.read(&filter);
                let entries: Vec<&Entry> = entries.iter().map(Arc::as_ref).collect();
                json(StatusCode::OK, &json!({ "requests": entries }))
            }
            Ok((filter, true)) => follow(journal, filter),
            Err(reason) => json_error(StatusCode::BAD_REQUEST, &reason),
        },
        Method::DELETE => json(StatusCode::OK, &json!({ "cleared": journal.clear() })),
        _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE"),
    }
}

pub fn audit(journal: &Journal, method: &Method) -> Response<Body> {
    match *method {
        Method::GET => json(StatusCode::OK, &journal.audit()),
        Method::DELETE => {
            journal.clear_audit();
            json(StatusCode::OK, &json!({ "cleared": true }))
        }
        _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE"),
    }
}

/// The filter a query asks for, and whether to follow.
fn parse(query: Option<&str>) -> Result<(Filter, bool), String> {
    let mut filter = Filter::default();
    let mut follow = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}: \"{value}\" is not {what}"))
        };
        match key.as_ref() {
            "path" => filter.path_prefix = Some(value.into_owned()),
            "client" => filter.client = Some(Cidr::parse(&value).map_err(|r| format!("client: {r}"))?),
            "status" => {
                let status = number("a status")?;
                filter.status = Some(u16::try_from(status).map_err(|_| format!("status: {status} is not a status"))?);
            }
            "since" => filter.since = Some(since(&value)?),
            "after" => filter.after = Some(number("a request id")?),
            "limit" => filter.limit = Some(usize::try_from(number("a count")?).unwrap_or(usize::MAX)),
            "follow" => follow = value.is_empty() || value == "true" || value == "1",
            other => {
                return Err(format!(
                    "unknown parameter \"{other}\" (there is: path, client, status, since, after, limit, follow)"
                ))
            }
        }
    }
    Ok((filter, follow))
}

/// `since`: an RFC 3339 time, or a duration before now.
fn since(text: &str) -> Result<SystemTime, String> {
    if let Some(at) = crate::timefmt::parse_rfc3339(text) {
        return Ok(at);
    }
    let ago = HumanDuration::parse(text).map_err(|_| {
        format!("since: \"{text}\" is neither an RFC 3339 time nor a duration like 30s")
    })?;
    Ok(SystemTime::now()
        .checked_sub(ago.0)
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

/// JSON lines: the entries kept that match, then each new one, until the
/// client goes or the server stops.
fn follow(journal: &Arc<Journal>, filter: Filter) -> Response<Body> {
    let mut follower = journal.follow();
    let kept = journal.read(&filter);
    let (lines, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut last = 0;
        for entry in kept {
            last = entry.id;
            if lines.send(line(&entry)).await.is_err() {
                return;
            }
        }
        loop {
            let entry = tokio::select! {
                entry = follower.new.recv() => entry,
                _ = follower.stopping.wait_for(|stop| *stop) => return,
                () = lines.closed() => return,
            };
            match entry {
                // Already sent from what was kept.
                Ok(entry) if entry.id <= last => {}
                Ok(entry) if filter.admits(&entry) => {
                    if lines.send(line(&entry)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    let notice = format!("{}\n", json!({ "missed": missed }));
                    if lines.send(Bytes::from(notice)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let mut response = Response::new(Body::Lines(receiver));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

fn line(entry: &Arc<Entry>) -> Bytes {
    let mut text = serde_json::to_string(entry.as_ref()).unwrap_or_default();
    text.push('\n');
    Bytes::from(text)
}
