//! Lifecycle events, on timelines: spot interruption notices, rebalance
//! recommendations, scheduled maintenance and the Auto Scaling target
//! lifecycle state. Each becomes visible at its time (configured as a delay
//! after start-up, or set at run time from the admin API); the state is
//! computed from the clock on every request. Only long-polls need telling
//! when an event's time comes: [`notify_when_due`].

use std::sync::Arc;

use parking_lot::RwLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::OffsetDateTime;

use super::{Provider, Request, Resolved};
use crate::awsjson;
use crate::changes::Changes;
use crate::config::{EventsConfig, SpotAction};
use crate::hex::hex;
use crate::timefmt::{self, iso_seconds};

const SPOT_MOUNT: &str = "meta-data/spot";
const EVENTS_MOUNT: &str = "meta-data/events";
const AUTOSCALING_MOUNT: &str = "meta-data/autoscaling";

#[derive(Clone)]
pub struct Spot {
    pub visible_at: SystemTime,
    pub action: SpotAction,
    pub action_at: SystemTime,
}

#[derive(Clone)]
pub struct Maintenance {
    pub visible_at: SystemTime,
    pub code: String,
    pub description: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub state: String,
}

#[derive(Clone)]
pub struct Autoscaling {
    pub state: String,
    pub target: String,
    pub at: SystemTime,
}

#[derive(Clone, Default)]
pub struct Timeline {
    pub spot: Option<Spot>,
    pub rebalance: Option<SystemTime>,
    pub maintenance: Vec<Maintenance>,
    pub autoscaling: Option<Autoscaling>,
}

impl Timeline {
    /// The times at which what the events serve changes by the clock alone
    /// (those the answers below compare with now).
    fn times(&self) -> impl Iterator<Item = SystemTime> + '_ {
        let spot = self.spot.as_ref().map(|s| s.visible_at);
        let maintenance = self.maintenance.iter().map(|m| m.visible_at);
        let autoscaling = self.autoscaling.as_ref().map(|a| a.at);
        spot.into_iter()
            .chain(self.rebalance)
            .chain(maintenance)
            .chain(autoscaling)
    }

    /// The first such time after `now`.
    fn next_due(&self, now: SystemTime) -> Option<SystemTime> {
        self.times().filter(|at| *at > now).min()
    }

    /// Whether such a time fell after `since`, up to `now`.
    fn came_between(&self, since: SystemTime, now: SystemTime) -> bool {
        self.times().any(|at| since < at && at <= now)
    }
}

