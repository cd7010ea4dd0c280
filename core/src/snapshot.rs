//! The snapshot document: what `ersatz snapshot URL` captured of an IMDS,
//! and what `ersatz serve --snapshot FILE` replays. The same tree, every
//! listing as it was served, the same values; never credentials.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The version of the document's layout; a reader refuses any other.
pub const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub format: u32,
    /// Where it was taken from.
    pub source: String,
    /// Every leaf under `meta-data/` and the identity document, by tree path.
    pub leaves: BTreeMap<String, String>,
    /// Every directory's listing, exactly as it was served.
    pub listings: BTreeMap<String, String>,
    /// Base64 of the user data, when there was any.
    pub user_data: Option<String>,
}

impl Snapshot {
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let relative = if path.is_relative() {
                let here = std::env::current_dir().unwrap_or_default();
                format!(
                    " (a relative path in a configuration is taken from the working directory, {})",
                    here.display()
                )
            } else {
                String::new()
            };
            format!("cannot read {}: {e}{relative}", path.display())
        })?;
        let snapshot: Self = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not an ersatz snapshot: {e}", path.display()))?;
        if snapshot.format != FORMAT {
            return Err(format!(
                "{}: snapshot format {} (this ersatz reads {FORMAT})",
                path.display(),
                snapshot.format
            ));
        }
        Ok(snapshot)
    }

    pub fn user_data(&self) -> Result<Option<Vec<u8>>, String> {
        self.user_data
            .as_ref()
            .map(|b64| base64::engine::general_purpose::STANDARD.decode(b64))
            .transpose()
            .map_err(|e| format!("user_data is not base64: {e}"))
    }
}
