//! JSON Web Signatures for SMART Backend Services: the client assertion a Bulk Data client
//! signs with its private key (RS384 or ES384, from a JWK or a PEM file), and the
//! verification the test server does with the registered public key.
//!
//! The cryptography is aws-lc-rs (the workspace's one provider); this module only frames
//! it as JWS compact serialisation (RFC 7515) with the claims RFC 7523 and the SMART
//! Backend Services specification require. Key material is never formatted: `Debug` shows
//! the algorithm and key id only, and errors never carry key bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_SHA384, RsaKeyPair,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// How long a client assertion is valid: the specification allows at most five minutes;
/// four leave a margin for clocks that disagree a little.
pub const ASSERTION_LIFETIME_SECS: u64 = 240;

/// The two algorithms SMART Backend Services clients must support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs384,
    Es384,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs384 => "RS384",
            Alg::Es384 => "ES384",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RS384" => Some(Alg::Rs384),
            "ES384" => Some(Alg::Es384),
            _ => None,
        }
    }

    fn kty(self) -> &'static str {
        match self {
            Alg::Rs384 => "RSA",
            Alg::Es384 => "EC",
        }
    }
}

/// A private key could not be used. The messages name the problem, never the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key is neither a JWK (JSON) nor a PEM private key")]
    UnknownFormat,
    #[error("the JWK is not usable: {0}")]
    Jwk(String),
    #[error("the PEM key is not usable: {0}")]
    Pem(String),
    #[error("a key id (kid) is needed: the JWK has none; pass --kid with a PEM key")]
    NoKid,
}

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A client's private signing key with its key id.
pub struct SigningKey {
    kid: String,
    inner: Inner,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg().name()).field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64url(field: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map(Zeroizing::new).map_err(|_| KeyError::Jwk(format!("\"{field}\" is not base64url")))
}

