//! JSON Web Tokens signed RS256 with the identity key, for plugins that
//! mint a cloud's tokens (`host.sign-jwt`), and the key's public half in the
//! two forms clients fetch: a JWKS (RFC 7517) and a map of key id to PEM
//! certificate (Google's `oauth2/v1/certs`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::identity::IdentityKey;

/// The key's id: its RFC 7638 thumbprint, so that it names this key and
/// changes only with it.
pub fn key_id(key: &IdentityKey) -> String {
    let (n, e) = modulus_and_exponent(key);
    // RFC 7638: the required members, in lexicographic order, no spaces.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn modulus_and_exponent(key: &IdentityKey) -> (String, String) {
    let public = key.private_key().to_public_key();
    (
        URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    )
}

/// `{"keys": [JWK]}`.
pub fn jwks(key: &IdentityKey) -> Value {
    let (n, e) = modulus_and_exponent(key);
    json!({ "keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig",
        "kid": key_id(key), "n": n, "e": e,
    }] })
}

/// `{"KID": "-----BEGIN CERTIFICATE-----…"}`.
pub fn pem_map(key: &IdentityKey) -> Value {
    let certificate = String::from_utf8_lossy(&key.certificate_pem()).into_owned();
    let mut map = Map::new();
    map.insert(key_id(key), Value::String(certificate));
    Value::Object(map)
}

/// `claims` (a JSON object, as given) signed RS256, with `kid` in the header.
/// `key_id` must be this key's, when given.
pub fn sign(key: &IdentityKey, claims: &str, wanted: Option<&str>) -> Result<String, String> {
    let kid = key_id(key);
    if let Some(other) = wanted.filter(|&wanted| wanted != kid) {
        return Err(format!(
            "no signing key with id {other:?} (the host has {kid:?})"
        ));
    }
    match serde_json::from_str::<Value>(claims) {
        Ok(Value::Object(_)) => {}
        Ok(_) => return Err("the claims are not a JSON object".into()),
        Err(e) => return Err(format!("the claims are not JSON: {e}")),
    }
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": kid }).to_string();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = pkcs1v15::SigningKey::<Sha256>::new(key.private_key().clone())
        .try_sign(signing_input.as_bytes())
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::signature::Verifier;

    #[test]
    fn signs_what_the_public_key_verifies_and_refuses_what_is_not_an_object() {
        let key = IdentityKey::generate().unwrap();
        let token = sign(&key, r#"{"aud":"a"}"#, None).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let verifier = pkcs1v15::VerifyingKey::<Sha256>::new(key.private_key().to_public_key());
        let signature = pkcs1v15::Signature::try_from(signature.as_slice()).unwrap();
        verifier.verify(input.as_bytes(), &signature).unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], key_id(&key));
        assert_eq!(jwks(&key)["keys"][0]["kid"], key_id(&key));
        assert!(sign(&key, "[1]", None).is_err());
        assert!(sign(&key, "{", None).is_err());
        assert!(sign(&key, "{}", Some("other")).is_err());
        assert!(sign(&key, "{}", Some(&key_id(&key))).is_ok());
    }
}
