//! A request's query string as a plugin reads it: `name=value` pairs split
//! on `&`, percent-decoded, with `+` as a space (form encoding, which
//! Python's `requests` and curl's `--data-urlencode` produce). A name given
//! twice keeps its first value (a `unique_query` gate refuses such requests
//! before the plugin when the cloud does).

#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

#[derive(Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query.unwrap_or("").split('&').filter(|p| !p.is_empty());
        let pair = |p: &str| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (decode(name), decode(value))
        };
        Self(pairs.map(pair).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let found = self.0.iter().find(|(n, _)| n == name);
        found.map(|(_, value)| value.as_str())
    }

    /// `true` in any case (cloud-init sends `True`).
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Percent-decoding; a `%` not followed by two hex digits stays as it is.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex_pair(bytes.get(i + 1..i + 3))) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Two hex digits as a byte: only digits (`u8::from_str_radix` would also
/// take a sign, so `%+f` would decode).
fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match pair? {
        [high, low] => Some((digit(*high)? * 16 + digit(*low)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_decode() {
        let q = Query::parse(Some(
            "api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&a+b=c+d&flag&recursive=True",
        ));
        assert_eq!(q.get("api-version"), Some("2018-02-01"));
        assert_eq!(q.get("resource"), Some("https://vault.azure.net"));
        assert_eq!(q.get("a b"), Some("c d"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert!(q.flag("recursive"));
        assert!(!q.flag("flag"));
    }

    #[test]
    fn only_two_hex_digits_make_a_byte() {
        for (raw, decoded) in [
            ("%zz%4", "%zz%4"),
            ("%+f", "% f"),
            ("%-1", "%-1"),
            ("%41", "A"),
        ] {
            assert_eq!(
                Query::parse(Some(&alloc::format!("x={raw}"))).get("x"),
                Some(decoded)
            );
        }
    }
}
