//! Lifecycle events at run time (`ersatz event …` calls these):
//!
//! - `POST /events/spot` `{"action":"stop","in":"2m"}`: a spot interruption
//!   notice now, for the action `in` later (default terminate, 2m);
//! - `POST /events/rebalance` `{"in":"0s"}`: a rebalance recommendation;
//! - `POST /events/maintenance` `{"code","in","duration","description","state"}`;
//! - `POST /events/autoscaling` `{"state":"Terminated","in":"0s"}`;
//! - `GET /events`: the timeline; `DELETE /events`: clear every event.

use std::time::{Duration, SystemTime};

use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{json, json_error};
use crate::config::{HumanDuration, SpotAction, LIFECYCLE_STATES, MAINTENANCE_CODES};
use crate::encoder::Body;
use crate::provider::events::{
    default_description, Autoscaling, Events, Maintenance, Spot, Timeline,
};
use crate::timefmt::{self, iso_seconds};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpotBody {
    #[serde(default)]
    action: Option<SpotAction>,
    #[serde(default, rename = "in")]
    within: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebalanceBody {
    #[serde(default, rename = "in")]
    within: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    code: String,
    #[serde(default, rename = "in")]
    within: Option<HumanDuration>,
    #[serde(default)]
    duration: Option<HumanDuration>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoscalingBody {
    state: String,
    #[serde(default, rename = "in")]
    within: Option<HumanDuration>,
}

/// A refusal: the status and the reason.
type Refusal = (StatusCode, String);

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refusal> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

fn later(within: Option<HumanDuration>, default: Duration) -> SystemTime {
    timefmt::add(SystemTime::now(), within.map_or(default, |d| d.0))
}

pub fn handle(events: &Events, method: &Method, kind: &str, body: &[u8]) -> Response<Body> {
    let outcome = match (method, kind) {
        (&Method::GET, "") => Ok(()),
        (&Method::DELETE, "") => {
            events.edit(|t| *t = Timeline::default());
            Ok(())
        }
        (&Method::POST, "spot") if !events.spot_enabled => Err((
            StatusCode::CONFLICT,
            "not a spot instance: set instance.life_cycle = \"spot\" or add an [events.spot] table, and restart".to_owned(),
        )),
        (&Method::POST, "spot") => parse::<SpotBody>(body).map(|b| {
            let spot = Spot {
                visible_at: SystemTime::now(),
                action: b.action.unwrap_or(SpotAction::Terminate),
                action_at: later(b.within, Duration::from_secs(120)),
            };
            events.edit(|t| t.spot = Some(spot))
        }),
        (&Method::POST, "rebalance") => parse::<RebalanceBody>(body).map(|b| {
            let at = later(b.within, Duration::ZERO);
            events.edit(|t| t.rebalance = Some(at))
        }),
        (&Method::POST, "maintenance") => parse::<MaintenanceBody>(body).and_then(|b| {
            if !MAINTENANCE_CODES.contains(&b.code.as_str()) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("code must be one of {}", MAINTENANCE_CODES.join(", ")),
                ));
            }
            let not_before = later(b.within, Duration::from_secs(3600));
            let event = Maintenance {
                visible_at: SystemTime::now(),
                description: b
                    .description
                    .unwrap_or_else(|| default_description(&b.code)),
                code: b.code,
                not_before,
                not_after: timefmt::add(
                    not_before,
                    b.duration.map_or(Duration::from_secs(7200), |d| d.0),
                ),
                state: b.state.unwrap_or_else(|| "active".into()),
            };
            events.edit(|t| t.maintenance.push(event));
            Ok(())
        }),
        (&Method::POST, "autoscaling") if !events.autoscaling_enabled => Err((
            StatusCode::CONFLICT,
            "not in an Auto Scaling group: add an [events.autoscaling] table (state, target, after) to the configuration and restart".to_owned(),
        )),
        (&Method::POST, "autoscaling") => parse::<AutoscalingBody>(body).and_then(|b| {
            if !LIFECYCLE_STATES.contains(&b.state.as_str()) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("state must be one of {}", LIFECYCLE_STATES.join(", ")),
                ));
            }
            let at = later(b.within, Duration::ZERO);
            events.edit(|t| {
                let current = t.autoscaling.as_ref().map_or("InService".to_owned(), |a| {
                    if SystemTime::now() >= a.at {
                        a.target.clone()
                    } else {
                        a.state.clone()
                    }
                });
                t.autoscaling = Some(Autoscaling {
                    state: current,
                    target: b.state,
                    at,
                })
            });
            Ok(())
        }),
        (_, "" | "spot" | "rebalance" | "maintenance" | "autoscaling") => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "GET or DELETE /events, POST /events/KIND".to_owned(),
        )),
        _ => Err((
            StatusCode::NOT_FOUND,
            "no such event kind: spot, rebalance, maintenance, autoscaling".to_owned(),
        )),
    };
    match outcome {
        Ok(()) => json(StatusCode::OK, &describe(&events.timeline.read())),
        Err((status, reason)) => json_error(status, &reason),
    }
}

fn describe(t: &Timeline) -> serde_json::Value {
    json!({
        "spot": t.spot.as_ref().map(|s| json!({
            "notice": iso_seconds(s.visible_at), "action": s.action, "time": iso_seconds(s.action_at),
        })),
        "rebalance": t.rebalance.map(iso_seconds),
        "maintenance": t.maintenance.iter().map(|m| json!({
            "code": m.code, "visible": iso_seconds(m.visible_at), "not_before": iso_seconds(m.not_before),
            "not_after": iso_seconds(m.not_after), "state": m.state,
        })).collect::<Vec<_>>(),
        "autoscaling": t.autoscaling.as_ref().map(|a| json!({
            "state": a.state, "target": a.target, "at": iso_seconds(a.at),
        })),
    })
}
