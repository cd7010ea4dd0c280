//! `dynamic/instance-identity`: the identity document and its signatures in
//! AWS's three forms, over the exact bytes served at `document`:
//! - `signature`: base64 of an RSA SHA-256 signature
//!   (`openssl dgst -sha256 -verify`);
//! - `pkcs7` and `rsa2048`: detached PKCS #7 SignedData, base64 in 64-column
//!   lines without the PEM armour (`openssl smime -verify -content document`).
//!
//! AWS signs `pkcs7` with a DSA key; ours are all RSA-2048 from one key and
//! self-signed certificate, generated on first use and kept (0600) in the
//! state directory, or loaded from `[identity]`. Signing happens once, on the
//! first request for a signature, so instances nobody verifies pay nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::x509::{X509Name, X509};
use tokio::sync::OnceCell;

use super::{Provider, Request, Resolved};
use crate::state::StateDir;

pub const MOUNT: &str = "dynamic/instance-identity";
const KEY_FILE: &str = "identity.key";
const CERT_FILE: &str = "identity.crt";

/// Where the signing key and certificate come from.
#[derive(Clone)]
pub enum KeySource {
    /// Generated on first use and kept in this directory.
    StateDir(PathBuf),
    /// Given in the configuration.
    Files { key: PathBuf, certificate: PathBuf },
}

pub struct IdentityKey {
    key: PKey<Private>,
    certificate: X509,
}

impl IdentityKey {
    pub fn load(source: &KeySource) -> Result<Self, String> {
        match source {
            KeySource::Files { key, certificate } => {
                let key = read(key).and_then(|pem| {
                    PKey::private_key_from_pem(&pem)
                        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))
                })?;
                let certificate = read(certificate).and_then(|pem| {
                    X509::from_pem(&pem).map_err(|e| {
                        format!("{}: not a PEM certificate: {e}", certificate.display())
                    })
                })?;
                Ok(Self { key, certificate })
            }
            KeySource::StateDir(dir) => Self::load_or_create(dir),
        }
    }

    /// The key and certificate kept in `dir`, made on first use: under the
    /// directory's lock, so two servers starting at once agree on one key.
    fn load_or_create(dir: &Path) -> Result<Self, String> {
        let dir = StateDir::open(dir).map_err(|e| e.to_string())?;
        let locked = dir.lock().map_err(|e| e.to_string())?;
        let read = |name: &str| locked.read(name).map_err(|e| e.to_string());
        if let (Some(key), Some(certificate)) = (read(KEY_FILE)?, read(CERT_FILE)?) {
            match Self::from_pem(&key, &certificate) {
                Ok(kept) => return Ok(kept),
                Err(error) => {
                    tracing::warn!(dir = %dir.path().display(), %error, "identity key is corrupt; replacing it")
                }
            }
        }
        let created =
            Self::generate().map_err(|e| format!("cannot generate the identity key: {e}"))?;
        let key_pem = created
            .key
            .private_key_to_pem_pkcs8()
            .map_err(|e| e.to_string())?;
        let write = |name: &str, pem: &[u8]| {
            locked
                .write(name, pem, true)
                .map_err(|e| format!("cannot keep the identity key: {e}"))
        };
        write(KEY_FILE, &key_pem)?;
        write(CERT_FILE, &created.certificate_pem())?;
        Ok(created)
    }

    fn from_pem(key: &[u8], certificate: &[u8]) -> Result<Self, String> {
        Ok(Self {
            key: PKey::private_key_from_pem(key)
                .map_err(|e| format!("not a PEM private key: {e}"))?,
            certificate: X509::from_pem(certificate)
                .map_err(|e| format!("not a PEM certificate: {e}"))?,
        })
    }

    fn generate() -> Result<Self, openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_text("O", "ersatz")?;
        name.append_entry_by_text("CN", "ersatz instance identity")?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(Self {
            key,
            certificate: builder.build(),
        })
    }

    pub fn certificate_pem(&self) -> Vec<u8> {
        self.certificate.to_pem().expect("a certificate encodes")
    }

    fn sign(&self, document: &[u8]) -> Result<Signed, openssl::error::ErrorStack> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        signer.update(document)?;
        let signature = base64_lines(&signer.sign_to_vec()?, usize::MAX);
        // No signed attributes (no signing time): the same key signs the same
        // document to the same bytes, so replicas and replays agree. No
        // certificate either, as AWS's: a verifier must bring the right one
        // (`-certfile`), so a check with any other certificate fails.
        let flags =
            Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOATTR | Pkcs7Flags::NOCERTS;
        let no_extra_certificates: Stack<X509> = Stack::new()?;
        let pkcs7 = Pkcs7::sign(
            &self.certificate,
            &self.key,
            &no_extra_certificates,
            document,
            flags,
        )?;
        let armoured = base64_lines(&pkcs7.to_der()?, 64);
        Ok(Signed {
            signature: Bytes::from(signature),
            pkcs7: Bytes::from(armoured.clone()),
            rsa2048: Bytes::from(armoured),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn base64_lines(bytes: &[u8], width: usize) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(width.min(text.len().max(1)))
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
        .collect();
    lines.join("\n")
}

struct Signed {
    signature: Bytes,
    pkcs7: Bytes,
    rsa2048: Bytes,
}

/// The signing key, loaded once and shared by every rebuilt provider, so
/// reloads never change it (even one that lives only in memory).
pub struct SigningKey {
    source: KeySource,
    key: OnceCell<Option<Arc<IdentityKey>>>,
}

impl SigningKey {
    /// Loaded (or generated) on the first request for a signature, so
    /// instances nobody verifies pay nothing.
    pub fn lazy(source: KeySource) -> Self {
        Self {
            source,
            key: OnceCell::new(),
        }
    }

    /// A key loaded already (from `[identity]`, checked with the configuration).
    pub fn loaded(source: KeySource, key: IdentityKey) -> Self {
        Self {
            source,
            key: OnceCell::new_with(Some(Some(Arc::new(key)))),
        }
    }

    /// The kept key; without a usable state directory, one in memory for
    /// this process (`ersatz cert` has no such fallback: it would print a
    /// certificate that no server uses).
    fn load_or_make(source: &KeySource) -> Result<IdentityKey, String> {
        IdentityKey::load(source).or_else(|error| match source {
            KeySource::StateDir(_) => {
                tracing::warn!(
                    %error,
                    "cannot keep the identity key in the state directory; using a key in memory: signatures will change at the next start"
                );
                IdentityKey::generate().map_err(|e| format!("cannot generate the identity key: {e}"))
            }
            KeySource::Files { .. } => Err(error),
        })
    }

    async fn get(&self) -> Option<Arc<IdentityKey>> {
        self.key
            .get_or_init(|| async {
                let source = self.source.clone();
                let loaded = off_the_async_threads("identity signatures unavailable", move || {
                    Self::load_or_make(&source)
                });
                loaded.await.map(Arc::new)
            })
            .await
            .clone()
    }
}

/// `work` on a blocking thread: key generation and signing are CPU work.
/// A failure is logged as `what` and gives `None`.
async fn off_the_async_threads<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Option<T> {
    let outcome = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| e.to_string())
        .and_then(|done| done);
    outcome
        .map_err(|error| tracing::error!(%error, "{what}"))
        .ok()
}

