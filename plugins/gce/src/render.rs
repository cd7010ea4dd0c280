//! A node's body in each of GCE's forms: a listing, a leaf as text or JSON,
//! and a whole subtree (`?recursive=true`) as JSON or as `key value` lines
//! (`&alt=text`).

use crate::tree::Node;

/// A directory's entries, one a line, each line ending in '\n' as GCE's do;
/// sub-directories end in '/'.
pub fn listing(node: &Node) -> String {
    let line = |name: &str, child: &Node| match child.is_dir() {
        true => format!("{name}/\n"),
        false => format!("{name}\n"),
    };
    match node {
        Node::Dir { entries, .. } => entries.iter().map(|(n, c)| line(n, c)).collect(),
        Node::Indexed(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| line(&i.to_string(), c))
            .collect(),
        _ => String::new(),
    }
}

/// A leaf as text: lists give a line per value.
pub fn leaf_text(node: &Node) -> String {
    match node {
        Node::Text(text) => text.clone(),
        Node::Number(n) => n.to_string(),
        Node::List { items, .. } => items.iter().map(|i| format!("{i}\n")).collect(),
        _ => String::new(),
    }
}

/// A node as compact JSON. Directories drop their endpoints and camelCase
/// GCE's own names (`machine-type` → `machineType`).
pub fn json(node: &Node) -> String {
    match node {
        Node::Text(text) => quote(text),
        Node::Number(n) => n.to_string(),
        Node::List { items, .. } => array(items.iter().map(|i| quote(i))),
        Node::Indexed(items) => array(items.iter().map(json)),
        Node::Dir { entries, fixed } => {
            let members = entries
                .iter()
                .filter(|(_, c)| !c.is_endpoint())
                .map(|(name, c)| {
                    let key = if *fixed {
                        camel_case(name)
                    } else {
                        name.clone()
                    };
                    format!("{}:{}", quote(&key), json(c))
                });
            format!("{{{}}}", members.collect::<Vec<_>>().join(","))
        }
        Node::Token(_) | Node::Identity(_) => "null".into(),
    }
}

/// A subtree as `path value` lines, GCE's `alt=text`: names keep their
/// dashes, lists repeat their path, a lone value at the top has no path.
pub fn text(node: &Node, prefix: &str) -> String {
    let join = |name: &str| match prefix {
        "" => name.to_string(),
        _ => format!("{prefix}/{name}"),
    };
    let line = |value: &str| match prefix {
        "" => value.to_string(),
        _ => format!("{prefix} {value}\n"),
    };
    match node {
        Node::Text(t) => line(t),
        Node::Number(n) => line(&n.to_string()),
        Node::List { items, .. } => items.iter().map(|i| format!("{prefix} {i}\n")).collect(),
        Node::Indexed(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| text(c, &join(&i.to_string())))
            .collect(),
        Node::Dir { entries, .. } => entries
            .iter()
            .filter(|(_, c)| !c.is_endpoint())
            .map(|(name, c)| text(c, &join(name)))
            .collect(),
        Node::Token(_) | Node::Identity(_) => String::new(),
    }
}

fn quote(text: &str) -> String {
    // Serializing a str cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

fn array(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(","))
}

/// `numeric-project-id` → `numericProjectId`.
pub fn camel_case(name: &str) -> String {
    let mut parts = name.split('-');
    let first = parts.next().unwrap_or_default().to_string();
    parts.fold(first, |mut out, part| {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::camel_case;

    #[test]
    fn camel_cases_dashed_names() {
        assert_eq!(camel_case("numeric-project-id"), "numericProjectId");
        assert_eq!(camel_case("id"), "id");
        assert_eq!(camel_case("access_token"), "access_token");
    }
}
