//! `scheduledevents`: the host's EC2 lifecycle events, as Azure's
//! scheduled events. The operator triggers them at run time (`ersatz event
//! spot|maintenance …`), so no Azure-specific state is needed beyond what
//! the plugin's store keeps: approvals (POST `StartRequests`) and the
//! `DocumentIncarnation`, which rises whenever the document changes.
//!
//! EC2 → Azure: a spot interruption notice is `Preempt`; maintenance codes
//! map by their effect on the VM (see `MAINTENANCE`). Rebalance
//! recommendations have no Azure counterpart and are not shown.

use serde::{Deserialize, Serialize};

use crate::grants::{Found, Grants};
use crate::http::{error, Reply, JSON};
use crate::ids::{guid, hash};
use crate::timefmt::{parse_aws, parse_iso, rfc1123};

const STATE_KEY: &str = "scheduledevents/state";
const APPROVED_KEY: &str = "scheduledevents/approved";

/// The Azure event an EC2 event becomes.
#[derive(Clone, Copy)]
struct Kind {
    event_type: &'static str,
    description: &'static str,
    /// Expected interruption; -1 is Azure's "unknown".
    duration: i64,
}

const PREEMPT: Kind = Kind {
    event_type: "Preempt",
    description: "The Virtual Machine will be evicted.",
    duration: -1,
};

/// EC2 maintenance codes by what they do to the machine: a reboot is a
/// reboot, system maintenance a short pause (live migration), a stop moves
/// the VM to another host (its local disks lost: a redeploy), and a
/// retirement ends it.
const MAINTENANCE: &[(&str, Kind)] = &[
    (
        "instance-reboot",
        Kind {
            event_type: "Reboot",
            description: "Host server is undergoing maintenance.",
            duration: -1,
        },
    ),
    (
        "system-reboot",
        Kind {
            event_type: "Reboot",
            description: "Host Server infrastructure is undergoing maintenance.",
            duration: -1,
        },
    ),
    (
        "system-maintenance",
        Kind {
            event_type: "Freeze",
            description:
                "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
            duration: 5,
        },
    ),
    (
        "instance-stop",
        Kind {
            event_type: "Redeploy",
            description: "Host server is undergoing an emergency repair.",
            duration: -1,
        },
    ),
    (
        "instance-retirement",
        Kind {
            event_type: "Terminate",
            description: "Virtual machine is going to be deleted.",
            duration: -1,
        },
    ),
];

/// An event as the EC2 tree has it, before status and format.
struct Pending {
    id: String,
    kind: Kind,
    not_before: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    event_id: String,
    event_status: &'static str,
    event_type: &'static str,
    resource_type: &'static str,
    resources: Vec<String>,
    not_before: String,
    description: &'static str,
    event_source: &'static str,
    duration_in_seconds: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    document_incarnation: u64,
    events: &'a [Event],
}

#[derive(Serialize, Deserialize, Default)]
struct State {
    hash: String,
    incarnation: u64,
}

#[derive(Deserialize)]
struct StartBody {
    #[serde(rename = "StartRequests")]
    start_requests: Vec<StartRequest>,
}

#[derive(Deserialize)]
struct StartRequest {
    #[serde(rename = "EventId")]
    event_id: String,
}

/// GET: the current document. Never reused: it follows the clock, the
/// EC2 events and the approvals.
pub fn get(grants: &dyn Grants, vm_name: &str) -> Result<Reply, String> {
    let pending = pending(grants);
    let approved = load_approved(grants);
    let now = grants.now();
    let events: Vec<Event> = pending
        .iter()
        .map(|p| event(p, approved.contains(&p.id), now, vm_name))
        .collect();
    let incarnation = incarnation(grants, &events)?;
    forget_gone(grants, &approved, &pending)?;
    let document = Document {
        document_incarnation: incarnation,
        events: &events,
    };
    Ok(Reply::json(200, &document))
}

/// POST `{"StartRequests":[{"EventId":"…"}]}`: approves those events,
/// which start at once.
pub fn post(grants: &dyn Grants, body: &[u8]) -> Result<Reply, String> {
    let Ok(body) = serde_json::from_slice::<StartBody>(body) else {
        return Ok(error(400, "Bad request. Invalid request body"));
    };
    let current: Vec<String> = pending(grants).into_iter().map(|p| p.id).collect();
    let mut approved = load_approved(grants);
    for request in &body.start_requests {
        let id = request.event_id.to_ascii_uppercase();
        if !current.contains(&id) {
            return Ok(error(
                400,
                &format!("Bad request. Unknown EventId: {}", request.event_id),
            ));
        }
        if !approved.contains(&id) {
            approved.push(id);
        }
    }
    save_approved(grants, &approved)?;
    Ok(Reply {
        status: 200,
        content_type: JSON,
        body: Vec::new(),
        headers: Vec::new(),
        max_age: 0,
    })
}

