//! Which version of the contract a component was built against, read from
//! its import and export names before anything is compiled: a component
//! built against a version this host does not implement is refused without
//! compiling (or caching) any of its code.

use wasmparser::{Encoding, Parser, Payload};

use super::{v0_1, v0_2, v0_3};

pub const WIT_PACKAGE: &str = "ersatz:plugin";

/// A version of the contract this host implements, each in its own module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V0_1,
    V0_2,
    V0_3,
}

impl Version {
    /// Oldest first.
    pub const ALL: [Version; 3] = [Version::V0_1, Version::V0_2, Version::V0_3];

    /// As in the package name, `ersatz:plugin@0.3.0`.
    pub fn number(self) -> &'static str {
        match self {
            Version::V0_1 => v0_1::VERSION,
            Version::V0_2 => v0_2::VERSION,
            Version::V0_3 => v0_3::VERSION,
        }
    }

    fn of(number: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.number() == number)
    }
}

/// What a component was built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    pub version: Version,
    /// Whether it exports `credential-source` (the `credential-plugin` world).
    pub credential: bool,
}

/// Reads the contract from the component's own (outermost) imports and
/// exports. The reason names what is wrong; the caller names the file.
pub fn read(wasm: &[u8]) -> Result<Contract, String> {
    let (imports, exports) =
        names(wasm).map_err(|e| format!("is not a WebAssembly component ({e})"))?;
    let ours = |name: &&str| name.starts_with(&format!("{WIT_PACKAGE}/"));
    let named: Vec<&str> = imports
        .iter()
        .chain(&exports)
        .copied()
        .filter(ours)
        .collect();
    let supported = Version::ALL
        .map(|v| format!("{WIT_PACKAGE}@{}", v.number()))
        .join(" and ");
    let Some(first) = named.first() else {
        return Err(format!(
            "uses no {WIT_PACKAGE} interface: not an ersatz plugin (this ersatz implements {supported})"
        ));
    };
    let version = version_of(first);
    if let Some(other) = named.iter().find(|name| version_of(name) != version) {
        return Err(format!(
            "mixes {WIT_PACKAGE} versions ({first}, {other}): rebuild the plugin against one version in wit/"
        ));
    }
    let Some(known) = Version::of(version) else {
        return Err(format!(
            "is built against {WIT_PACKAGE}@{version} ({first}); this ersatz implements {supported}: rebuild the plugin against one of those in wit/"
        ));
    };
    if !exports.contains(&format!("{WIT_PACKAGE}/provider@{version}").as_str()) {
        return Err(format!(
            "exports no {WIT_PACKAGE}/provider@{version}: not an ersatz plugin (exports: {})",
            exports.join(", ")
        ));
    }
    let credential_source = format!("{WIT_PACKAGE}/credential-source@{version}");
    Ok(Contract {
        version: known,
        credential: exports.contains(&credential_source.as_str()),
    })
}

/// The names the outermost component imports and exports; the modules and
/// components nested in it are skipped.
fn names(wasm: &[u8]) -> Result<(Vec<&str>, Vec<&str>), String> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::Version { encoding, .. } if depth == 0 && encoding != Encoding::Component => {
                return Err("a core module, not a component: build it for wasm32-wasip2".into());
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    imports.push(import.map_err(|e| e.to_string())?.name.name);
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.map_err(|e| e.to_string())?.name.name);
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

fn version_of(name: &str) -> &str {
    name.rsplit_once('@')
        .map_or("no version", |(_, version)| version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Version::ALL` is written by hand: a contract folder in `wit/`
    /// without its version here (or the reverse) would load as "unknown".
    #[test]
    fn every_contract_folder_has_a_version_and_back() {
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
        let mut folders: Vec<String> = std::fs::read_dir(&wit)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_prefix('v').map(str::to_owned))
            .collect();
        folders.sort();
        let versions: Vec<String> = Version::ALL.iter().map(|v| v.number().to_owned()).collect();
        assert_eq!(
            folders, versions,
            "wit/ folders vs Version::ALL (oldest first)"
        );
    }
}
