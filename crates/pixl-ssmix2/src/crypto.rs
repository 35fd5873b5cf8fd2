//! Output files encrypted for a recipient in ssmixtools' format, so that its recipients'
//! tools (Python pycryptodome) open them: a fresh 16-byte AES key wrapped with RSA-OAEP
//! (SHA-1, MGF1-SHA-1, no label) ‖ the 16-byte nonce ‖ the 16-byte tag ‖ the AES-128-EAX
//! ciphertext of the whole file.
//!
//! RSA is aws-lc-rs (the workspace's one provider); AES-128-EAX is RustCrypto's `eax`
//! over `aes`, since aws-lc-rs has no EAX. No cryptography is written here.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use eax::aead::array::Array;
use eax::aead::{Aead, KeyInit};
use zeroize::Zeroizing;

type Aes128Eax = eax::Eax<aes::Aes128>;

const KEY_BYTES: usize = 16;
const NONCE_BYTES: usize = 16;
const TAG_BYTES: usize = 16;

/// A key could not be used, or a file could not be opened. No key material or content in
/// the messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the recipient key is not an OpenSSH ssh-rsa public key or a PEM RSA public key: {0}")]
    PublicKey(String),
    #[error("the private key is not usable: {0}")]
    PrivateKey(String),
    #[error("the file is not encrypted for this key, or it was changed")]
    Open,
}

/// A recipient's RSA public key.
#[derive(Debug)]
pub struct RecipientKey {
    key: OaepPublicEncryptingKey,
}

/// The label and bytes of a PEM block.
fn pem_block(text: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let mut lines = text.lines().map(str::trim).skip_while(|l| !l.starts_with("-----BEGIN "));
    let label = lines.next()?.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?.to_owned();
    let end = format!("-----END {label}-----");
    let body: String = lines.by_ref().take_while(|l| *l != end).collect();
    let bytes = STANDARD.decode(body.as_bytes()).ok()?;
    Some((label, Zeroizing::new(bytes)))
}

/// (e, n) of an OpenSSH `ssh-rsa AAAA... comment` line: the wire blob is string
/// "ssh-rsa", mpint e, mpint n (RFC 4253 §6.6).
fn ssh_rsa_components(line: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut words = line.split_whitespace();
    if words.next()? != "ssh-rsa" {
        return None;
    }
    let blob = STANDARD.decode(words.next()?).ok()?;
    let mut rest: &[u8] = &blob;
    let mut next = || -> Option<Vec<u8>> {
        let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let value = rest.get(4..4 + length)?.to_vec();
        rest = &rest[4 + length..];
        Some(value)
    };
    if next()? != b"ssh-rsa" {
        return None;
    }
    let strip = |v: Vec<u8>| v.into_iter().skip_while(|&b| b == 0).collect::<Vec<u8>>();
    let e = strip(next()?);
    let n = strip(next()?);
    Some((e, n))
}

impl RecipientKey {
    /// From the text of a public key file: `ssh-rsa ...` (OpenSSH), or PEM `PUBLIC KEY`
    /// (SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let public = if text.trim_start().starts_with("ssh-rsa") {
            let (e, n) = ssh_rsa_components(text.trim()).ok_or_else(|| CryptoError::PublicKey("the ssh-rsa line is malformed".to_owned()))?;
            let components = PublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
            TryInto::<PublicEncryptingKey>::try_into(components).map_err(|_| CryptoError::PublicKey("not a usable RSA key (2048 to 8192 bits)".to_owned()))?
        } else {
            let (label, der) = pem_block(text).ok_or_else(|| CryptoError::PublicKey("no PEM block".to_owned()))?;
            match label.as_str() {
                "PUBLIC KEY" => PublicEncryptingKey::from_der(&der),
                "RSA PUBLIC KEY" => {
                    let pkcs1 = || CryptoError::PublicKey("not a valid PKCS#1 RSA public key".to_owned());
                    let key = aws_lc_rs::rsa::PublicKey::from_der(&der).map_err(|_| pkcs1())?;
                    let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&key).map_err(|_| pkcs1())?;
                    PublicEncryptingKey::from_der(spki.as_ref())
                }
                other => return Err(CryptoError::PublicKey(format!("a PEM {other:?} block"))),
            }
            .map_err(|_| CryptoError::PublicKey("not a usable RSA key (2048 to 8192 bits)".to_owned()))?
        };
        let key = OaepPublicEncryptingKey::new(public).map_err(|_| CryptoError::PublicKey("not usable for RSA-OAEP".to_owned()))?;
        Ok(Self { key })
    }

    /// `plaintext` encrypted for this recipient, in ssmixtools' layout.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        let mut nonce = [0u8; NONCE_BYTES];
        aws_lc_rs::rand::fill(&mut *key).expect("system randomness");
        aws_lc_rs::rand::fill(&mut nonce).expect("system randomness");
        let mut wrapped = vec![0u8; self.key.ciphertext_size()];
        let wrapped_len = self.key.encrypt(&OAEP_SHA1_MGF1SHA1, &*key, &mut wrapped, None).expect("a 16-byte key fits any RSA-OAEP key").len();
        wrapped.truncate(wrapped_len);
        let cipher = Aes128Eax::new(&Array::from(*key));
        let sealed = cipher.encrypt(&Array::from(nonce), plaintext).expect("EAX encryption");
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_BYTES);
        let mut out = Vec::with_capacity(wrapped.len() + NONCE_BYTES + TAG_BYTES + ciphertext.len());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(tag);
        out.extend_from_slice(ciphertext);
        out
    }
}