fn event(pending: &Pending, approved: bool, now: i64, vm_name: &str) -> Event {
    let started = approved || now >= pending.not_before;
    Event {
        event_id: pending.id.clone(),
        event_status: if started { "Started" } else { "Scheduled" },
        event_type: pending.kind.event_type,
        resource_type: "VirtualMachine",
        resources: vec![vm_name.to_owned()],
        // Azure blanks NotBefore once an event has started.
        not_before: if started {
            String::new()
        } else {
            rfc1123(pending.not_before)
        },
        description: pending.kind.description,
        event_source: "Platform",
        duration_in_seconds: pending.kind.duration,
    }
}

/// The spot notice and the active maintenance events, in one host call.
fn pending(grants: &dyn Grants) -> Vec<Pending> {
    let paths = [
        "meta-data/spot/instance-action".to_owned(),
        "meta-data/events/maintenance/scheduled".to_owned(),
    ];
    let mut values = grants.lookup_many(&paths).into_iter().map(|v| match v {
        Some(Found::Leaf(text)) => Some(text),
        _ => None,
    });
    let spot = values.next().flatten().and_then(|text| spot(&text));
    let maintenance = values
        .next()
        .flatten()
        .map(|t| maintenance(&t))
        .unwrap_or_default();
    spot.into_iter().chain(maintenance).collect()
}

/// `{"action":"terminate","time":"2019-01-21T09:00:43Z"}`.
fn spot(text: &str) -> Option<Pending> {
    #[derive(Deserialize)]
    struct Notice {
        time: String,
    }
    let notice: Notice = serde_json::from_str(text).ok()?;
    Some(Pending {
        id: event_id("spot", &notice.time),
        kind: PREEMPT,
        not_before: parse_iso(&notice.time)?,
    })
}

/// The EC2 list: `[{"Code","EventId","NotBefore","State",…}]`.
fn maintenance(text: &str) -> Vec<Pending> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Ec2Event {
        code: String,
        event_id: String,
        not_before: String,
    }
    let events: Vec<Ec2Event> = serde_json::from_str(text).unwrap_or_default();
    events
        .into_iter()
        .filter_map(|e| {
            let kind = MAINTENANCE.iter().find(|(code, _)| *code == e.code)?.1;
            Some(Pending {
                id: event_id("maintenance", &e.event_id),
                kind,
                not_before: parse_aws(&e.not_before)?,
            })
        })
        .collect()
}

/// Azure's event ids are upper-case GUIDs; these follow from the EC2
/// event, so the same event keeps its id.
fn event_id(source: &str, key: &str) -> String {
    guid(source, key).to_ascii_uppercase()
}

/// The document's incarnation: the stored one while the events are the
/// same, one more when they changed.
fn incarnation(grants: &dyn Grants, events: &[Event]) -> Result<u64, String> {
    let text = serde_json::to_string(events).map_err(|e| e.to_string())?;
    let digest = format!("{:016x}", hash("scheduledevents", &text));
    let state: State = grants
        .store_get(STATE_KEY)
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if state.hash == digest {
        return Ok(state.incarnation);
    }
    let next = State {
        hash: digest,
        incarnation: state.incarnation + 1,
    };
    let text = serde_json::to_string(&next).map_err(|e| e.to_string())?;
    grants.store_put(STATE_KEY, Some(&text))?;
    Ok(next.incarnation)
}