fn jwk_field(jwk: &Value, field: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let text = jwk.get(field).and_then(Value::as_str).ok_or_else(|| KeyError::Jwk(format!("\"{field}\" is missing")))?;
    unb64url(field, text)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl SigningKey {
    /// A key from the text of a secret: a private JWK (or a JWKS holding exactly one
    /// private key), or a PEM private key (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC
    /// PRIVATE KEY`) with `kid` given separately. `kid` overrides the JWK's own.
    pub fn from_text(text: &str, kid: Option<&str>) -> Result<Self, KeyError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            let value: Value = serde_json::from_str(trimmed).map_err(|_| KeyError::Jwk("not valid JSON".to_owned()))?;
            let jwk = match value.get("keys").and_then(Value::as_array) {
                Some(keys) => {
                    let private: Vec<&Value> = keys.iter().filter(|k| k.get("d").is_some()).collect();
                    match private.as_slice() {
                        [one] => (*one).clone(),
                        [] => return Err(KeyError::Jwk("the JWKS holds no private key".to_owned())),
                        _ => return Err(KeyError::Jwk("the JWKS holds more than one private key: give only the one to sign with".to_owned())),
                    }
                }
                None => value,
            };
            let mut key = Self::from_jwk(&jwk)?;
            if let Some(kid) = kid {
                key.kid = kid.to_owned();
            }
            Ok(key)
        } else if trimmed.starts_with("-----BEGIN") {
            Self::from_pem(trimmed, kid.ok_or(KeyError::NoKid)?)
        } else {
            Err(KeyError::UnknownFormat)
        }
    }

    /// A private JWK: RSA with `n`, `e`, `d`, `p`, `q`, `dp`, `dq`, `qi`, or EC P-384 with
    /// `d`, `x`, `y`.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let kid = jwk.get("kid").and_then(Value::as_str).ok_or(KeyError::NoKid)?.to_owned();
        if let Some(alg) = jwk.get("alg").and_then(Value::as_str)
            && Alg::parse(alg).is_none()
        {
            return Err(KeyError::Jwk(format!("\"alg\" is {alg:?}: SMART Backend Services signs with RS384 or ES384")));
        }
        let inner = match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                if jwk.get("d").is_none() {
                    return Err(KeyError::Jwk("it is a public key (no \"d\")".to_owned()));
                }
                let (n, e) = (jwk_field(jwk, "n")?, jwk_field(jwk, "e")?);
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents { n: strip_leading_zeros(&n).to_vec(), e: strip_leading_zeros(&e).to_vec() },
                    d: jwk_field(jwk, "d")?,
                    p: jwk_field(jwk, "p")?,
                    q: jwk_field(jwk, "q")?,
                    dP: jwk_field(jwk, "dp")?,
                    dQ: jwk_field(jwk, "dq")?,
                    qInv: jwk_field(jwk, "qi")?,
                };
                let key = RsaKeyPair::from_components(&components).map_err(|_| KeyError::Jwk("the RSA components do not form a valid key".to_owned()))?;
                check_rsa_size(&key).map_err(KeyError::Jwk)?;
                Inner::Rsa(key)
            }
            Some("EC") => {
                match jwk.get("crv").and_then(Value::as_str) {
                    Some("P-384") => {}
                    other => return Err(KeyError::Jwk(format!("curve {other:?}: ES384 needs P-384"))),
                }
                let d = jwk_field(jwk, "d")?;
                let (x, y) = (jwk_field(jwk, "x")?, jwk_field(jwk, "y")?);
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let key = EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P384_SHA384_FIXED_SIGNING, &d, &point)
                    .map_err(|_| KeyError::Jwk("the EC components do not form a valid P-384 key".to_owned()))?;
                Inner::Ec(key)
            }
            other => return Err(KeyError::Jwk(format!("\"kty\" is {other:?}: expected \"RSA\" or \"EC\""))),
        };
        Ok(Self { kid, inner })
    }

    /// A PEM private key. Encrypted keys are refused (the secret store protects the key).
    pub fn from_pem(pem: &str, kid: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_decode(pem)?;
        let inner = match label.as_str() {
            "PRIVATE KEY" => match RsaKeyPair::from_pkcs8(&der) {
                Ok(key) => {
                    check_rsa_size(&key).map_err(KeyError::Pem)?;
                    Inner::Rsa(key)
                }
                Err(_) => Inner::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &der)
                        .map_err(|_| KeyError::Pem("neither an RSA key of 2048 bits or more nor an EC P-384 key".to_owned()))?,
                ),
            },
            "RSA PRIVATE KEY" => {
                let key = RsaKeyPair::from_der(&der).map_err(|_| KeyError::Pem("not a valid PKCS#1 RSA key".to_owned()))?;
                check_rsa_size(&key).map_err(KeyError::Pem)?;
                Inner::Rsa(key)
            }
            "EC PRIVATE KEY" => Inner::Ec(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, &der).map_err(|_| KeyError::Pem("not a valid EC P-384 key".to_owned()))?,
            ),
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Pem("the key is encrypted: store it unencrypted in the secret store".to_owned())),
            other => return Err(KeyError::Pem(format!("\"{other}\" is not a private key"))),
        };
        Ok(Self { kid: kid.to_owned(), inner })
    }

    /// A new random key (tests, and `pixl fhir keygen`).
    pub fn generate(alg: Alg, kid: &str) -> Self {
        let inner = match alg {
            Alg::Rs384 => Inner::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation")),
            Alg::Es384 => Inner::Ec(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).expect("EC key generation")),
        };
        Self { kid: kid.to_owned(), inner }
    }

    /// The key as an unencrypted PKCS#8 PEM (`PRIVATE KEY`).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let der: Zeroizing<Vec<u8>> = Zeroizing::new(match &self.inner {
            Inner::Rsa(key) => AsDer::<Pkcs8V1Der>::as_der(key).expect("PKCS#8 encoding").as_ref().to_vec(),
            Inner::Ec(key) => key.to_pkcs8v1().expect("PKCS#8 encoding").as_ref().to_vec(),
        });
        let body = Zeroizing::new(STANDARD.encode(&*der));
        let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    pub fn alg(&self) -> Alg {
        match self.inner {
            Inner::Rsa(_) => Alg::Rs384,
            Inner::Ec(_) => Alg::Es384,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK, to register with the FHIR server (a JWKS of one key).
    pub fn public_jwk(&self) -> Value {
        match &self.inner {
            Inner::Rsa(key) => {
                let (n, e) = rsa_public_components(key.public_key().as_ref()).expect("aws-lc-rs writes PKCS#1 public keys");
                json!({"kty": "RSA", "alg": "RS384", "use": "sig", "kid": self.kid, "key_ops": ["verify"], "n": b64url(n), "e": b64url(e)})
            }
            Inner::Ec(key) => {
                let point = key.public_key().as_ref();
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                json!({"kty": "EC", "alg": "ES384", "use": "sig", "kid": self.kid, "key_ops": ["verify"], "crv": "P-384", "x": b64url(x), "y": b64url(y)})
            }
        }
    }

    /// A JWS compact serialisation of `claims` signed with this key.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg().name(), "kid": self.kid, "typ": "JWT"});
        let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let rng = SystemRandom::new();
        let signature = match &self.inner {
            Inner::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA384, &rng, signing_input.as_bytes(), &mut signature).expect("RSA signing");
                signature
            }
            Inner::Ec(key) => key.sign(&rng, signing_input.as_bytes()).expect("ECDSA signing").as_ref().to_vec(),
        };
        format!("{signing_input}.{}", b64url(&signature))
    }

    /// A client assertion for the token endpoint `aud`: `iss` = `sub` = the client id, a
    /// unique `jti`, `exp` four minutes ahead.
    pub fn client_assertion(&self, client_id: &str, aud: &str) -> String {
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).expect("system randomness");
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "exp": now_secs() + ASSERTION_LIFETIME_SECS,
            "jti": b64url(&nonce),
        });
        self.sign(&claims)
    }
}

