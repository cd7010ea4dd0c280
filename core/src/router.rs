//! Longest-prefix match over mounts: each mount is a path owned by one
//! provider; a deeper mount (a plugin) overrides a shallower one. The EC2
//! tree, each other cloud's listener, and a plugin's lookups of the
//! lifecycle events all route this way.

use std::sync::Arc;

use crate::provider::Provider;

/// What is mounted where: paths without leading or trailing '/', the empty
/// one the root.
pub struct Router<T = Arc<dyn Provider>> {
    /// Longest prefix first, so the first match wins.
    mounts: Vec<(String, T)>,
}

impl<T> Router<T> {
    pub fn new(mut mounts: Vec<(String, T)>) -> Self {
        mounts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self { mounts }
    }

    /// What is mounted over `path`, and the path below its mount.
    pub fn route<'p>(&self, path: &'p str) -> Option<(&T, &'p str)> {
        self.mounts.iter().find_map(|(prefix, provider)| {
            let rest = if prefix.is_empty() {
                path
            } else {
                let rest = path.strip_prefix(prefix.as_str())?;
                if rest.is_empty() {
                    rest
                } else {
                    // Match by whole segment: `meta-data/iamx` is not under `meta-data/iam`.
                    rest.strip_prefix('/')?
                }
            };
            Some((provider, rest))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Request, Resolved};
    use async_trait::async_trait;

    struct Named;
    #[async_trait]
    impl Provider for Named {
        async fn resolve(&self, _: &Request<'_>) -> Resolved {
            Resolved::NotFound
        }
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let root: Arc<dyn Provider> = Arc::new(Named);
        let iam: Arc<dyn Provider> = Arc::new(Named);
        let router = Router::new(vec![
            ("".into(), root.clone()),
            ("meta-data/iam".into(), iam.clone()),
        ]);
        let at = |path| {
            let (provider, rest) = router.route(path).unwrap();
            (Arc::ptr_eq(provider, &iam), rest)
        };
        assert_eq!(at("meta-data/iam/info"), (true, "info"));
        assert_eq!(at("meta-data/iam"), (true, ""));
        assert_eq!(at("meta-data/iamx"), (false, "meta-data/iamx"));
        assert_eq!(at("meta-data"), (false, "meta-data"));
    }
}