/// Tells `changes` (and so the parked long-polls) whenever an event's time
/// has come, until `stop`. An edit of the timeline notifies `changes`
/// itself, which makes this look again for the next time.
pub async fn notify_when_due(
    events: Arc<Events>,
    changes: Arc<Changes>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut edited = changes.subscribe();
    // Times up to this one were told of (or were past at start).
    let mut told_until = SystemTime::now();
    loop {
        let now = SystemTime::now();
        let (came, due) = {
            let timeline = events.timeline.read();
            (
                timeline.came_between(told_until, now),
                timeline.next_due(now),
            )
        };
        // Whatever woke this (the timer, or another change just before a
        // time came), a time that came is told of.
        if came {
            changes.notify();
            // Its own notice is no edit.
            edited.borrow_and_update();
        }
        told_until = told_until.max(now);
        // Looked at again every so often: the wall clock may be set, or
        // the machine sleep.
        let wait = due.map_or(RECHECK, |at| {
            at.duration_since(now).unwrap_or_default().min(RECHECK)
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            edit = edited.changed() => if edit.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

const RECHECK: Duration = Duration::from_secs(30);

/// The instance's events; shared by the three mounts and the admin API,
/// and kept across configuration reloads.
pub struct Events {
    pub timeline: RwLock<Timeline>,
    /// Whether `spot/` and `autoscaling/` exist on this instance.
    pub spot_enabled: bool,
    pub autoscaling_enabled: bool,
}

impl Events {
    pub fn from_config(config: &EventsConfig, spot_instance: bool, started: SystemTime) -> Self {
        let at = |after: Duration| timefmt::add(started, after);
        let timeline = Timeline {
            spot: config.spot.as_ref().map(|s| Spot {
                visible_at: at(s.after.0),
                action: s.action,
                action_at: timefmt::add(at(s.after.0), s.warning.0),
            }),
            rebalance: config.rebalance.as_ref().map(|r| at(r.after.0)),
            maintenance: config
                .maintenance
                .iter()
                .map(|m| Maintenance {
                    visible_at: at(m.after.0),
                    code: m.code.clone(),
                    description: m
                        .description
                        .clone()
                        .unwrap_or_else(|| default_description(&m.code)),
                    not_before: at(m.not_before.0),
                    not_after: timefmt::add(at(m.not_before.0), m.duration.0),
                    state: m.state.clone(),
                })
                .collect(),
            autoscaling: config.autoscaling.as_ref().map(|a| Autoscaling {
                state: a.state.clone(),
                target: a.target.clone(),
                at: at(a.after.0),
            }),
        };
        Self {
            timeline: RwLock::new(timeline),
            spot_enabled: spot_instance || config.spot.is_some(),
            autoscaling_enabled: config.autoscaling.is_some(),
        }
    }

    /// Changes the timeline. Compute new values before calling: the
    /// closure runs under the write lock, and should only assign.
    pub fn edit(&self, change: impl FnOnce(&mut Timeline)) {
        change(&mut self.timeline.write());
    }

    fn now(&self) -> (Timeline, SystemTime) {
        (self.timeline.read().clone(), SystemTime::now())
    }
}

pub fn default_description(code: &str) -> String {
    match code {
        "instance-reboot" | "system-reboot" => "scheduled reboot",
        "instance-retirement" => "scheduled retirement",
        "instance-stop" => "scheduled stop",
        _ => "scheduled maintenance",
    }
    .to_owned()
}

/// Which part of the events a mount serves.
#[derive(Clone, Copy)]
enum View {
    Spot,
    Events,
    Autoscaling,
}

pub struct EventsProvider {
    events: Arc<Events>,
    view: View,
}

/// What the events part mounts: `events/` always, `spot/` and
/// `autoscaling/` when it is a spot instance or in an Auto Scaling group.
pub fn mounts(events: &Arc<Events>) -> Vec<(String, Arc<EventsProvider>)> {
    let mut views = vec![(EVENTS_MOUNT, View::Events)];
    if events.spot_enabled {
        views.push((SPOT_MOUNT, View::Spot));
    }
    if events.autoscaling_enabled {
        views.push((AUTOSCALING_MOUNT, View::Autoscaling));
    }
    let provider = |view| {
        Arc::new(EventsProvider {
            events: events.clone(),
            view,
        })
    };
    views
        .into_iter()
        .map(|(mount, view)| (mount.to_owned(), provider(view)))
        .collect()
}

impl EventsProvider {
    fn at(&self, path: &str) -> Resolved {
        let (timeline, now) = self.events.now();
        match self.view {
            View::Spot => spot(&timeline, now, path),
            View::Events => events(&timeline, now, path),
            View::Autoscaling => autoscaling(&timeline, now, path),
        }
    }
}

#[async_trait]
impl Provider for EventsProvider {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        self.at(request.path)
    }
}

/// Plugins read the events as clients do (another cloud's flavour shows
/// them in its own form).
impl super::Lookup for EventsProvider {
    fn value(&self, path: &str) -> Option<super::TreeValue> {
        super::TreeValue::of(self.at(path))
    }
}

fn listing(entries: &[&str]) -> Resolved {
    Resolved::Dir(Bytes::from(entries.join("\n")))
}

fn spot(timeline: &Timeline, now: SystemTime, path: &str) -> Resolved {
    let notice = timeline.spot.as_ref().filter(|s| s.visible_at <= now);
    let terminating = notice.is_some_and(|s| s.action == SpotAction::Terminate);
    match (path, notice) {
        ("", None) => listing(&[]),
        ("", Some(_)) if terminating => listing(&["instance-action", "termination-time"]),
        ("", Some(_)) => listing(&["instance-action"]),
        ("instance-action", Some(s)) => Resolved::text(
            json!({ "action": s.action, "time": iso_seconds(s.action_at) }).to_string(),
        ),
        ("termination-time", Some(s)) if terminating => Resolved::text(iso_seconds(s.action_at)),
        _ => Resolved::NotFound,
    }
}

fn events(timeline: &Timeline, now: SystemTime, path: &str) -> Resolved {
    let rebalance = timeline.rebalance.filter(|at| *at <= now);
    match path {
        "" => listing(&["maintenance/", "recommendations/"]),
        "maintenance" => listing(&["history", "scheduled"]),
        "maintenance/scheduled" => maintenance(timeline, now, |state| state == "active"),
        "maintenance/history" => maintenance(timeline, now, |state| state != "active"),
        "recommendations" if rebalance.is_some() => listing(&["rebalance"]),
        "recommendations" => listing(&[]),
        "recommendations/rebalance" => match rebalance {
            Some(at) => Resolved::text(json!({ "noticeTime": iso_seconds(at) }).to_string()),
            None => Resolved::NotFound,
        },
        _ => Resolved::NotFound,
    }
}

fn autoscaling(timeline: &Timeline, now: SystemTime, path: &str) -> Resolved {
    match (path, &timeline.autoscaling) {
        ("", Some(_)) => listing(&["target-lifecycle-state"]),
        ("target-lifecycle-state", Some(a)) => Resolved::text(if now >= a.at {
            a.target.clone()
        } else {
            a.state.clone()
        }),
        _ => Resolved::NotFound,
    }
}

/// The JSON list IMDS serves, events in AWS's style and date format.
fn maintenance(timeline: &Timeline, now: SystemTime, keep: impl Fn(&str) -> bool) -> Resolved {
    let items: Vec<String> = timeline
        .maintenance
        .iter()
        .enumerate()
        .filter(|(_, m)| m.visible_at <= now && keep(&m.state))
        .map(|(i, m)| {
            let object = awsjson::object(&[
                ("NotBefore", aws_date(m.not_before).into()),
                ("Code", m.code.as_str().into()),
                ("Description", m.description.as_str().into()),
                ("EventId", Value::from(event_id(i, m))),
                ("NotAfter", aws_date(m.not_after).into()),
                (
                    "NotBeforeDeadline",
                    aws_date(timefmt::add(m.not_after, Duration::from_secs(7 * 86400))).into(),
                ),
                ("State", m.state.as_str().into()),
            ]);
            object
                .lines()
                .map(|line| format!("  {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    if items.is_empty() {
        return Resolved::text("[]");
    }
    Resolved::text(format!("[ \n{} \n]", items.join(", \n")))
}

/// `21 Jan 2019 09:00:43 GMT`
pub fn aws_date(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    OffsetDateTime::from_unix_timestamp(seconds as i64)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(format_description!(
            "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .expect("a fixed format always applies")
}

/// `instance-event-` and 17 hex digits, stable for the event.
fn event_id(index: usize, m: &Maintenance) -> String {
    let mut hash = Sha256::new();
    hash.update(index.to_le_bytes());
    hash.update(m.code.as_bytes());
    hash.update(iso_seconds(m.not_before).as_bytes());
    let digest = hex(&hash.finalize());
    format!("instance-event-{}", &digest[..17])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_in_aws_format() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_548_061_243);
        assert_eq!(aws_date(at), "21 Jan 2019 09:00:43 GMT");
    }

    #[test]
    fn the_next_due_time_is_the_first_still_to_come() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
        let maintenance = |visible| Maintenance {
            visible_at: at(visible),
            code: "system-reboot".into(),
            description: String::new(),
            not_before: at(5_000),
            not_after: at(6_000),
            state: "active".into(),
        };
        let mut timeline = Timeline {
            spot: Some(Spot {
                visible_at: at(900),
                action: SpotAction::Terminate,
                // Not compared with the clock: no change comes then.
                action_at: at(1_001),
            }),
            rebalance: Some(at(1_300)),
            maintenance: vec![maintenance(999), maintenance(1_200)],
            autoscaling: None,
        };
        assert_eq!(timeline.next_due(now), Some(at(1_200)));
        timeline.autoscaling = Some(Autoscaling {
            state: "Pending".into(),
            target: "InService".into(),
            at: at(1_100),
        });
        assert_eq!(timeline.next_due(now), Some(at(1_100)));
        assert_eq!(timeline.next_due(at(1_300)), None);
        // A time that came between two looks is told of, whenever the
        // second look is.
        assert!(timeline.came_between(now, at(1_100)));
        assert!(timeline.came_between(at(1_250), at(5_000)));
        assert!(!timeline.came_between(at(1_100), at(1_199)));
        assert!(!timeline.came_between(at(1_300), at(5_000)));
    }
}
