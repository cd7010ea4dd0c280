//! IMDSv2 sessions. Tokens are stateless: an HMAC over (expiry, nonce) with a
//! key kept in the state directory, so they survive a restart (aws-sdk-rust
//! caches a token for hours and retries a 401 with the same one).

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderName;
use sha2::Sha256;

use crate::secret::constant_time_eq;
use crate::state::StateDir;

// Header names as constants: a `&str` name is parsed again on every use.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-aws-ec2-metadata-token");
pub const TTL_HEADER: HeaderName = HeaderName::from_static("x-aws-ec2-metadata-token-ttl-seconds");
pub const MAX_TTL: u64 = 21_600;

const KEY_FILE: &str = "token.key";
const NONCE_LEN: usize = 16;
const TOKEN_LEN: usize = 8 + NONCE_LEN + 32;
/// Unpadded base64 of `TOKEN_LEN` bytes.
const TOKEN_TEXT_LEN: usize = (TOKEN_LEN * 4).div_ceil(3);

pub struct Sessions {
    /// The HMAC with its key already absorbed: cloning it skips the two
    /// key-pad compressions on every request.
    keyed: Hmac<Sha256>,
    /// Tells this key's entries in [`LAST_VERIFIED`] from another's.
    id: u64,
}

static NEXT_SESSIONS_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The token this worker thread last verified, with its owner's id and
    /// its expiry. A client reuses one token for hours, so most checks are
    /// a compare instead of a decode and an HMAC. Tokens cannot be revoked,
    /// so a verified one stays valid until it expires.
    static LAST_VERIFIED: Cell<Option<(u64, [u8; TOKEN_TEXT_LEN], u64)>> = const { Cell::new(None) };
}

#[derive(Debug, PartialEq, Eq)]
pub enum TtlError {
    Missing,
    Invalid,
}

/// `X-aws-ec2-metadata-token-ttl-seconds`: from 1 to 21600, written in plain
/// decimal digits (no sign, no leading zero, no white space), as IMDS
/// requires.
pub fn parse_ttl(value: Option<&[u8]>) -> Result<u64, TtlError> {
    let digits = value.ok_or(TtlError::Missing)?;
    let plain = matches!(digits.first(), Some(b'1'..=b'9'))
        && digits.len() <= 5
        && digits.iter().all(u8::is_ascii_digit);
    if !plain {
        return Err(TtlError::Invalid);
    }
    let ttl = digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    if ttl <= MAX_TTL {
        Ok(ttl)
    } else {
        Err(TtlError::Invalid)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Sessions {
    pub fn with_key(key: [u8; 32]) -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(&key).expect("any key length works"),
            id: NEXT_SESSIONS_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A key that lives and dies with this process.
    pub fn in_memory() -> Self {
        Self::with_key(random())
    }

    /// Loads the key from `state_dir`, creating it (mode 0600) on first start.
    /// Without a usable state directory the key lives in memory: call this
    /// once per process, so that reloads never change it.
    pub fn load(state_dir: &Path) -> Self {
        match load_or_create_key(state_dir) {
            Ok(key) => Self::with_key(key),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot keep the token key in the state directory; using a key in memory: IMDSv2 tokens will not survive a restart"
                );
                Self::in_memory()
            }
        }
    }

    pub fn issue(&self, ttl: u64) -> String {
        let mut raw = [0u8; TOKEN_LEN];
        raw[..8].copy_from_slice(&(now_secs() + ttl).to_be_bytes());
        raw[8..8 + NONCE_LEN].copy_from_slice(&random::<NONCE_LEN>());
        let tag = self.mac(&raw[..8 + NONCE_LEN]).finalize().into_bytes();
        raw[8 + NONCE_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Seconds the token has left, or `None` if it is forged or expired.
    pub fn check(&self, token: &[u8]) -> Option<u64> {
        let text: [u8; TOKEN_TEXT_LEN] = token.try_into().ok()?;
        let expiry = match LAST_VERIFIED.get() {
            Some((id, last, expiry)) if id == self.id && constant_time_eq(&last, &text) => expiry,
            _ => {
                let expiry = self.verify(token)?;
                LAST_VERIFIED.set(Some((self.id, text, expiry)));
                expiry
            }
        };
        expiry.checked_sub(now_secs()).filter(|left| *left > 0)
    }

    /// The expiry a genuine token carries.
    fn verify(&self, token: &[u8]) -> Option<u64> {
        let mut raw = [0u8; TOKEN_LEN];
        match URL_SAFE_NO_PAD.decode_slice(token, &mut raw) {
            Ok(TOKEN_LEN) => {}
            _ => return None,
        }
        let (signed, tag) = raw.split_at(8 + NONCE_LEN);
        self.mac(signed).verify_slice(tag).ok()?;
        Some(u64::from_be_bytes(signed[..8].try_into().expect("8 bytes")))
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac
    }
}

/// Tokens for the container-credentials endpoint (`/ecs/ALIAS`), one per
/// role: an HMAC of the alias under a key made at start-up, so a process
/// handed `alpha`'s token cannot read `beta`. They last as long as the
/// process, as the children of `ersatz exec` do.
pub struct ContainerTokens {
    keyed: Hmac<Sha256>,
}

impl ContainerTokens {
    pub fn new() -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(&random::<32>()).expect("any key length works"),
        }
    }

    pub fn token_for(&self, alias: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(b"ecs/");
        mac.update(alias.as_bytes());
        crate::hex::hex(&mac.finalize().into_bytes())
    }

    /// Whether `presented` is `alias`'s token (compared in constant time).
    pub fn admits(&self, presented: &[u8], alias: &str) -> bool {
        constant_time_eq(presented, self.token_for(alias).as_bytes())
    }
}

