//! The encrypted-file format against an independent implementation: Python's pycryptodome
//! (installed by test/run.sh), as ssmixtools and its recipients use it. pycryptodome makes
//! the recipient's RSA key; pixl seals a file for its OpenSSH `ssh-rsa` public key and
//! pycryptodome opens it (PKCS1_OAEP with its SHA-1 defaults, AES.MODE_EAX,
//! decrypt_and_verify); pycryptodome seals a file as ssmixtools does and pixl opens it with
//! the PKCS#8 and the PKCS#1 private key.

use std::process::Command;

use pixl_ssmix2::crypto::{DecryptionKey, RecipientKey};

const PYTHON: &str = r#"
import sys, hashlib
from Crypto.PublicKey import RSA
from Crypto.Cipher import PKCS1_OAEP, AES
from Crypto.Random import get_random_bytes
out, step = sys.argv[1], sys.argv[2]
if step == "keys":
    key = RSA.generate(2048)
    open(f"{out}/key.pub", "wb").write(key.publickey().export_key(format="OpenSSH") + b" recipient@example\n")
    open(f"{out}/key.pem", "wb").write(key.publickey().export_key(format="PEM"))
    open(f"{out}/key-pkcs8.pem", "wb").write(key.export_key(pkcs=8))
    open(f"{out}/key-pkcs1.pem", "wb").write(key.export_key(pkcs=1))
elif step == "open":
    key = RSA.import_key(open(f"{out}/key-pkcs8.pem").read())
    data = open(f"{out}/sealed.bin", "rb").read()
    size = key.size_in_bytes()
    aes_key = PKCS1_OAEP.new(key).decrypt(data[:size])
    plain = AES.new(aes_key, AES.MODE_EAX, nonce=data[size:size + 16]).decrypt_and_verify(data[size + 32:], data[size + 16:size + 32])
    sys.stdout.write(hashlib.sha256(plain).hexdigest())
elif step == "seal":
    key = RSA.import_key(open(f"{out}/key.pub").read())
    plain = open(f"{out}/plain.csv", "rb").read()
    aes_key = get_random_bytes(16)
    cipher = AES.new(aes_key, AES.MODE_EAX)
    ciphertext, tag = cipher.encrypt_and_digest(plain)
    open(f"{out}/by_python.bin", "wb").write(PKCS1_OAEP.new(key).encrypt(aes_key) + cipher.nonce + tag + ciphertext)
"#;

fn python(dir: &std::path::Path, step: &str) -> String {
    let output = Command::new("python3").arg("-c").arg(PYTHON).arg(dir).arg(step).output().expect("python3 runs");
    assert!(output.status.success(), "pycryptodome {step}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn pycryptodome_opens_what_pixl_seals_and_pixl_opens_what_it_seals() {
    let dir = tempfile::tempdir().unwrap();
    python(dir.path(), "keys");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let plaintext = "patient_id,department,visiting_date\n1UT,102,23376 days 08:39:02.000003\n".repeat(1000);

    let recipient = RecipientKey::parse(&read("key.pub")).expect("the ssh-rsa public key");
    std::fs::write(dir.path().join("sealed.bin"), recipient.seal(plaintext.as_bytes())).unwrap();
    assert_eq!(python(dir.path(), "open"), sha256_hex(plaintext.as_bytes()), "pycryptodome opened pixl's file to the same bytes");
    // The PEM form of the same public key works too.
    let from_pem = RecipientKey::parse(&read("key.pem")).unwrap().seal(b"x");
    assert_eq!(DecryptionKey::parse(&read("key-pkcs8.pem")).unwrap().open(&from_pem).unwrap(), b"x");

    std::fs::write(dir.path().join("plain.csv"), &plaintext).unwrap();
    python(dir.path(), "seal");
    let sealed = std::fs::read(dir.path().join("by_python.bin")).unwrap();
    for private in ["key-pkcs8.pem", "key-pkcs1.pem"] {
        let opened = DecryptionKey::parse(&read(private)).unwrap_or_else(|e| panic!("{private}: {e}")).open(&sealed).unwrap();
        assert_eq!(opened, plaintext.as_bytes(), "{private}");
    }
}
