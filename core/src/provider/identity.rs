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
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use tokio::sync::OnceCell;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::der::asn1::{
    Any, BitString, GeneralizedTime, Null, OctetString, SetOfVec, UtcTime, Utf8StringRef,
};
use x509_cert::der::oid::db::{rfc4519, rfc5911, rfc5912};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::referenced::OwnedToRef;
use x509_cert::der::{Decode, DecodePem, Encode, EncodePem};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use super::{Provider, Request, Resolved};
use crate::state::StateDir;

pub const MOUNT: &str = "dynamic/instance-identity";
const KEY_FILE: &str = "identity.key";
const CERT_FILE: &str = "identity.crt";
/// A new certificate's lifetime, as `openssl req -days 3650`.
const VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// Where the signing key and certificate come from.
#[derive(Clone)]
pub enum KeySource {
    /// Generated on first use and kept in this directory.
    StateDir(PathBuf),
    /// Given in the configuration.
    Files { key: PathBuf, certificate: PathBuf },
}

/// An RSA key and its certificate. No `Debug`: the key must never reach a log.
pub struct IdentityKey {
    key: RsaPrivateKey,
    certificate: Certificate,
}

impl IdentityKey {
    pub fn load(source: &KeySource) -> Result<Self, String> {
        match source {
            KeySource::Files {
                key: key_file,
                certificate: certificate_file,
            } => {
                let key = read(key_file).and_then(|pem| {
                    private_key_from_pem(&pem).map_err(|e| format!("{}: {e}", key_file.display()))
                })?;
                let certificate = read(certificate_file).and_then(|pem| {
                    certificate_from_pem(&pem)
                        .map_err(|e| format!("{}: {e}", certificate_file.display()))
                })?;
                let loaded = Self { key, certificate };
                // Found now, not at the first signature: the key's public
                // half is also published under the certificate (`keys.pem`).
                loaded.check_pair().map_err(|reason| {
                    format!(
                        "{} and {}: {reason}",
                        key_file.display(),
                        certificate_file.display()
                    )
                })?;
                Ok(loaded)
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
        // PKCS #8 ("PRIVATE KEY"), as OpenSSL wrote it before.
        let key_pem = created
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode the identity key: {e}"))?;
        let write = |name: &str, pem: &[u8]| {
            locked
                .write(name, pem, true)
                .map_err(|e| format!("cannot keep the identity key: {e}"))
        };
        write(KEY_FILE, key_pem.as_bytes())?;
        write(CERT_FILE, &created.certificate_pem())?;
        Ok(created)
    }

    fn from_pem(key: &[u8], certificate: &[u8]) -> Result<Self, String> {
        Ok(Self {
            key: private_key_from_pem(key)?,
            certificate: certificate_from_pem(certificate)?,
        })
    }

    /// A new RSA-2048 key and a self-signed certificate for it (version 3,
    /// no extensions, 127-bit random serial, ten years from now), as
    /// OpenSSL made them before.
    pub(super) fn generate() -> Result<Self, String> {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| format!("RSA key generation failed: {e}"))?;
        let name = ersatz_name()?;
        let mut serial = [0u8; 16];
        getrandom::getrandom(&mut serial)
            .map_err(|e| format!("no randomness for a serial number: {e}"))?;
        serial[0] &= 0x7f;
        let now = SystemTime::now();
        let public_key = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?;
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(&serial).map_err(|e| e.to_string())?,
            signature: sha256_with_rsa(),
            issuer: name.clone(),
            validity: Validity {
                not_before: time(now)?,
                not_after: time(now + VALIDITY)?,
            },
            subject: name,
            subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(public_key.as_bytes())
                .map_err(|e| e.to_string())?,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: None,
        };
        let signed = pkcs1v15::SigningKey::<Sha256>::new(key.clone())
            .try_sign(&tbs.to_der().map_err(|e| e.to_string())?)
            .map_err(|e| format!("cannot sign the certificate: {e}"))?;
        let certificate = Certificate {
            tbs_certificate: tbs,
            signature_algorithm: sha256_with_rsa(),
            signature: BitString::from_bytes(&signed.to_bytes()).map_err(|e| e.to_string())?,
        };
        Ok(Self { key, certificate })
    }

