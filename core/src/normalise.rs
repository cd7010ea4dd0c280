//! Folds every version prefix (`latest`, `1.0`, dated) onto one tree, and
//! `//` and trailing `/` away: cloud-init and amazon-ec2-utils send both.

use std::borrow::Cow;

use crate::instance::VERSIONS;

#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/`: the version listing.
    Versions,
    /// A path in the tree under a known version, folded.
    Tree { latest: bool, path: Cow<'a, str> },
    /// An unknown version, or a path that tries to climb (`..`).
    Unknown,
}

pub fn normalise(raw_path: &str) -> Target<'_> {
    let trimmed = raw_path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Target::Versions;
    }
    let (version, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let latest = version == "latest";
    if !latest && !VERSIONS.contains(&version) {
        return Target::Unknown;
    }
    let mut folded = true;
    for segment in rest.split('/') {
        match segment {
            "." | ".." => return Target::Unknown,
            "" => folded = false,
            _ => {}
        }
    }
    // Nearly every client sends a path that is already folded: borrow it.
    let path = if folded || rest.is_empty() {
        Cow::Borrowed(rest)
    } else {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        Cow::Owned(segments.join("/"))
    };
    Target::Tree { latest, path }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(path: &str) -> Target<'_> {
        Target::Tree {
            latest: false,
            path: path.into(),
        }
    }

    #[test]
    fn folds_versions_double_and_trailing_slashes() {
        assert_eq!(normalise("/"), Target::Versions);
        assert_eq!(normalise("//"), Target::Versions);
        assert_eq!(
            normalise("/2009-04-04//meta-data///instance-id/"),
            tree("meta-data/instance-id")
        );
        assert_eq!(
            normalise("/latest/meta-data"),
            Target::Tree {
                latest: true,
                path: "meta-data".into()
            }
        );
        assert_eq!(normalise("/2021-03-23"), tree(""));
        assert_eq!(normalise("/2021-03-23/"), tree(""));
        assert_eq!(normalise("/1.0/meta-data/"), tree("meta-data"));
    }

    #[test]
    fn refuses_unknown_versions_and_climbing() {
        assert_eq!(normalise("/1999-01-01/meta-data"), Target::Unknown);
        assert_eq!(normalise("/latest/meta-data/../user-data"), Target::Unknown);
        assert_eq!(normalise("/meta-data/instance-id"), Target::Unknown);
    }
}