/// A recipient's RSA private key, for `pixl decrypt`.
#[derive(Debug)]
pub struct DecryptionKey {
    key: OaepPrivateDecryptingKey,
}

impl DecryptionKey {
    /// From PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1). OpenSSH's own
    /// private key format is refused with the command that converts it.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let (label, der) = pem_block(text).ok_or_else(|| CryptoError::PrivateKey("no PEM block".to_owned()))?;
        let private = match label.as_str() {
            "PRIVATE KEY" => PrivateDecryptingKey::from_pkcs8(&der),
            "RSA PRIVATE KEY" => {
                let pair = aws_lc_rs::rsa::KeyPair::from_der(&der).map_err(|_| CryptoError::PrivateKey("not a valid PKCS#1 RSA key".to_owned()))?;
                let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair).map_err(|_| CryptoError::PrivateKey("not a valid PKCS#1 RSA key".to_owned()))?;
                PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref())
            }
            "OPENSSH PRIVATE KEY" => {
                return Err(CryptoError::PrivateKey("OpenSSH's own format: convert a copy with `ssh-keygen -p -m PKCS8 -f KEY`".to_owned()));
            }
            other => return Err(CryptoError::PrivateKey(format!("a PEM {other:?} block"))),
        }
        .map_err(|_| CryptoError::PrivateKey("not a usable RSA key (2048 to 8192 bits)".to_owned()))?;
        let key = OaepPrivateDecryptingKey::new(private).map_err(|_| CryptoError::PrivateKey("not usable for RSA-OAEP".to_owned()))?;
        Ok(Self { key })
    }

    /// The plaintext of a file sealed for this key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let wrapped_len = self.key.key_size_bytes();
        if sealed.len() < wrapped_len + NONCE_BYTES + TAG_BYTES {
            return Err(CryptoError::Open);
        }
        let (wrapped, rest) = sealed.split_at(wrapped_len);
        let (nonce, rest) = rest.split_at(NONCE_BYTES);
        let (tag, ciphertext) = rest.split_at(TAG_BYTES);
        let mut key = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let key_len = self.key.decrypt(&OAEP_SHA1_MGF1SHA1, wrapped, &mut key, None).map_err(|_| CryptoError::Open)?.len();
        let key: [u8; KEY_BYTES] = key[..key_len].try_into().map_err(|_| CryptoError::Open)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| CryptoError::Open)?;
        let mut joined = Vec::with_capacity(ciphertext.len() + TAG_BYTES);
        joined.extend_from_slice(ciphertext);
        joined.extend_from_slice(tag);
        Aes128Eax::new(&Array::from(key)).decrypt(&Array::from(nonce), joined.as_slice()).map_err(|_| CryptoError::Open)
    }
}

/// A new RSA-2048 key pair as PEM: the private key (PKCS#8) and the public key (SPKI), for
/// tests and for trying encrypted output.
pub fn generate_key_pair() -> (Zeroizing<String>, String) {
    let private = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key generation");
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&private).expect("PKCS#8 encoding");
    let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&private.public_key()).expect("SPKI encoding");
    let pem = |label: &str, der: &[u8]| format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der));
    (Zeroizing::new(pem("PRIVATE KEY", pkcs8.as_ref())), pem("PUBLIC KEY", spki.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_open_with_the_key_only_and_unchanged_only() {
        let (private, public) = generate_key_pair();
        let recipient = RecipientKey::parse(&public).unwrap();
        let key = DecryptionKey::parse(&private).unwrap();
        let plaintext = "patient_id,sex\n1UT,M\n".as_bytes();
        let sealed = recipient.seal(plaintext);
        assert_eq!(sealed.len(), 256 + 16 + 16 + plaintext.len(), "wrapped key ‖ nonce ‖ tag ‖ ciphertext");
        assert_eq!(key.open(&sealed).unwrap(), plaintext);
        assert_ne!(recipient.seal(plaintext), sealed, "a fresh key and nonce per file");
        let mut changed = sealed.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert_eq!(key.open(&changed), Err(CryptoError::Open));
        let (other, _) = generate_key_pair();
        assert_eq!(DecryptionKey::parse(&other).unwrap().open(&sealed), Err(CryptoError::Open));
        assert_eq!(key.open(&sealed[..100]), Err(CryptoError::Open));
    }

    #[test]
    fn key_formats_and_refusals() {
        assert!(matches!(RecipientKey::parse("ssh-ed25519 AAAA x"), Err(CryptoError::PublicKey(_))));
        assert!(matches!(RecipientKey::parse("ssh-rsa !!! x"), Err(CryptoError::PublicKey(_))));
        let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(matches!(DecryptionKey::parse(openssh), Err(CryptoError::PrivateKey(m)) if m.contains("ssh-keygen -p -m PKCS8")));
    }
}