    /// For signing tokens ([`super::jwt`]); never for display.
    pub(super) fn private_key(&self) -> &RsaPrivateKey {
        &self.key
    }

    pub fn certificate_pem(&self) -> Vec<u8> {
        self.certificate
            .to_pem(LineEnding::LF)
            .expect("a certificate encodes")
            .into_bytes()
    }

    /// Whether the certificate is the key's.
    fn check_pair(&self) -> Result<(), String> {
        let certified = RsaPublicKey::try_from(
            self.certificate
                .tbs_certificate
                .subject_public_key_info
                .owned_to_ref(),
        )
        .map_err(|e| format!("the identity certificate has no RSA public key: {e}"))?;
        if certified != self.key.to_public_key() {
            return Err("the identity key does not match its certificate".to_owned());
        }
        Ok(())
    }

    fn sign(&self, document: &[u8]) -> Result<Signed, String> {
        self.check_pair()?;
        let raw = pkcs1v15::SigningKey::<Sha256>::new(self.key.clone())
            .try_sign(document)
            .map_err(|e| e.to_string())?
            .to_vec();
        let signature = base64_lines(&raw, usize::MAX);
        let pkcs7 = pkcs7_detached(&self.certificate, &raw).map_err(|e| e.to_string())?;
        let armoured = base64_lines(&pkcs7, 64);
        Ok(Signed {
            signature: Bytes::from(signature),
            pkcs7: Bytes::from(armoured.clone()),
            rsa2048: Bytes::from(armoured),
        })
    }
}

/// Detached PKCS #7 SignedData over a document whose RSA SHA-256
/// `signature` is given, as OpenSSL's `PKCS7_sign` with DETACHED, BINARY,
/// NOATTR and NOCERTS wrote it. No signed attributes (no signing time): the
/// same key signs the same document to the same bytes, so replicas and
/// replays agree. No certificate either, as AWS's: a verifier must bring the
/// right one (`-certfile`), so a check with any other certificate fails.
fn pkcs7_detached(
    certificate: &Certificate,
    signature: &[u8],
) -> Result<Vec<u8>, x509_cert::der::Error> {
    let sha256 = algorithm(rfc5912::ID_SHA_256)?;
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256.clone(),
        signed_attrs: None,
        signature_algorithm: algorithm(rfc5912::RSA_ENCRYPTION)?,
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256])?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer])?),
    };
    ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    }
    .to_der()
}

/// An algorithm with NULL parameters, as OpenSSL writes RSA and SHA-256.
fn algorithm(oid: ObjectIdentifier) -> Result<AlgorithmIdentifierOwned, x509_cert::der::Error> {
    Ok(AlgorithmIdentifierOwned {
        oid,
        parameters: Some(Any::encode_from(&Null)?),
    })
}

fn sha256_with_rsa() -> AlgorithmIdentifierOwned {
    algorithm(rfc5912::SHA_256_WITH_RSA_ENCRYPTION).expect("NULL encodes")
}

/// `O=ersatz, CN=ersatz instance identity`, in UTF8Strings.
fn ersatz_name() -> Result<Name, String> {
    let rdn = |oid: ObjectIdentifier, value: &str| -> Result<RelativeDistinguishedName, String> {
        let value = Utf8StringRef::new(value).map_err(|e| e.to_string())?;
        let attribute = AttributeTypeAndValue {
            oid,
            value: Any::encode_from(&value).map_err(|e| e.to_string())?,
        };
        SetOfVec::try_from(vec![attribute])
            .map(RelativeDistinguishedName)
            .map_err(|e| e.to_string())
    };
    Ok(RdnSequence(vec![
        rdn(rfc4519::O, "ersatz")?,
        rdn(rfc4519::CN, "ersatz instance identity")?,
    ]))
}

/// UTCTime through 2049, GeneralizedTime after, as RFC 5280 (and OpenSSL) do.
fn time(at: SystemTime) -> Result<Time, String> {
    UtcTime::from_system_time(at)
        .map(Time::UtcTime)
        .or_else(|_| GeneralizedTime::from_system_time(at).map(Time::GeneralTime))
        .map_err(|e| format!("cannot encode the time {at:?}: {e}"))
}

