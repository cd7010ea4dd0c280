//! `/latest/meta-data/block-device-mapping`: the AMI's and root devices, then
//! EBS volumes (`ebs1`, `ebs2`, …) and instance stores (`ephemeral0`, …).

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit/v0.2.0" });

// Every call is a fresh instance: allocation only moves a pointer on.
use bump_alloc as _;

use ersatz::plugin::host;
use ersatz::plugin::types::{Answer, Leaf, Request, Response};
use exports::ersatz::plugin::provider::Guest;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    ami: Option<String>,
    root: Option<String>,
    ebs: Vec<String>,
    ephemeral: Vec<String>,
}

/// `(name, device)` pairs in IMDS's order, which is alphabetical
/// (so `ebs10` comes before `ebs2`).
fn mapping(config: Config) -> Vec<(String, String)> {
    // On EC2 the AMI's root device is the instance's root device.
    let ami = config.ami.or_else(|| config.root.clone());
    let root = config.root.or_else(|| ami.clone());
    let xvda = || "/dev/xvda".to_string();
    let mut devices = vec![
        ("ami".to_string(), ami.unwrap_or_else(xvda)),
        ("root".to_string(), root.unwrap_or_else(xvda)),
    ];
    let ebs = config.ebs.into_iter().zip(1..);
    devices.extend(ebs.map(|(device, n)| (format!("ebs{n}"), device)));
    let ephemeral = config.ephemeral.into_iter().zip(0..);
    devices.extend(ephemeral.map(|(device, n)| (format!("ephemeral{n}"), device)));
    devices.sort();
    devices
}

/// The answers depend only on the config, which change only with a
/// configuration reload (and a reload drops reused answers): the host may
/// reuse each for an hour.
const MAX_AGE: u32 = 3600;

struct BlockDeviceMapping;

impl Guest for BlockDeviceMapping {
    fn resolve(request: Request) -> Result<Answer, String> {
        let config: Config = serde_json::from_str(&host::config())
            .map_err(|e| format!("block-device-mapping: invalid config: {e}"))?;
        let devices = mapping(config);
        let response = if request.path.is_empty() {
            Response::Directory(devices.into_iter().map(|(name, _)| name).collect())
        } else {
            match devices.into_iter().find(|(name, _)| *name == request.path) {
                Some((_, device)) => Response::Leaf(Leaf {
                    body: device.into_bytes(),
                    content_type: "text/plain".into(),
                }),
                None => Response::NotFound,
            }
        };
        Ok(Answer {
            response,
            max_age: MAX_AGE,
        })
    }
}

export!(BlockDeviceMapping);