fn load_approved(grants: &dyn Grants) -> Vec<String> {
    grants
        .store_get(APPROVED_KEY)
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save_approved(grants: &dyn Grants, approved: &[String]) -> Result<(), String> {
    let text = serde_json::to_string(approved).map_err(|e| e.to_string())?;
    grants.store_put(APPROVED_KEY, Some(&text))
}

/// Approvals of events that have ended are dropped, so the store does not
/// grow with the machine's history.
fn forget_gone(
    grants: &dyn Grants,
    approved: &[String],
    pending: &[Pending],
) -> Result<(), String> {
    let kept: Vec<String> = approved
        .iter()
        .filter(|id| pending.iter().any(|p| &p.id == *id))
        .cloned()
        .collect();
    if kept.len() == approved.len() {
        return Ok(());
    }
    save_approved(grants, &kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::fake::Host;
    use serde_json::Value;

    fn document(host: &Host) -> Value {
        let reply = get(host, "web-1").unwrap();
        assert_eq!((reply.status, reply.max_age), (200, 0));
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn maintenance_list(code: &str, not_before: &str) -> String {
        format!(
            r#"[ {{ "NotBefore" : "{not_before}", "Code" : "{code}", "Description" : "scheduled reboot",
                "EventId" : "instance-event-0123456789abcdef0", "NotAfter" : "21 Jan 2019 11:00:43 GMT",
                "NotBeforeDeadline" : "28 Jan 2019 11:00:43 GMT", "State" : "active" }} ]"#
        )
    }

    #[test]
    fn no_events_is_an_empty_document_whose_incarnation_holds() {
        let host = Host::new("{}");
        let first = document(&host);
        assert_eq!(first["Events"], Value::Array(vec![]));
        assert_eq!(first["DocumentIncarnation"], 1);
        assert_eq!(document(&host)["DocumentIncarnation"], 1);
    }

    #[test]
    fn a_spot_notice_is_a_preemption_that_starts_at_its_time() {
        let host = Host::new("{}");
        host.now_ms.set(1_548_061_243_000 - 120_000);
        assert_eq!(document(&host)["DocumentIncarnation"], 1);
        host.set(
            "meta-data/spot/instance-action",
            r#"{"action":"terminate","time":"2019-01-21T09:00:43Z"}"#,
        );
        let doc = document(&host);
        assert_eq!(doc["DocumentIncarnation"], 2);
        let event = &doc["Events"][0];
        assert_eq!(event["EventType"], "Preempt");
        assert_eq!(event["EventStatus"], "Scheduled");
        assert_eq!(event["NotBefore"], "Mon, 21 Jan 2019 09:00:43 GMT");
        assert_eq!(event["Resources"][0], "web-1");
        assert_eq!(event["ResourceType"], "VirtualMachine");
        assert_eq!(event["DurationInSeconds"], -1);
        host.advance(120);
        let doc = document(&host);
        assert_eq!(doc["DocumentIncarnation"], 3);
        assert_eq!(doc["Events"][0]["EventStatus"], "Started");
        assert_eq!(doc["Events"][0]["NotBefore"], "");
    }

    #[test]
    fn maintenance_codes_map_to_azure_types() {
        for (code, azure) in [
            ("instance-reboot", "Reboot"),
            ("system-reboot", "Reboot"),
            ("system-maintenance", "Freeze"),
            ("instance-stop", "Redeploy"),
            ("instance-retirement", "Terminate"),
        ] {
            let host = Host::new("{}");
            host.set(
                "meta-data/events/maintenance/scheduled",
                &maintenance_list(code, "21 Jan 2019 09:00:43 GMT"),
            );
            host.now_ms.set(1_500_000_000_000);
            assert_eq!(document(&host)["Events"][0]["EventType"], azure, "{code}");
        }
    }

    #[test]
    fn approving_starts_the_event_and_unknown_ids_are_refused() {
        let host = Host::new("{}");
        host.now_ms.set(1_500_000_000_000);
        host.set(
            "meta-data/events/maintenance/scheduled",
            &maintenance_list("system-reboot", "21 Jan 2019 09:00:43 GMT"),
        );
        let doc = document(&host);
        let id = doc["Events"][0]["EventId"].as_str().unwrap().to_owned();
        assert_eq!(id, id.to_ascii_uppercase());
        let body = format!(
            r#"{{"StartRequests":[{{"EventId":"{}"}}]}}"#,
            id.to_lowercase()
        );
        let reply = post(&host, body.as_bytes()).unwrap();
        assert_eq!(reply.status, 200);
        let after = document(&host);
        assert_eq!(after["Events"][0]["EventStatus"], "Started");
        assert_eq!(after["DocumentIncarnation"], 2);
        let unknown = br#"{"StartRequests":[{"EventId":"00000000-0000-4000-8000-000000000000"}]}"#;
        assert_eq!(post(&host, unknown).unwrap().status, 400);
        for malformed in [&b"nope"[..], b"{}", br#"{"StartRequests":[{"Id":"x"}]}"#] {
            assert_eq!(post(&host, malformed).unwrap().status, 400);
        }
        // The event ends: its approval is forgotten.
        host.set("meta-data/events/maintenance/scheduled", "[]");
        assert_eq!(document(&host)["DocumentIncarnation"], 3);
        assert_eq!(host.store_get(APPROVED_KEY).as_deref(), Some("[]"));
    }
}
