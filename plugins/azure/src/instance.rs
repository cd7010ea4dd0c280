//! `instance[/…]`: the VM's compute and network metadata in Azure's
//! schema (every value a string), filtered by route parameters
//! (`instance/compute/vmId`, `instance/network/interface/0/…`) and shaped
//! by `api-version` (a field appears from the version that introduced it).

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::http::{error, not_found, Query, Reply};
use crate::ids::{base64, hash};
use crate::vm::Vm;

/// When each compute field appeared (Microsoft's schema table); fields not
/// listed date from the first version.
const SINCE: &[(&str, &str)] = &[
    ("additionalCapabilities", "2021-11-01"),
    ("azEnvironment", "2018-10-01"),
    ("customData", "2019-02-01"),
    ("evictionPolicy", "2020-12-01"),
    ("extendedLocation", "2021-03-01"),
    ("host", "2021-11-15"),
    ("hostGroup", "2021-11-15"),
    ("isHostCompatibilityLayerVm", "2020-06-01"),
    ("licenseType", "2020-09-01"),
    ("osProfile", "2020-07-15"),
    ("physicalZone", "2023-11-15"),
    ("placementGroupId", "2017-08-01"),
    ("plan", "2018-04-02"),
    ("platformSubFaultDomain", "2021-10-01"),
    ("priority", "2020-12-01"),
    ("provider", "2018-10-01"),
    ("publicKeys", "2018-04-02"),
    ("resourceGroupName", "2017-08-01"),
    ("resourceId", "2019-03-11"),
    ("securityProfile", "2020-06-01"),
    ("storageProfile", "2019-06-01"),
    ("subscriptionId", "2017-08-01"),
    ("tags", "2017-08-01"),
    ("tagsList", "2019-06-04"),
    ("userData", "2021-01-01"),
    ("virtualMachineScaleSet", "2021-03-01"),
    ("vmScaleSetName", "2017-12-01"),
    ("zone", "2017-12-01"),
];

const ADMIN: &str = "azureuser";

/// Serves `path` (`instance` or below it) for `version`.
pub fn serve(path: &str, query: &Query, config: &Config, vm: &Vm, version: &str) -> Reply {
    let document = document(config, vm, version);
    let route = path.split('/').skip(1).filter(|s| !s.is_empty());
    let Some(node) = walk(&document, route) else {
        return not_found();
    };
    match (query.get("format"), node) {
        (None | Some("json"), Value::String(_)) => error(
            400,
            "Bad request. Leaf nodes are only available in text format: add format=text to the request",
        ),
        (None | Some("json"), node) => Reply::json(200, node),
        (Some("text"), Value::String(text)) => Reply::text(text.clone()),
        (Some("text"), node) => Reply::text(listing(node)),
        (Some(_), _) => error(
            400,
            "Bad request. Invalid format: the formats are json and text",
        ),
    }
}