/// The first `-----BEGIN {label}-----` block of `text`, through its END
/// line; text around it is ignored, as OpenSSL ignores it.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    Some(&text[start..stop])
}

/// An unencrypted RSA private key in PEM: PKCS #8 ("PRIVATE KEY", which
/// ersatz writes) or PKCS #1 ("RSA PRIVATE KEY", `openssl genrsa -traditional`).
/// Errors never quote the key.
fn private_key_from_pem(pem: &[u8]) -> Result<RsaPrivateKey, String> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| "not a PEM private key: the file is not text".to_owned())?;
    if let Some(block) = pem_block(text, "PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs8_pem(block)
            .map_err(|e| format!("not an RSA private key (ersatz signs with RSA keys only): {e}"));
    }
    if let Some(block) = pem_block(text, "RSA PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs1_pem(block)
            .map_err(|e| format!("not a usable PEM RSA private key: {e}"));
    }
    Err(if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        "an encrypted private key: give ersatz the key unencrypted (openssl pkey -in KEY -out PLAIN)"
            .to_owned()
    } else if text.contains("-----BEGIN EC PRIVATE KEY-----") {
        "an EC private key: ersatz signs with RSA keys only".to_owned()
    } else {
        "not a PEM private key: no \"PRIVATE KEY\" or \"RSA PRIVATE KEY\" block".to_owned()
    })
}

