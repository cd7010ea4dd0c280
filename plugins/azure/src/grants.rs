//! What the plugin's logic needs from the host, as a trait: `lib.rs`
//! implements it with the WIT imports, and the tests with a fake, so the
//! logic runs (and is tested) on any target.

/// A value of the host's built-in EC2 tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    Leaf(String),
    Listing(Vec<String>),
}

pub trait Grants {
    /// The plugin's `config` table, as JSON.
    fn config(&self) -> String;
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// `lookup` for each path, in order, in one call.
    fn lookup_many(&self, paths: &[String]) -> Vec<Option<Found>>;
    /// An RS256 JWT over `claims` (a JSON object), signed by the host.
    fn sign_jwt(&self, claims: &str) -> Result<String, String>;
    fn store_get(&self, key: &str) -> Option<String>;
    fn store_put(&self, key: &str, value: Option<&str>) -> Result<(), String>;

    /// Seconds since the Unix epoch.
    fn now(&self) -> i64 {
        i64::try_from(self.now_ms() / 1000).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
pub mod fake {
    //! A host in memory: a tree, a clock, a store, and a "signature" that
    //! is the claims themselves (tests read them back).
    use super::{Found, Grants};
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct Host {
        pub config: String,
        pub now_ms: Cell<u64>,
        pub tree: RefCell<BTreeMap<String, Found>>,
        pub store: RefCell<BTreeMap<String, String>>,
    }

    impl Host {
        pub fn new(config: &str) -> Self {
            let host = Self {
                config: config.to_owned(),
                ..Self::default()
            };
            host.now_ms.set(1_700_000_000_000);
            for (path, value) in [
                ("meta-data/instance-id", "i-0fedcba9876543210"),
                ("meta-data/local-ipv4", "10.20.30.40"),
                ("meta-data/public-ipv4", "198.51.100.7"),
                ("meta-data/mac", "02:4a:7c:11:22:33"),
                (
                    "meta-data/local-hostname",
                    "ip-10-20-30-40.eu-west-2.compute.internal",
                ),
                ("meta-data/placement/availability-zone", "eu-west-2b"),
            ] {
                host.set(path, value);
            }
            host
        }

        pub fn set(&self, path: &str, value: &str) {
            let value = Found::Leaf(value.to_owned());
            self.tree.borrow_mut().insert(path.to_owned(), value);
        }

        pub fn advance(&self, seconds: u64) {
            self.now_ms.set(self.now_ms.get() + seconds * 1000);
        }
    }

    impl Grants for Host {
        fn config(&self) -> String {
            self.config.clone()
        }
        fn now_ms(&self) -> u64 {
            self.now_ms.get()
        }
        fn lookup_many(&self, paths: &[String]) -> Vec<Option<Found>> {
            let tree = self.tree.borrow();
            paths.iter().map(|p| tree.get(p).cloned()).collect()
        }
        fn sign_jwt(&self, claims: &str) -> Result<String, String> {
            Ok(format!("header.{claims}.signature"))
        }
        fn store_get(&self, key: &str) -> Option<String> {
            self.store.borrow().get(key).cloned()
        }
        fn store_put(&self, key: &str, value: Option<&str>) -> Result<(), String> {
            let mut store = self.store.borrow_mut();
            match value {
                Some(v) => store.insert(key.to_owned(), v.to_owned()),
                None => store.remove(key),
            };
            Ok(())
        }
    }
}
