//! Encryption of credential fields at rest (ChaCha20-Poly1305).
//!
//! Format: `"enc:v1:" + base64(nonce[12] || ciphertext || tag[16])`, standard base64 with
//! padding. The prefix is also the AEAD associated data, so a value cannot be relabelled as
//! another format version without failing authentication.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;

/// Prefix of every encrypted value.
pub const PREFIX: &str = "enc:v1:";
/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "secret.key";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("value is not encrypted (missing enc:v1: prefix)")]
    NotEncrypted,
    #[error("encrypted value is malformed")]
    Malformed,
    /// Wrong key or tampered value; AEAD cannot tell which.
    #[error("encrypted value failed authentication")]
    Authentication,
    #[error("secret key must be base64 of exactly 32 bytes")]
    InvalidKey,
}

/// Encrypts and decrypts secret strings with one 256-bit key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Reads `data_dir/secret.key` (32 raw bytes), creating the directory and a fresh random
    /// key (mode 0600) when missing. Creation is atomic and never replaces an existing key, so
    /// two processes starting together end up with the same key.
    pub fn load_or_create(data_dir: &Path) -> io::Result<SecretBox> {
        fs::create_dir_all(data_dir)?;
        let path = data_dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => return Self::from_key_file_bytes(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        let tmp = data_dir.join(format!(
            ".{KEY_FILE}.tmp.{}.{:016x}",
            std::process::id(),
            OsRng.next_u64()
        ));
        let result = write_new_private(&tmp, &key).and_then(|()| publish(&tmp, &path));
        // The temporary name is gone after a successful link+unlink or rename; clean up on
        // failure paths too.
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                sync_dir(data_dir);
                Ok(Self::from_key(&key))
            }
            // Another process created the key first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Self::from_key_file_bytes(&fs::read(&path)?)
            }
            Err(e) => Err(e),
        }
    }

    /// A key supplied in configuration: base64 (standard alphabet) of 32 bytes.
    pub fn from_key_base64(s: &str) -> Result<SecretBox, SecretError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| SecretError::InvalidKey)?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| SecretError::InvalidKey)?;
        Ok(Self::from_key(&key))
    }

    fn from_key(key: &[u8; KEY_LEN]) -> SecretBox {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    fn from_key_file_bytes(bytes: &[u8]) -> io::Result<SecretBox> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{KEY_FILE} must hold exactly {KEY_LEN} bytes"),
            )
        })?;
        Ok(Self::from_key(&key))
    }

    /// Encrypts with a fresh random 96-bit nonce.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: PREFIX.as_bytes(),
        };
        // Only fails beyond ChaCha20-Poly1305's ~256 GiB message limit, far above any field.
        #[allow(clippy::expect_used)]
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("plaintext within ChaCha20-Poly1305 length limit");
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        format!("{PREFIX}{}", STANDARD.encode(raw))
    }

    /// Decrypts a value produced by [`SecretBox::encrypt`].
    pub fn decrypt(&self, s: &str) -> Result<String, SecretError> {
        let b64 = s.strip_prefix(PREFIX).ok_or(SecretError::NotEncrypted)?;
        let raw = STANDARD.decode(b64).map_err(|_| SecretError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: PREFIX.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Authentication)?;
        String::from_utf8(pt).map_err(|_| SecretError::Malformed)
    }

    /// Whether `s` carries the encrypted-value prefix (it may still fail to decrypt).
    pub fn is_encrypted(s: &str) -> bool {
        s.starts_with(PREFIX)
    }

    /// Decrypts, in place, every encrypted string anywhere in a JSON document (for connectors
    /// at send time only; never for rendering). Values that fail to decrypt stay as they are.
    pub fn reveal_json(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) if Self::is_encrypted(s) => {
                if let Ok(p) = self.decrypt(s) {
                    *s = p;
                }
            }
            Value::Object(m) => m.values_mut().for_each(|x| self.reveal_json(x)),
            Value::Array(a) => a.iter_mut().for_each(|x| self.reveal_json(x)),
            _ => {}
        }
    }
}

/// Creates `path` exclusively with mode 0600 and writes `data` durably.
fn write_new_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Moves the finished temp file to its final name without ever replacing an existing key:
/// `hard_link` fails with `AlreadyExists` if another process won the race. Falls back to
/// `rename` on filesystems without hard links.
fn publish(tmp: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if path.exists() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(tmp, path)
        }
    }
}