/// The first certificate of a PEM file.
fn certificate_from_pem(pem: &[u8]) -> Result<Certificate, String> {
    let block = std::str::from_utf8(pem)
        .ok()
        .and_then(|text| pem_block(text, "CERTIFICATE"))
        .ok_or_else(|| "not a PEM certificate: no \"CERTIFICATE\" block".to_owned())?;
    Certificate::from_pem(block).map_err(|e| format!("not a PEM certificate: {e}"))
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
                IdentityKey::generate()
                    .map_err(|e| format!("cannot generate the identity key: {e}"))
            }
            KeySource::Files { .. } => Err(error),
        })
    }

    /// The key, loaded (or made) on first use; `None` (logged) when it
    /// cannot be.
    pub async fn get(&self) -> Option<Arc<IdentityKey>> {
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
pub(crate) async fn off_the_async_threads<T: Send + 'static>(
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
                        key.sign(&document)
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use base64::Engine as _;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    use super::*;

    /// The stock `openssl` CLI (tests/run.sh installs it), in `dir`.
    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (tests/run.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn unarmour(text: &Bytes) -> Vec<u8> {
        let joined: String = String::from_utf8_lossy(text).split('\n').collect();
        base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap()
    }

    #[test]
    fn a_generated_key_is_kept_in_pem_and_certified_by_itself() {
        let started = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let made = IdentityKey::load(&KeySource::StateDir(dir.path().into())).unwrap();
        eprintln!(
            "RSA-2048 key and certificate made in {:?}",
            started.elapsed()
        );
        let key_pem = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let kept = IdentityKey::load(&KeySource::StateDir(dir.path().into())).unwrap();
        assert!(kept.key == made.key, "the kept key is loaded again");
        assert_eq!(kept.certificate_pem(), made.certificate_pem());

        let tbs = &made.certificate.tbs_certificate;
        assert_eq!(tbs.version, Version::V3);
        assert_eq!(tbs.issuer, tbs.subject);
        assert_eq!(
            tbs.subject.to_string(),
            "CN=ersatz instance identity,O=ersatz"
        );
        assert!(tbs.extensions.is_none());
        let serial = tbs.serial_number.as_bytes();
        assert!(serial.len() <= 16 && serial[0] & 0x80 == 0, "{serial:?}");
        let (from, to) = (
            tbs.validity.not_before.to_system_time(),
            tbs.validity.not_after.to_system_time(),
        );
        assert_eq!(to.duration_since(from).unwrap(), VALIDITY);
        assert!(matches!(tbs.validity.not_after, Time::UtcTime(_)));
        let signature = Signature::try_from(made.certificate.signature.raw_bytes()).unwrap();
        VerifyingKey::<Sha256>::new(made.key.to_public_key())
            .verify(&tbs.to_der().unwrap(), &signature)
            .expect("self-signed");
    }

    /// Same key, same document: the same bytes as OpenSSL's `PKCS7_sign`
    /// (which ersatz used before) and `openssl dgst -sign`, from a PKCS #1
    /// key and from the same key in PKCS #8.
    #[test]
    fn signatures_are_byte_for_byte_those_of_openssl() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("document"), b"{\n  \"instanceId\" : \"i-0123\"\n}").unwrap();
        openssl(d, &["genrsa", "-traditional", "-out", "pkcs1.pem", "2048"]);
        openssl(d, &["pkey", "-in", "pkcs1.pem", "-out", "pkcs8.pem"]);
        openssl(
            d,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "pkcs1.pem",
                "-subj",
                "/O=elsewhere/CN=given",
                "-days",
                "1",
                "-out",
                "cert.pem",
            ],
        );
        openssl(
            d,
            &[
                "dgst",
                "-sha256",
                "-sign",
                "pkcs1.pem",
                "-out",
                "signature",
                "document",
            ],
        );
        openssl(
            d,
            &[
                "smime",
                "-sign",
                "-binary",
                "-noattr",
                "-nocerts",
                "-in",
                "document",
                "-signer",
                "cert.pem",
                "-inkey",
                "pkcs1.pem",
                "-outform",
                "DER",
                "-out",
                "pkcs7",
            ],
        );
        let document = std::fs::read(d.join("document")).unwrap();
        let pkcs7 = std::fs::read(d.join("pkcs7")).unwrap();
        let signature = std::fs::read(d.join("signature")).unwrap();
        for key in ["pkcs1.pem", "pkcs8.pem"] {
            let source = KeySource::Files {
                key: d.join(key),
                certificate: d.join("cert.pem"),
            };
            let signed = IdentityKey::load(&source).unwrap().sign(&document).unwrap();
            assert_eq!(unarmour(&signed.signature), signature, "{key}");
            assert_eq!(unarmour(&signed.pkcs7), pkcs7, "{key}");
            assert_eq!(signed.rsa2048, signed.pkcs7);
            assert!(signed.pkcs7.split(|b| *b == b'\n').all(|l| l.len() <= 64));
        }
    }

    #[test]
    fn keys_it_cannot_use_are_refused_in_a_sentence_that_quotes_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(d, &["genrsa", "-out", "rsa.pem", "2048"]);
        openssl(
            d,
            &[
                "req", "-new", "-x509", "-key", "rsa.pem", "-subj", "/CN=a", "-out", "rsa.crt",
            ],
        );
        openssl(d, &["genrsa", "-out", "other.pem", "2048"]);
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec.pem",
            ],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec8.pem",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-in",
                "rsa.pem",
                "-passout",
                "pass:x",
                "-out",
                "encrypted.pem",
            ],
        );
        std::fs::write(d.join("text.pem"), b"hello\n").unwrap();
        let load = |key: &str, certificate: &str| {
            IdentityKey::load(&KeySource::Files {
                key: d.join(key),
                certificate: d.join(certificate),
            })
        };
        for (key, says) in [
            ("ec.pem", "RSA keys only"),
            ("ec8.pem", "RSA keys only"),
            ("encrypted.pem", "encrypted"),
            ("text.pem", "not a PEM private key"),
            ("missing.pem", "cannot read"),
        ] {
            let error = load(key, "rsa.crt").err().expect(key);
            assert!(error.contains(says), "{key}: {error}");
            assert!(error.contains(key), "{key}: {error}");
            let pem = std::fs::read_to_string(d.join(key)).unwrap_or_default();
            for line in pem
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 8)
            {
                assert!(!error.contains(line), "{key}: {error}");
            }
        }
        let error = load("rsa.pem", "text.pem").err().unwrap();
        assert!(error.contains("not a PEM certificate"), "{error}");
        // A key and a certificate that are not a pair: refused when loaded,
        // naming both files.
        let error = load("other.pem", "rsa.crt").err().unwrap();
        assert!(
            error.contains("the identity key does not match its certificate"),
            "{error}"
        );
        assert!(
            error.contains("other.pem") && error.contains("rsa.crt"),
            "{error}"
        );
    }
}
