//! The Google Compute Engine metadata server, well enough that Google's own
//! clients (google-auth, cloud-init's GCE datasource) cannot tell: mounted at
//! `/` of a flavour listener whose `headers`, `gates`, `etags`, `long_poll`
//! and `keys` give the `Metadata-Flavor`/`Server` headers, the 403s, ETags,
//! `wait_for_change`, and `/oauth2/v1/certs` (see `examples/gce.toml`).
//!
//! Served: `/` → `computeMetadata/`, `computeMetadata/` → `v1/`, and below
//! `computeMetadata/v1/`: `instance/` (attributes/, cpu-platform,
//! description, disks/, hostname, id, image, licenses/, machine-type,
//! maintenance-event, name, network-interfaces/0/…, preempted, scheduling/,
//! service-accounts/{EMAIL,ALIAS}/{aliases,email,identity,scopes,token},
//! tags, virtual-clock/, zone), `project/` (attributes/, numeric-project-id,
//! project-id) and `universe/universe-domain`; with `?recursive=true`,
//! `?alt=json|text`, GCE's 301 to a directory's '/', and its 404 page.
//!
//! Config (every key optional; `config = {}` serves a plausible VM):
//!
//! ```toml
//! project_id = "ersatz-project"            # GCE's rules: 6-30 of [a-z0-9-]
//! numeric_project_id = 123456789012
//! project_attributes = { ssh-keys = "alice:ssh-ed25519 AAAA… alice" }
//! universe_domain = "googleapis.com"
//! [instance]
//! id = 4306570268266786072                 # default: from the EC2 instance-id
//! name = "web-1"                           # default: the EC2 instance-id
//! hostname = "web-1.us-central1-a.c.ersatz-project.internal"  # default: NAME.ZONE.c.PROJECT.internal
//! zone = "us-central1-a"
//! machine_type = "n2-standard-2"
//! cpu_platform = "Intel Cascade Lake"
//! description = ""
//! image = "projects/debian-cloud/global/images/debian-12-bookworm-v20240709"
//! tags = ["http-server"]
//! attributes = { user-data = "#cloud-config\n…", ssh-keys = "…" }
//! licenses = ["3853522013536123851"]
//! creation_timestamp = 1704067200          # seconds, in identity tokens
//! [instance.network_interface]             # ip, mac, external_ip: default the EC2 local-ipv4, mac, public-ipv4
//! ip = "10.128.0.2"
//! mac = "42:01:0a:80:00:02"
//! external_ip = "34.1.2.3"                 # "" for none
//! network = "projects/123456789012/networks/default"
//! subnetmask = "255.255.240.0"
//! gateway = "10.128.0.1"                   # default: the subnet's first address
//! [[service_accounts]]                     # default: one, N-compute@developer.gserviceaccount.com
//! email = "app@ersatz-project.iam.gserviceaccount.com"
//! aliases = ["default"]                    # default: ["default"] for the first, [] after
//! scopes = ["https://www.googleapis.com/auth/cloud-platform"]
//! token = "ya29.fake"                      # default: derived from the email
//! unique_id = "104479897743394244856"      # `sub`/`azp` of identity tokens; default: derived
//! ```

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit/v0.3.0" });

// Every call is a fresh instance: allocation only moves a pointer on.
use bump_alloc as _;

mod config;
mod http;
mod machine;
mod render;
mod serve;
mod tokens;
mod tree;

use config::Config;
use ersatz::plugin::host::{self, Value};
use ersatz::plugin::types::{Answer, Request, Shape};
use exports::ersatz::plugin::provider::Guest;
use machine::{Ec2, Machine};

/// The emulated VM for this request: the config and the EC2 facts it leaves
/// to the host, fetched in one call.
fn machine() -> Result<Machine, String> {
    let config = Config::parse(&host::config())?;
    let paths = machine::ec2_paths(&config);
    let mut ec2 = Ec2::new();
    if !paths.is_empty() {
        let asked: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        for (path, value) in paths.iter().zip(host::lookup_many(&asked)) {
            if let Some(Value::Leaf(text)) = value {
                ec2.insert(path, text.trim().to_string());
            }
        }
    }
    Ok(Machine::new(config, &ec2))
}

struct Gce;

impl Guest for Gce {
    fn init(config: String) -> Result<Shape, String> {
        Config::load(&config)?;
        Ok(Shape::Directory)
    }

    fn resolve(request: Request) -> Result<Answer, String> {
        let env = serve::Env {
            now_ms: host::now(),
            sign: &|claims| host::sign_jwt(claims, None),
        };
        serve::answer(&request, &machine()?, &env)
    }
}

export!(Gce);