/// Follows route parameters: object keys, and array indexes as numbers.
fn walk<'a>(mut node: &'a Value, route: impl Iterator<Item = &'a str>) -> Option<&'a Value> {
    for step in route {
        node = match node {
            Value::Object(map) => map.get(step)?,
            Value::Array(items) => items.get(index(step)?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// An array index written plainly: `01` or `+1` is not `1`.
fn index(step: &str) -> Option<usize> {
    let i: usize = step.parse().ok()?;
    (i.to_string() == step).then_some(i)
}

/// A directory in text: one child a line, directories ending in '/'.
fn listing(node: &Value) -> String {
    let entry = |name: String, child: &Value| match child {
        Value::String(_) => name,
        _ => format!("{name}/"),
    };
    let entries: Vec<String> = match node {
        Value::Object(map) => map.iter().map(|(k, v)| entry(k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| entry(i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    entries.join("\n")
}

fn document(config: &Config, vm: &Vm, version: &str) -> Value {
    json!({ "compute": compute(config, vm, version), "network": network(vm) })
}

fn compute(config: &Config, vm: &Vm, version: &str) -> Value {
    let mut map: Map<String, Value> = vm
        .compute
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(v.as_str())))
        .collect();
    for (key, value) in objects(config, vm) {
        map.insert(key.to_owned(), value);
    }
    // 2017-03-01 was a preview with the first release's fields.
    let version = version.max("2017-04-02");
    map.retain(|key, _| {
        let since = SINCE.iter().find(|(k, _)| k == key);
        since.is_none_or(|(_, since)| *since <= version)
    });
    Value::Object(map)
}

/// The compute fields that are not plain strings.
fn objects(config: &Config, vm: &Vm) -> Vec<(&'static str, Value)> {
    let tags = &config.tags;
    let tag_string: Vec<String> = tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let tags_list: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let keys: Vec<Value> = vm
        .public_keys
        .iter()
        .map(|key| json!({ "keyData": key, "path": format!("/home/{ADMIN}/.ssh/authorized_keys") }))
        .collect();
    let user_data = config.user_data.as_deref().unwrap_or("");
    vec![
        (
            "additionalCapabilities",
            json!({ "hibernationEnabled": "false" }),
        ),
        ("extendedLocation", json!({ "type": "", "name": "" })),
        ("host", json!({ "id": "" })),
        ("hostGroup", json!({ "id": "" })),
        (
            "osProfile",
            json!({ "adminUsername": ADMIN, "computerName": vm.name(), "disablePasswordAuthentication": "true" }),
        ),
        (
            "plan",
            json!({ "name": "", "product": "", "publisher": "" }),
        ),
        ("publicKeys", Value::Array(keys)),
        (
            "securityProfile",
            json!({ "secureBootEnabled": "true", "virtualTpmEnabled": "true", "encryptionAtHost": "false", "securityType": "TrustedLaunch" }),
        ),
        ("storageProfile", storage(vm)),
        ("tags", Value::from(tag_string.join(";"))),
        ("tagsList", Value::Array(tags_list)),
        ("userData", Value::from(base64(user_data.as_bytes()))),
        ("virtualMachineScaleSet", json!({ "id": "" })),
    ]
}

/// The OS disk Azure would have made for the image; no data disks.
fn storage(vm: &Vm) -> Value {
    let disk = format!(
        "{}_OsDisk_1_{:016x}{:016x}",
        vm.name(),
        hash("disk", vm.get("vmId")),
        hash("disk/2", vm.get("vmId"))
    );
    let disk_id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/disks/{disk}",
        vm.get("subscriptionId"),
        vm.get("resourceGroupName")
    );
    json!({
        "dataDisks": [],
        "imageReference": {
            "id": "", "offer": vm.get("offer"), "publisher": vm.get("publisher"),
            "sku": vm.get("sku"), "version": vm.get("version"),
            "communityGalleryImageId": "", "sharedGalleryImageId": "", "exactVersion": vm.get("version"),
        },
        "osDisk": {
            "caching": "ReadWrite", "createOption": "FromImage", "diffDiskSettings": { "option": "" },
            "diskSizeGB": "30", "encryptionSettings": { "enabled": "false" }, "image": { "uri": "" },
            "managedDisk": { "id": disk_id, "storageAccountType": "Premium_LRS" },
            "name": disk, "osType": vm.get("osType"), "vhd": { "uri": "" }, "writeAcceleratorEnabled": "false",
        },
        "resourceDisk": { "size": "0" },
    })
}

fn network(vm: &Vm) -> Value {
    let nic = &vm.nic;
    json!({ "interface": [{
        "ipv4": {
            "ipAddress": [{ "privateIpAddress": nic.private_ip, "publicIpAddress": nic.public_ip }],
            "subnet": [{ "address": nic.subnet.0.to_string(), "prefix": nic.subnet.1.to_string() }],
        },
        "ipv6": { "ipAddress": [] },
        "macAddress": nic.mac,
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::{fake::Host, Found};

    fn get(path: &str, query: &str) -> Reply {
        let config =
            Config::load(r#"{"tags":{"env":"test","team":"core"},"user_data":"hi"}"#).unwrap();
        let host = Host::new("{}");
        host.tree.borrow_mut().insert(
            "meta-data/public-keys".into(),
            Found::Listing(vec!["0=alice".into()]),
        );
        host.set(
            "meta-data/public-keys/0/openssh-key",
            "ssh-ed25519 AAAA alice\n",
        );
        let vm = Vm::gather(&config, &host);
        let version = Query::parse(Some(query))
            .get("api-version")
            .unwrap_or("2021-02-01")
            .to_owned();
        serve(path, &Query::parse(Some(query)), &config, &vm, &version)
    }

    fn json_of(reply: &Reply) -> Value {
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn the_whole_document_has_only_strings_at_its_leaves() {
        let doc = json_of(&get("instance", "api-version=2021-02-01"));
        fn strings_only(v: &Value) -> bool {
            match v {
                Value::String(_) => true,
                Value::Array(a) => a.iter().all(strings_only),
                Value::Object(m) => m.values().all(strings_only),
                _ => false,
            }
        }
        assert!(strings_only(&doc));
        let compute = &doc["compute"];
        assert_eq!(compute["tags"], "env:test;team:core");
        assert_eq!(compute["tagsList"][1]["name"], "team");
        assert_eq!(compute["userData"], "aGk=");
        assert_eq!(
            compute["publicKeys"][0]["keyData"],
            "ssh-ed25519 AAAA alice"
        );
        assert_eq!(doc["network"]["interface"][0]["macAddress"], "024A7C112233");
    }

    #[test]
    fn fields_appear_with_their_version() {
        let old = json_of(&get("instance/compute", "api-version=2017-04-02"));
        assert!(old.get("vmId").is_some());
        assert!(old.get("subscriptionId").is_none());
        assert!(old.get("userData").is_none());
        let new = json_of(&get("instance/compute", "api-version=2025-04-07"));
        assert!(new.get("physicalZone").is_some());
    }

    #[test]
    fn route_parameters_drill_down() {
        let ip = get(
            "instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress",
            "api-version=2021-02-01&format=text",
        );
        assert_eq!(
            (ip.status, ip.body.as_slice()),
            (200, b"10.20.30.40".as_slice())
        );
        assert_eq!(ip.content_type, crate::http::TEXT);
        let nic = json_of(&get(
            "instance/network/interface/0",
            "api-version=2021-02-01",
        ));
        assert_eq!(nic["ipv4"]["subnet"][0]["prefix"], "24");
        for missing in [
            "instance/compute/nope",
            "instance/network/interface/1",
            "instance/network/interface/00",
        ] {
            assert_eq!(
                get(missing, "api-version=2021-02-01").status,
                404,
                "{missing}"
            );
        }
    }

    #[test]
    fn leaves_need_text_and_directories_list_in_text() {
        assert_eq!(
            get("instance/compute/vmId", "api-version=2021-02-01").status,
            400
        );
        assert_eq!(
            get(
                "instance/compute/vmId",
                "api-version=2021-02-01&format=json"
            )
            .status,
            400
        );
        assert_eq!(
            get("instance", "api-version=2021-02-01&format=xml").status,
            400
        );
        let top = get("instance", "api-version=2021-02-01&format=text");
        assert_eq!(top.body, b"compute/\nnetwork/");
        let nics = get(
            "instance/network/interface",
            "api-version=2021-02-01&format=text",
        );
        assert_eq!(nics.body, b"0/");
    }
}