/// Best effort: persist the new directory entry (a lost key makes every secret unreadable).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "openeg-secrets-{tag}-{}-{:016x}",
            std::process::id(),
            OsRng.next_u64()
        ));
        d
    }

    fn random_box() -> SecretBox {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        SecretBox::from_key(&key)
    }

    #[test]
    fn reveal_json_decrypts_nested_secrets_only() {
        let b = random_box();
        let mut v = serde_json::json!({
            "password": b.encrypt("p1"),
            "list": [{"value": b.encrypt("h1")}, "plain"],
            "other": "enc:v1:not-really",
            "n": 3
        });
        b.reveal_json(&mut v);
        assert_eq!(v["password"], "p1");
        assert_eq!(v["list"][0]["value"], "h1");
        assert_eq!(v["list"][1], "plain");
        assert_eq!(v["other"], "enc:v1:not-really", "undecryptable values stay");
        assert_eq!(v["n"], 3);
    }

    #[test]
    fn roundtrip() {
        let b = random_box();
        for pt in ["", "hunter2", "pässwörd ✓", &"x".repeat(10_000)] {
            let ct = b.encrypt(pt);
            assert!(SecretBox::is_encrypted(&ct));
            assert!(!ct.contains(pt) || pt.is_empty());
            assert_eq!(b.decrypt(&ct).unwrap(), pt);
        }
        // Random nonce: same plaintext, different ciphertexts.
        assert_ne!(b.encrypt("same"), b.encrypt("same"));
        assert!(!SecretBox::is_encrypted("plain"));
        assert_eq!(b.decrypt("plain"), Err(SecretError::NotEncrypted));
    }

    #[test]
    fn tamper_detected() {
        let b = random_box();
        let ct = b.encrypt("top secret");
        let mut raw = STANDARD.decode(&ct[PREFIX.len()..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 0x01;
            let t = format!("{PREFIX}{}", STANDARD.encode(&raw));
            assert_eq!(b.decrypt(&t), Err(SecretError::Authentication));
            raw[i] ^= 0x01;
        }
        // Truncated and non-base64 values.
        let short = format!(
            "{PREFIX}{}",
            STANDARD.encode(&raw[..NONCE_LEN + TAG_LEN - 1])
        );
        assert_eq!(b.decrypt(&short), Err(SecretError::Malformed));
        assert_eq!(b.decrypt("enc:v1:!!!"), Err(SecretError::Malformed));
    }

    #[test]
    fn wrong_key_fails() {
        let ct = random_box().encrypt("top secret");
        assert_eq!(random_box().decrypt(&ct), Err(SecretError::Authentication));
    }

    #[test]
    fn from_key_base64_validates() {
        let key = [7u8; KEY_LEN];
        let b = SecretBox::from_key_base64(&STANDARD.encode(key)).unwrap();
        let b2 = SecretBox::from_key_base64(&format!(" {}\n", STANDARD.encode(key))).unwrap();
        assert_eq!(b2.decrypt(&b.encrypt("x")).unwrap(), "x");
        assert_eq!(
            SecretBox::from_key_base64(&STANDARD.encode([0u8; 16])).unwrap_err(),
            SecretError::InvalidKey
        );
        assert_eq!(
            SecretBox::from_key_base64("not base64!").unwrap_err(),
            SecretError::InvalidKey
        );
    }

    #[test]
    fn key_file_created_private_and_reloaded() {
        let dir = temp_dir("keyfile").join("nested");
        let b1 = SecretBox::load_or_create(&dir).unwrap();
        let path = dir.join(KEY_FILE);
        assert_eq!(fs::read(&path).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE)]);

        let ct = b1.encrypt("persisted");
        let b2 = SecretBox::load_or_create(&dir).unwrap();
        assert_eq!(b2.decrypt(&ct).unwrap(), "persisted");

        fs::write(&path, b"short").unwrap();
        let err = SecretBox::load_or_create(&dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn concurrent_creation_agrees() {
        let dir = temp_dir("race");
        let boxes: Vec<SecretBox> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SecretBox::load_or_create(&dir).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ct = boxes[0].encrypt("shared");
        for b in &boxes {
            assert_eq!(b.decrypt(&ct).unwrap(), "shared");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
