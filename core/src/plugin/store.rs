//! Each plugin's own small key-value store (`host.store-get`/`store-put`,
//! contract 0.3.0): the only state a plugin keeps between calls, since every
//! call runs on a fresh instance. Kept by the server across reloads, by
//! plugin name, and bounded, since a plugin is untrusted.

use std::collections::HashMap;
use std::sync::Arc;

use crate::changes::Changes;

/// Keys one plugin may keep.
pub const MAX_KEYS: usize = 1024;
/// Bytes of keys and values one plugin may keep.
pub const MAX_BYTES: usize = 1 << 20;

#[derive(Default)]
pub struct PluginStore {
    entries: parking_lot::Mutex<HashMap<String, String>>,
}

impl PluginStore {
    pub fn get(&self, key: &str) -> Option<String> {
        self.entries.lock().get(key).cloned()
    }

    /// Sets (or with `None` removes) `key`; refused past the bounds.
    /// Whether anything changed.
    pub fn put(&self, key: String, value: Option<String>) -> Result<bool, String> {
        let mut entries = self.entries.lock();
        if entries.get(&key) == value.as_ref() {
            return Ok(false);
        }
        let Some(value) = value else {
            entries.remove(&key);
            return Ok(true);
        };
        let replaced = entries.get(&key).map_or(0, |old| key.len() + old.len());
        let used: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let after = used - replaced + key.len() + value.len();
        if replaced == 0 && entries.len() >= MAX_KEYS {
            return Err(format!("the store holds {MAX_KEYS} keys already"));
        }
        if after > MAX_BYTES {
            return Err(format!(
                "the store would hold {after} bytes, past its {MAX_BYTES}"
            ));
        }
        entries.insert(key, value);
        Ok(true)
    }
}

/// Every plugin's store, by plugin name, for the server's whole life.
#[derive(Default)]
pub struct Stores(parking_lot::Mutex<HashMap<String, Arc<PluginStore>>>);

impl Stores {
    pub fn of(&self, plugin: &str) -> Arc<PluginStore> {
        self.0.lock().entry(plugin.to_owned()).or_default().clone()
    }
}

/// What a plugin may reach of the host, beyond its own configuration.
pub struct Grants {
    pub lookup: Arc<dyn crate::provider::Lookup>,
    /// Only for a plugin granted `sign-jwt`.
    pub signer: Option<Arc<crate::provider::identity::SigningKey>>,
    pub store: Arc<PluginStore>,
    /// Told of every store put, so long-polls see it.
    pub changes: Arc<Changes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_keys_and_bytes_and_replacing_frees_its_room() {
        let store = PluginStore::default();
        for i in 0..MAX_KEYS {
            store.put(format!("k{i}"), Some("v".into())).unwrap();
        }
        assert!(store.put("one-more".into(), Some("v".into())).is_err());
        assert!(store.put("k0".into(), Some("replaced".into())).unwrap());
        assert!(
            !store.put("k0".into(), Some("replaced".into())).unwrap(),
            "the same value changes nothing"
        );
        store.put("k0".into(), None).unwrap();
        store.put("one-more".into(), Some("v".into())).unwrap();
        let big = "x".repeat(MAX_BYTES);
        assert!(store.put("big".into(), Some(big)).is_err());
        assert_eq!(store.get("one-more").as_deref(), Some("v"));
        assert_eq!(store.get("k0"), None);
    }
}
