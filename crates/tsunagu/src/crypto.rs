//! Secrets at rest: AES-256-GCM under a master key, with the row's identity as associated
//! data so a sealed value cannot be moved to another account or purpose. The key file may
//! hold several keys (one base64 key per line, the first is current) so that a rotation
//! interrupted half-way can always be finished.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key is not base64 of 32 bytes")]
    BadKey,
    #[error("sealed value was made with key {0}, which is not in the keyring")]
    UnknownKey(String),
    #[error("sealed value is corrupt or belongs to another record")]
    Open,
    #[error("key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let k = Aes256Gcm::generate_key(OsRng);
        MasterKey::from_bytes(k.into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let digest = Sha256::new().chain_update(b"tsunagu-key-id:").chain_update(bytes).finalize();
        MasterKey { bytes, id: hex::encode(&digest[..8]) }
    }

    pub fn from_base64(s: &str) -> Result<MasterKey, CryptoError> {
        let raw = STANDARD.decode(s.trim()).map_err(|_| CryptoError::BadKey)?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(MasterKey::from_bytes(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// Short public identifier stored next to each sealed value.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current key plus older ones still accepted for opening.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey) -> Keyring {
        Keyring { keys: vec![current] }
    }

    pub fn with_previous(mut self, older: MasterKey) -> Keyring {
        if !self.keys.iter().any(|k| k.id == older.id) {
            self.keys.push(older);
        }
        self
    }

    pub fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    pub fn keys(&self) -> &[MasterKey] {
        &self.keys
    }

    /// Parse a key file: one base64 key per line, first is current; `#` comments allowed.
    pub fn parse(text: &str) -> Result<Keyring, CryptoError> {
        let mut keys =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(MasterKey::from_base64);
        let first = keys.next().ok_or(CryptoError::BadKey)??;
        let mut ring = Keyring::new(first);
        for k in keys {
            ring = ring.with_previous(k?);
        }
        Ok(ring)
    }

    pub fn to_file_text(&self) -> String {
        let mut s =
            String::from("# Tsunagu master key(s). The first line is current. Keep this file secret and backed up.\n");
        for k in &self.keys {
            s.push_str(&k.to_base64());
            s.push('\n');
        }
        s
    }

    pub fn load_file(path: &Path) -> Result<Keyring, CryptoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CryptoError::Io { path: path.display().to_string(), source })?;
        Keyring::parse(&text)
    }

    /// Write atomically with mode 0600 (temp file, fsync, rename).
    pub fn write_file(&self, path: &Path) -> Result<(), CryptoError> {
        let io = |source| CryptoError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(self.to_file_text().as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        // Make the rename itself durable before anything relies on the new key.
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Seal `plain` for (account, purpose). Returns (key id, sealed text).
    pub fn seal(&self, plain: &str, aad: &str) -> (String, String) {
        let key = self.current();
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.bytes));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(&nonce, Payload { msg: plain.as_bytes(), aad: aad.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        (key.id.clone(), format!("v1.{}", URL_SAFE_NO_PAD.encode(out)))
    }

    pub fn open(&self, key_id: &str, sealed: &str, aad: &str) -> Result<String, CryptoError> {
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| CryptoError::UnknownKey(key_id.into()))?;
        let body = sealed.strip_prefix("v1.").ok_or(CryptoError::Open)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| CryptoError::Open)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = raw.split_at(12);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.bytes));
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Open)
    }

    /// Sub-keys for signing (CSRF tokens), one per key in the ring, the current one first:
    /// tokens are made with the first and accepted with any, so instances mid-rotation agree.
    pub fn derive(&self, label: &str) -> Vec<[u8; 32]> {
        self.keys
            .iter()
            .map(|k| {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&k.bytes).expect("any key length");
                mac.update(b"tsunagu-derive:");
                mac.update(label.as_bytes());
                mac.finalize().into_bytes().into()
            })
            .collect()
    }
}

/// Associated data binding a sealed secret to its row.
pub fn secret_aad(account: tsunagu_core::AccountId, purpose: &str) -> String {
    format!("account={account};purpose={purpose}")
}

/// Random bytes as URL-safe base64, for session tokens and the like.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).expect("the OS random source is available");
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).expect("the OS random source is available");
    hex::encode(buf)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn hmac_b64(key: &[u8; 32], msg: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(msg.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Constant-time string comparison.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let ring = Keyring::new(MasterKey::generate());
        let (kid, sealed) = ring.seal("zoom-secret-値", "account=1;purpose=zoom");
        assert!(!sealed.contains("zoom-secret"));
        assert_eq!(ring.open(&kid, &sealed, "account=1;purpose=zoom").unwrap(), "zoom-secret-値");
        assert!(matches!(ring.open(&kid, &sealed, "account=2;purpose=zoom"), Err(CryptoError::Open)));
        let other = Keyring::new(MasterKey::generate());
        assert!(matches!(other.open(&kid, &sealed, "account=1;purpose=zoom"), Err(CryptoError::UnknownKey(_))));
        // Two seals of the same value differ (fresh nonce).
        assert_ne!(ring.seal("x", "a").1, ring.seal("x", "a").1);
    }

    #[test]
    fn keyring_file_round_trip() {
        let old = MasterKey::generate();
        let ring = Keyring::new(MasterKey::generate()).with_previous(old.clone());
        let parsed = Keyring::parse(&ring.to_file_text()).unwrap();
        assert_eq!(parsed.current().id(), ring.current().id());
        assert_eq!(parsed.keys().len(), 2);
        assert!(Keyring::parse("not base64").is_err());
        assert!(Keyring::parse("").is_err());
        assert!(format!("{ring:?}").len() < 200 && !format!("{ring:?}").contains(&old.to_base64()));
    }
}