impl Default for ContainerTokens {
    fn default() -> Self {
        Self::new()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the OS random generator is available");
    bytes
}

fn load_or_create_key(state_dir: &Path) -> std::io::Result<[u8; 32]> {
    let dir = StateDir::open(state_dir)?;
    let locked = dir.lock()?;
    let replace = match locked.read(KEY_FILE)? {
        Some(existing) => match <[u8; 32]>::try_from(existing) {
            Ok(key) => return Ok(key),
            Err(_) => {
                tracing::warn!(dir = %state_dir.display(), "token key has the wrong size; replacing it");
                true
            }
        },
        None => false,
    };
    let kept = locked.write(KEY_FILE, &random::<32>(), replace)?;
    kept.try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "another process wrote a token key of the wrong size",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_bounds() {
        assert_eq!(parse_ttl(Some(b"1")), Ok(1));
        assert_eq!(parse_ttl(Some(b"21600")), Ok(21600));
        assert_eq!(parse_ttl(Some(b"0")), Err(TtlError::Invalid));
        assert_eq!(parse_ttl(Some(b"21601")), Err(TtlError::Invalid));
        assert_eq!(parse_ttl(Some(b"-5")), Err(TtlError::Invalid));
        assert_eq!(parse_ttl(Some(b"ten")), Err(TtlError::Invalid));
        for sloppy in [
            &b"+5"[..],
            b"05",
            b"5\t",
            b" 5",
            b"",
            b"99999999999999999999",
        ] {
            assert_eq!(
                parse_ttl(Some(sloppy)),
                Err(TtlError::Invalid),
                "{sloppy:?}"
            );
        }
        assert_eq!(parse_ttl(None), Err(TtlError::Missing));
    }

    #[test]
    fn tokens_verify_only_under_their_key_and_unaltered() {
        let sessions = Sessions::with_key([7; 32]);
        let token = sessions.issue(60);
        let left = sessions.check(token.as_bytes()).unwrap();
        assert!((59..=60).contains(&left));
        assert_eq!(Sessions::with_key([8; 32]).check(token.as_bytes()), None);
        let mut tampered = token.into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(sessions.check(&tampered), None);
        assert_eq!(sessions.check(b"not-a-token"), None);
    }

    #[test]
    fn container_tokens_admit_their_own_role_only() {
        let tokens = ContainerTokens::new();
        let alpha = tokens.token_for("alpha");
        assert!(tokens.admits(alpha.as_bytes(), "alpha"));
        assert!(!tokens.admits(alpha.as_bytes(), "beta"));
        assert!(!ContainerTokens::new().admits(alpha.as_bytes(), "alpha"));
        assert_ne!(alpha, tokens.token_for("beta"));
    }

    #[test]
    fn keys_persist_in_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let token = Sessions::load(dir.path()).issue(60);
        assert!(Sessions::load(dir.path()).check(token.as_bytes()).is_some());
    }
}
