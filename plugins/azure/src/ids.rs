//! Stable identifiers made from text: the defaults (vmId, the system
//! identity's ids, event ids) are functions of the machine, so a restart
//! serves the same ones and two machines serve different ones. Not
//! cryptographic: nothing here is a secret.

/// FNV-1a, 64 bits, seeded so that two uses of the same text differ.
pub fn hash(seed: &str, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes().chain([0]).chain(text.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A version-4-shaped GUID, lower case, as Azure writes object ids.
pub fn guid(seed: &str, text: &str) -> String {
    let hi = hash(seed, text);
    let lo = hash(&format!("{seed}/2"), text);
    let hex = format!("{hi:016x}{lo:016x}");
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        8 | (lo >> 62) as u8,
        &hex[17..20],
        &hex[20..32]
    )
}

/// Whether `text` is a GUID (8-4-4-4-12 hex digits, either case).
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Standard base64 with padding, for `userData` (no crate for 20 lines).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_guids_and_stable() {
        let id = guid("vm", "i-0123");
        assert!(is_guid(&id), "{id}");
        assert_eq!(id, guid("vm", "i-0123"));
        assert_ne!(id, guid("vm", "i-0124"));
        assert_eq!(&id[14..15], "4");
        assert!(!is_guid("not-a-guid"));
        assert!(is_guid("0C1D5F0E-AAAA-4BBB-8CCC-123456789ABC"));
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