fn check_rsa_size(key: &RsaKeyPair) -> Result<(), String> {
    if key.public_modulus_len() < 256 { Err("RSA keys shorter than 2048 bits are refused".to_owned()) } else { Ok(()) }
}

/// The label and DER bytes of the first PEM block.
fn pem_decode(pem: &str) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    let mut lines = pem.lines().map(str::trim);
    let begin = lines.next().unwrap_or_default();
    let label =
        begin.strip_prefix("-----BEGIN ").and_then(|rest| rest.strip_suffix("-----")).ok_or_else(|| KeyError::Pem("no BEGIN line".to_owned()))?.to_owned();
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers (Proc-Type: 4,ENCRYPTED) mean an encrypted legacy key.
            return Err(KeyError::Pem("the key is encrypted: store it unencrypted in the secret store".to_owned()));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(KeyError::Pem(format!("no \"{end}\" line")));
    }
    let der = STANDARD.decode(body.as_bytes()).map(Zeroizing::new).map_err(|_| KeyError::Pem("the body is not base64".to_owned()))?;
    Ok((label, der))
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey` (SEQUENCE of two INTEGERs), without sign bytes.
fn rsa_public_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&first, rest) = input.split_first()?;
        if first != tag {
            return None;
        }
        let (&len0, rest) = rest.split_first()?;
        let (len, rest) = if len0 < 0x80 {
            (len0 as usize, rest)
        } else {
            let count = (len0 & 0x7f) as usize;
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(count);
            (len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize), rest)
        };
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let (sequence, _) = element(der, 0x30)?;
    let (n, rest) = element(sequence, 0x02)?;
    let (e, _) = element(rest, 0x02)?;
    Some((strip_leading_zeros(n), strip_leading_zeros(e)))
}

/// Why a JWS was not accepted (the test server's token endpoint).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a JWS compact serialisation")]
    Malformed,
    #[error("algorithm {0:?} is not RS384 or ES384")]
    Algorithm(String),
    #[error("no registered key has kid {0:?} and the algorithm's key type")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
}

/// Verifies a JWS against a client's registered public keys (a JWKS `keys` array); returns
/// the header and the claims. The key is chosen by `kid` and must have the key type of
/// the header's `alg`; `none`, HMAC and every other algorithm are refused.
pub fn verify(jws: &str, keys: &[Value]) -> Result<(Value, Value), VerifyError> {
    let mut parts = jws.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::Malformed);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| VerifyError::Malformed);
    let header: Value = serde_json::from_slice(&decode(header_b64)?).map_err(|_| VerifyError::Malformed)?;
    let claims: Value = serde_json::from_slice(&decode(claims_b64)?).map_err(|_| VerifyError::Malformed)?;
    let signature = decode(signature_b64)?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    let alg = Alg::parse(alg_name).ok_or_else(|| VerifyError::Algorithm(alg_name.to_owned()))?;
    let kid = header.get("kid").and_then(Value::as_str).unwrap_or_default();
    let candidates: Vec<&Value> =
        keys.iter().filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid) && k.get("kty").and_then(Value::as_str) == Some(alg.kty())).collect();
    let [key] = candidates.as_slice() else {
        return Err(VerifyError::UnknownKey(kid.to_owned()));
    };
    let field = |name: &str| key.get(name).and_then(Value::as_str).and_then(|t| URL_SAFE_NO_PAD.decode(t).ok()).ok_or(VerifyError::UnknownKey(kid.to_owned()));
    let message = format!("{header_b64}.{claims_b64}");
    let verified = match alg {
        Alg::Rs384 => {
            let (n, e) = (field("n")?, field("e")?);
            let public = PublicKeyComponents { n: strip_leading_zeros(&n), e: strip_leading_zeros(&e) };
            public.verify(&RSA_PKCS1_2048_8192_SHA384, message.as_bytes(), &signature).is_ok()
        }
        Alg::Es384 => {
            let mut point = vec![4u8];
            point.extend_from_slice(&field("x")?);
            point.extend_from_slice(&field("y")?);
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point).verify(message.as_bytes(), &signature).is_ok()
        }
    };
    if verified { Ok((header, claims)) } else { Err(VerifyError::Signature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims_of(jws: &str) -> (Value, Value) {
        let parts: Vec<&str> = jws.split('.').collect();
        let decode = |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        (decode(parts[0]), decode(parts[1]))
    }

    #[test]
    fn signs_and_verifies_both_algorithms_from_pem_and_public_jwk() {
        for alg in [Alg::Rs384, Alg::Es384] {
            let generated = SigningKey::generate(alg, "k1");
            let loaded = SigningKey::from_text(&generated.to_pkcs8_pem(), Some("k1")).unwrap();
            assert_eq!(loaded.alg(), alg);
            let jws = loaded.client_assertion("client-a", "https://example.org/token");
            let (header, claims) = verify(&jws, &[generated.public_jwk()]).unwrap();
            assert_eq!(header, json!({"alg": alg.name(), "kid": "k1", "typ": "JWT"}));
            assert_eq!(claims["iss"], "client-a");
            assert_eq!(claims["sub"], "client-a");
            assert_eq!(claims["aud"], "https://example.org/token");
            let exp = claims["exp"].as_u64().unwrap();
            assert!(exp > now_secs() && exp <= now_secs() + 300, "exp within five minutes");
            // The other algorithm's key with the same kid does not verify it.
            let other = SigningKey::generate(if alg == Alg::Rs384 { Alg::Es384 } else { Alg::Rs384 }, "k1");
            assert_eq!(verify(&jws, &[other.public_jwk()]), Err(VerifyError::UnknownKey("k1".into())));
            // A key of the same type but different material fails on the signature.
            let same_type = SigningKey::generate(alg, "k1");
            assert_eq!(verify(&jws, &[same_type.public_jwk()]), Err(VerifyError::Signature));
        }
    }

    #[test]
    fn jti_is_unique_per_assertion() {
        let key = SigningKey::generate(Alg::Es384, "k");
        let jtis: std::collections::HashSet<String> =
            (0..1000).map(|_| claims_of(&key.client_assertion("c", "a")).1["jti"].as_str().unwrap().to_owned()).collect();
        assert_eq!(jtis.len(), 1000);
    }

    #[test]
    fn tampered_and_unsigned_tokens_are_refused() {
        let key = SigningKey::generate(Alg::Es384, "k");
        let jws = key.client_assertion("c", "a");
        let parts: Vec<&str> = jws.split('.').collect();
        let forged_claims = b64url(json!({"iss": "c", "sub": "c", "aud": "a", "exp": 9_999_999_999u64, "jti": "x"}).to_string().as_bytes());
        let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(verify(&tampered, &[key.public_jwk()]), Err(VerifyError::Signature));
        let none = format!("{}.{}.", b64url(br#"{"alg":"none","kid":"k"}"#), parts[1]);
        assert_eq!(verify(&none, &[key.public_jwk()]), Err(VerifyError::Algorithm("none".into())));
        let hmac = format!("{}.{}.{}", b64url(br#"{"alg":"HS384","kid":"k"}"#), parts[1], parts[2]);
        assert_eq!(verify(&hmac, &[key.public_jwk()]), Err(VerifyError::Algorithm("HS384".into())));
        assert_eq!(verify("a.b", &[key.public_jwk()]), Err(VerifyError::Malformed));
    }

    #[test]
    fn key_errors_are_clear_and_carry_no_key_material() {
        assert_eq!(SigningKey::from_text("hello", None).unwrap_err(), KeyError::UnknownFormat);
        let pem = SigningKey::generate(Alg::Es384, "k").to_pkcs8_pem();
        assert_eq!(SigningKey::from_text(&pem, None).unwrap_err(), KeyError::NoKid);
        let public = SigningKey::generate(Alg::Rs384, "k").public_jwk();
        assert!(matches!(SigningKey::from_jwk(&public), Err(KeyError::Jwk(m)) if m.contains("public key")));
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(SigningKey::from_text(encrypted, Some("k")), Err(KeyError::Pem(m)) if m.contains("encrypted")));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(SigningKey::from_text(legacy, Some("k")), Err(KeyError::Pem(m)) if m.contains("encrypted")));
        let truncated: String = pem.lines().take(3).collect::<Vec<_>>().join("\n");
        let error = SigningKey::from_text(&truncated, Some("k")).unwrap_err().to_string();
        assert!(!error.contains(pem.lines().nth(1).unwrap()), "no key text in errors");
        let key = SigningKey::generate(Alg::Rs384, "k");
        assert_eq!(format!("{key:?}"), "SigningKey { alg: \"RS384\", kid: \"k\", .. }");
        let hs = json!({"kty": "oct", "kid": "k", "k": "AAAA"});
        assert!(matches!(SigningKey::from_jwk(&hs), Err(KeyError::Jwk(m)) if m.contains("kty")));
    }
}
