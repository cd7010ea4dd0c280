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
            KeySource::StateDir(dir) => {
                let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
                if key_path.is_file() && cert_path.is_file() {
                    return Self::load(&KeySource::Files {
                        key: key_path,
                        certificate: cert_path,
                    });
                }
                let created = Self::generate()
                    .map_err(|e| format!("cannot generate the identity key: {e}"))?;
                created.save(dir, &key_path, &cert_path).map_err(|e| {
                    format!("cannot keep the identity key in {}: {e}", dir.display())
                })?;
                Ok(created)
            }
        }
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

    fn save(&self, dir: &Path, key_path: &Path, cert_path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        crate::state::create_private_dir(dir)?;
        let key_pem = self
            .key
            .private_key_to_pem_pkcs8()
            .map_err(std::io::Error::other)?;
        crate::state::create_private_file(key_path)?.write_all(&key_pem)?;
        crate::state::create_private_file(cert_path)?.write_all(&self.certificate_pem())
    }

    pub fn certificate_pem(&self) -> Vec<u8> {
        self.certificate.to_pem().expect("a certificate encodes")
    }

    fn sign(&self, document: &[u8]) -> Result<Signed, openssl::error::ErrorStack> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        signer.update(document)?;
        let signature = base64_lines(&signer.sign_to_vec()?, usize::MAX);
        // No signed attributes (no signing time): the same key signs the same
        // document to the same bytes, so replicas and replays agree.
        let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOATTR;
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

pub struct IdentityProvider {
    document: Bytes,
    keys: KeySource,
    signed: OnceCell<Option<Arc<Signed>>>,
}

impl IdentityProvider {
    pub fn new(document: impl Into<Bytes>, keys: KeySource) -> Self {
        Self {
            document: document.into(),
            keys,
            signed: OnceCell::new(),
        }
    }

    async fn signed(&self) -> Option<Arc<Signed>> {
        self.signed
            .get_or_init(|| async {
                let (keys, document) = (self.keys.clone(), self.document.clone());
                // Key generation and signing are CPU work: off the async threads.
                let signed = tokio::task::spawn_blocking(move || {
                    let key = IdentityKey::load(&keys)?;
                    key.sign(&document)
                        .map_err(|e| format!("cannot sign the identity document: {e}"))
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|signed| signed);
                match signed {
                    Ok(signed) => Some(Arc::new(signed)),
                    Err(error) => {
                        tracing::error!(%error, "identity signatures unavailable");
                        None
                    }
                }
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
