//! The client assertion against an independent implementation: Python's `cryptography`
//! (installed by test/run.sh with pyOpenSSL) makes RSA and EC P-384 keys, writes them as
//! private JWKs and PEM files in each form, and verifies the RS384/ES384 signatures our
//! code makes with them. A bug shared by our signer and our verifier cannot hide here.

use std::path::Path;
use std::process::Command;

use pixl_fhir_bulk::jose::SigningKey;

const MAKE_KEYS: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric import rsa, ec
from cryptography.hazmat.primitives import serialization as s
out = sys.argv[1]
def b64(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()
r = rsa.generate_private_key(public_exponent=65537, key_size=2048)
p = r.private_numbers()
json.dump({"kty": "RSA", "kid": "rsa-1", "alg": "RS384", "n": b64(p.public_numbers.n), "e": b64(p.public_numbers.e),
           "d": b64(p.d), "p": b64(p.p), "q": b64(p.q), "dp": b64(p.dmp1), "dq": b64(p.dmq1), "qi": b64(p.iqmp)}, open(f"{out}/rsa.jwk", "w"))
open(f"{out}/rsa-pkcs8.pem", "wb").write(r.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(f"{out}/rsa-pkcs1.pem", "wb").write(r.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
open(f"{out}/rsa-pub.pem", "wb").write(r.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
e = ec.generate_private_key(ec.SECP384R1())
n = e.private_numbers()
json.dump({"keys": [{"kty": "EC", "kid": "ec-1", "crv": "P-384", "x": b64(n.public_numbers.x, 48), "y": b64(n.public_numbers.y, 48), "d": b64(n.private_value, 48)}]},
          open(f"{out}/ec.jwks", "w"))
open(f"{out}/ec-pkcs8.pem", "wb").write(e.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(f"{out}/ec-sec1.pem", "wb").write(e.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
open(f"{out}/ec-pub.pem", "wb").write(e.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
open(f"{out}/rsa-1024.pem", "wb").write(rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(f"{out}/ec-p256.pem", "wb").write(ec.generate_private_key(ec.SECP256R1()).private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(f"{out}/encrypted.pem", "wb").write(e.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.BestAvailableEncryption(b"pw")))
"#;

const VERIFY: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
def unb64(t): return base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
jws, public = sys.argv[1], serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
h, c, sig = jws.split(".")
header, signed, sig = json.loads(unb64(h)), f"{h}.{c}".encode(), unb64(sig)
if header["alg"] == "RS384":
    public.verify(sig, signed, padding.PKCS1v15(), hashes.SHA384())
else:
    assert len(sig) == 96, len(sig)
    r, s = int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big")
    public.verify(utils.encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA384()))
print(json.dumps({"header": header, "claims": json.loads(unb64(c))}))
"#;

fn python(script: &str, args: &[&str]) -> std::process::Output {
    Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3 runs")
}

fn verified_by_python(jws: &str, public_pem: &Path) -> serde_json::Value {
    let output = python(VERIFY, &[jws, public_pem.to_str().unwrap()]);
    assert!(output.status.success(), "Python cryptography did not verify the signature: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn python_cryptography_verifies_assertions_signed_from_each_key_form() {
    let dir = tempfile::tempdir().unwrap();
    let made = python(MAKE_KEYS, &[dir.path().to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let cases = [
        ("rsa.jwk", None, "rsa-pub.pem", "RS384", "rsa-1"),
        ("rsa-pkcs8.pem", Some("rsa-pem"), "rsa-pub.pem", "RS384", "rsa-pem"),
        ("rsa-pkcs1.pem", Some("rsa-pem"), "rsa-pub.pem", "RS384", "rsa-pem"),
        ("ec.jwks", None, "ec-pub.pem", "ES384", "ec-1"),
        ("ec-pkcs8.pem", Some("ec-pem"), "ec-pub.pem", "ES384", "ec-pem"),
        ("ec-sec1.pem", Some("ec-pem"), "ec-pub.pem", "ES384", "ec-pem"),
    ];
    for (file, kid, public, alg, expected_kid) in cases {
        let key = SigningKey::from_text(&read(file), kid).unwrap_or_else(|e| panic!("{file}: {e}"));
        let jws = key.client_assertion("client-x", "https://auth.example.org/token");
        let verified = verified_by_python(&jws, &dir.path().join(public));
        assert_eq!(verified["header"]["alg"], alg, "{file}");
        assert_eq!(verified["header"]["kid"], expected_kid, "{file}");
        assert_eq!(verified["header"]["typ"], "JWT", "{file}");
        assert_eq!(verified["claims"]["iss"], "client-x");
        assert_eq!(verified["claims"]["aud"], "https://auth.example.org/token");
        // Our public JWK is the key Python made.
        let jwk = key.public_jwk();
        assert!(pixl_fhir_bulk::jose::verify(&jws, &[jwk]).is_ok(), "{file}");
    }
    for (file, problem) in [("rsa-1024.pem", "2048"), ("ec-p256.pem", "EC P-384"), ("encrypted.pem", "encrypted")] {
        let error = SigningKey::from_text(&read(file), Some("k")).unwrap_err().to_string();
        assert!(error.contains(problem), "{file}: {error}");
    }
}