pub struct IdentityProvider {
    document: Bytes,
    key: Arc<SigningKey>,
    signed: OnceCell<Option<Arc<Signed>>>,
}

impl IdentityProvider {
    pub fn new(document: impl Into<Bytes>, key: Arc<SigningKey>) -> Self {
        Self {
            document: document.into(),
            key,
            signed: OnceCell::new(),
        }
    }

    async fn signed(&self) -> Option<Arc<Signed>> {
        self.signed
            .get_or_init(|| async {
                let key = self.key.get().await?;
                let document = self.document.clone();
                let signed =
                    off_the_async_threads("cannot sign the identity document", move || {
                        key.sign(&document).map_err(|e| e.to_string())
                    });
                signed.await.map(Arc::new)
            })
            .await
            .clone()
    }
}

#[async_trait]
impl Provider for IdentityProvider {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        let pick: fn(&Signed) -> &Bytes = match request.path {
            "" => return Resolved::Dir(Bytes::from_static(b"document\npkcs7\nrsa2048\nsignature")),
            "document" => return Resolved::text(self.document.clone()),
            "signature" => |s| &s.signature,
            "pkcs7" => |s| &s.pkcs7,
            "rsa2048" => |s| &s.rsa2048,
            _ => return Resolved::NotFound,
        };
        match self.signed().await {
            Some(signed) => Resolved::text(pick(&signed).clone()),
            None => Resolved::Failed,
        }
    }
}
