//! Sealing secrets at rest: AES-256-GCM with a fresh random nonce per seal, caller-supplied
//! associated data (the shop id, so a sealed key cannot be moved to another shop), and a key id
//! so the master key can be rotated (new seals use the active key; old ones still open).
//! [`KeyRing::fingerprints`]: keyed fingerprints (HMAC-SHA256) to compare secrets without
//! opening them.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

const NONCE_LEN: usize = 12;

/// What a master key is mixed with to derive its fingerprint key (never the key itself).
const FINGERPRINT_LABEL: &[u8] = b"wmslink fingerprint key v1";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    <HmacSha256 as hmac::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The fingerprint key of a master key: HMAC-SHA256(master key, label).
fn fingerprint_key(master_key: &[u8]) -> [u8; 32] {
    let mut mac = hmac(master_key);
    mac.update(FINGERPRINT_LABEL);
    mac.finalize().into_bytes().into()
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MasterKeyConfig {
    /// A file of lines `<key_id>=<base64 of 32 bytes>`; `#` starts a comment.
    pub master_key_file: String,
    /// The same format inline, for development only (e.g. `WMSLINK_SECRETS__MASTER_KEYS`).
    #[serde(serialize_with = "serialize_redacted")]
    pub master_keys: SecretString,
    /// The key new seals use; default: the last key listed.
    pub active_key_id: String,
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

impl fmt::Debug for MasterKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyConfig")
            .field("master_key_file", &self.master_key_file)
            .field("active_key_id", &self.active_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("no master key configured (secrets.master_key_file or secrets.master_keys)")]
    NoKeys,
    #[error("cannot read master key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("master key line {line}: {reason}")]
    BadKey { line: usize, reason: &'static str },
    #[error("active key id '{0}' is not among the master keys")]
    UnknownActiveKey(String),
    #[error("sealed with unknown key id '{0}'")]
    UnknownKeyId(String),
    #[error("sealed value is damaged or was sealed for another owner")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// A sealed secret: which master key, and `nonce || ciphertext+tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("len", &self.blob.len())
            .finish()
    }
}

/// The master keys, by id.
#[derive(Clone)]
pub struct KeyRing {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
    /// Per master key, the key of its fingerprints.
    fingerprint_keys: HashMap<String, [u8; 32]>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    pub fn from_config(config: &MasterKeyConfig) -> Result<Self, SecretsError> {
        let text =
            if !config.master_key_file.is_empty() {
                SecretString::from(std::fs::read_to_string(&config.master_key_file).map_err(
                    |err| SecretsError::File {
                        path: config.master_key_file.clone(),
                        reason: err.to_string(),
                    },
                )?)
            } else {
                config.master_keys.clone()
            };
        Self::parse(text.expose_secret(), &config.active_key_id)
    }

    /// Parses `<key_id>=<base64>` lines.
    pub fn parse(text: &str, active_key_id: &str) -> Result<Self, SecretsError> {
        let mut keys = HashMap::new();
        let mut fingerprint_keys = HashMap::new();
        let mut last = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason| SecretsError::BadKey {
                line: index + 1,
                reason,
            };
            let (id, encoded) = line
                .split_once('=')
                .ok_or(bad("expected <key_id>=<base64>"))?;
            let id = id.trim();
            if id.is_empty() {
                return Err(bad("empty key id"));
            }
            // Zeroed when dropped: the cipher keeps its own (zeroized) copy.
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| bad("key is not base64"))?,
            );
            if bytes.len() != 32 {
                return Err(bad("key must be 32 bytes"));
            }
            keys.insert(
                id.to_owned(),
                Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            );
            fingerprint_keys.insert(id.to_owned(), fingerprint_key(&bytes));
            last = Some(id.to_owned());
        }
        let last = last.ok_or(SecretsError::NoKeys)?;
        let active = if active_key_id.is_empty() {
            last
        } else {
            active_key_id.to_owned()
        };
        if !keys.contains_key(&active) {
            return Err(SecretsError::UnknownActiveKey(active));
        }
        Ok(Self {
            active,
            keys,
            fingerprint_keys,
        })
    }

    /// A key ring with one random key, for tests and first-run development.
    /// This ring plus a freshly generated key `key_id`, which becomes the active one; returns
    /// its `<key_id>=<base64>` line too.
    pub fn with_generated(&self, key_id: &str) -> (Self, String) {
        let (generated, line) = Self::generate(key_id);
        let mut keys = self.keys.clone();
        keys.extend(generated.keys);
        let mut fingerprint_keys = self.fingerprint_keys.clone();
        fingerprint_keys.extend(generated.fingerprint_keys);
        (
            Self {
                active: key_id.to_owned(),
                keys,
                fingerprint_keys,
            },
            line,
        )
    }

    pub fn generate(key_id: &str) -> (Self, String) {
        let mut key = Aes256Gcm::generate_key(OsRng);
        let line = format!("{key_id}={}", STANDARD.encode(key));
        let mut keys = HashMap::new();
        keys.insert(key_id.to_owned(), Aes256Gcm::new(&key));
        let mut fingerprint_keys = HashMap::new();
        fingerprint_keys.insert(key_id.to_owned(), fingerprint_key(key.as_slice()));
        key.as_mut_slice().zeroize();
        (
            Self {
                active: key_id.to_owned(),
                keys,
                fingerprint_keys,
            },
            line,
        )
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Keyed fingerprints of `parts` (each length-prefixed, so no two splits of the same bytes
    /// agree): HMAC-SHA256 under a key derived from each master key, the active key's first.
    /// Equal inputs give equal fingerprints under the same master key; without the master key a
    /// fingerprint tells nothing of its input (not even a short key can be guessed offline).
    /// Compare against all of them so that a master-key rotation does not hide a match.
    /// Secret-derived: store it, never log it.
    pub fn fingerprints(&self, parts: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut ids: Vec<&String> = self.fingerprint_keys.keys().collect();
        ids.sort_by_key(|id| (**id != self.active, id.as_str()));
        ids.into_iter()
            .filter_map(|id| self.fingerprint_keys.get(id))
            .map(|key| {
                let mut mac = hmac(key);
                for part in parts {
                    mac.update(&(part.len() as u64).to_be_bytes());
                    mac.update(part);
                }
                mac.finalize().into_bytes().to_vec()
            })
            .collect()
    }

    /// Seals `secret` with the active key, binding `associated_data` (e.g. the shop id).
    pub fn seal(
        &self,
        secret: &SecretString,
        associated_data: &[u8],
    ) -> Result<Sealed, SecretsError> {
        let cipher = self.keys.get(&self.active).ok_or(SecretsError::Seal)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: associated_data,
                },
            )
            .map_err(|_| SecretsError::Seal)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: self.active.clone(),
            blob,
        })
    }

    /// Opens a sealed secret; fails if the key id, the blob or the associated data differ.
    pub fn open(
        &self,
        sealed: &Sealed,
        associated_data: &[u8],
    ) -> Result<SecretString, SecretsError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| SecretsError::UnknownKeyId(sealed.key_id.clone()))?;
        if sealed.blob.len() <= NONCE_LEN {
            return Err(SecretsError::Open);
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated_data,
                },
            )
            .map_err(|_| SecretsError::Open)?;
        // Moved into the SecretString (zeroized when dropped), or zeroized here.
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|err| {
                err.into_bytes().zeroize();
                SecretsError::Open
            })
    }
}

/// Shows only the last four characters of a secret, e.g. `********abcd`.
pub fn mask(secret: &SecretString) -> String {
    // A copy of the key's characters, zeroed when dropped.
    let chars: Zeroizing<Vec<char>> = Zeroizing::new(secret.expose_secret().chars().collect());
    if chars.len() <= 8 {
        return "*".repeat(8);
    }
    // At most a quarter of the key, and never more than its last 4 characters.
    let shown = (chars.len() / 4).min(4);
    let tail: String = chars[chars.len() - shown..].iter().collect();
    format!("********{tail}")
}

/// The master key of the docker compose demo (`deploy/dev/master.key`): public, so refused in
/// production.
const DEV_MASTER_KEY: &str = "vu5ZexTl/c/fpY9cl0Yy4tsC8RM5ygwtl8X2XMKxCmg=";
/// Shortest bearer token accepted in production.
pub const MIN_PRODUCTION_TOKEN_LEN: usize = 32;

/// The production rules for secrets at start, added to `problems` under `section`'s keys:
/// no inline master keys, a key file only its owner can read, not the demo key, and no
/// development (`dev-…`) or short tokens. (Kubernetes: `defaultMode: 0440` and `fsGroup`.)
pub fn check_production(
    profile: crate::runtime::Profile,
    secrets: &MasterKeyConfig,
    auth: &crate::auth::AuthConfig,
    problems: &mut crate::config::InvalidConfig,
) {
    use crate::config::key;
    if profile != crate::runtime::Profile::Production {
        return;
    }
    problems.check(
        secrets.master_keys.expose_secret().is_empty(),
        key("secrets", "master_keys"),
        "inline master keys are for development only; use secrets.master_key_file in production",
    );
    if !secrets.master_key_file.is_empty()
        && let Some(reason) = key_file_problem(&secrets.master_key_file)
    {
        problems.add(key("secrets", "master_key_file"), reason);
    }
    check_production_tokens(profile, auth, problems);
}

/// The production rule for the tokens a service accepts (`auth.tokens`): no development
/// (`dev-…`) or short tokens. For services without a master key (order-events).
pub fn check_production_tokens(
    profile: crate::runtime::Profile,
    auth: &crate::auth::AuthConfig,
    problems: &mut crate::config::InvalidConfig,
) {
    for token in &auth.tokens {
        check_production_token(
            profile,
            crate::config::key("auth", "tokens"),
            &format!("the token of caller '{}'", token.caller),
            &token.token,
            problems,
        );
    }
}

/// The same rule for one token a service presents to another (e.g. `settings.token`).
pub fn check_production_token(
    profile: crate::runtime::Profile,
    field: String,
    what: &str,
    token: &SecretString,
    problems: &mut crate::config::InvalidConfig,
) {
    if profile != crate::runtime::Profile::Production {
        return;
    }
    let value = token.expose_secret();
    problems.check(
        !value.starts_with("dev-") && value.len() >= MIN_PRODUCTION_TOKEN_LEN,
        field,
        format!(
            "{what} is a development token or shorter than {MIN_PRODUCTION_TOKEN_LEN} characters"
        ),
    );
}

/// Why the key file may not be used in production, if it may not.
fn key_file_problem(path: &str) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o007 != 0 => {
                return Some(format!(
                    "{path} can be read by every user (mode {:o}); chmod 600 (or 440 for a group) it",
                    meta.permissions().mode() & 0o777
                ));
            }
            Ok(_) => {}
            Err(err) => return Some(format!("cannot read {path}: {err}")),
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains(DEV_MASTER_KEY) => Some(format!(
            "{path} holds the development master key of the demo"
        )),
        Ok(_) => None,
        Err(err) => Some(format!("cannot read {path}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_equal_inputs_under_every_master_key_and_nothing_else() {
        let (ring, _) = KeyRing::generate("k1");
        let pair = |url: &str, key: &str| ring.fingerprints(&[url.as_bytes(), key.as_bytes()]);
        let a = pair("https://wms.example/api", "ak-1");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].len(), 32);
        assert_eq!(a, pair("https://wms.example/api", "ak-1"));
        assert_ne!(a, pair("https://wms.example/api", "ak-2"));
        assert_ne!(a, pair("https://other.example/api", "ak-1"));
        assert_ne!(
            a,
            pair("https://wms.example/apiak-", "1"),
            "parts are delimited"
        );
        assert!(
            !a[0].windows(4).any(|w| w == b"ak-1"),
            "no part of the input shows"
        );

        let (other, _) = KeyRing::generate("k1");
        assert_ne!(
            a,
            other.fingerprints(&[b"https://wms.example/api", b"ak-1"]),
            "keyed: another master key, other fingerprints"
        );

        // After a master-key rotation the old fingerprint is still among them, after the
        // active key's.
        let (rotated, _) = ring.with_generated("k2");
        let both = rotated.fingerprints(&[b"https://wms.example/api", b"ak-1"]);
        assert_eq!(both.len(), 2);
        assert_eq!(both[1], a[0]);
        assert_ne!(both[0], a[0]);
    }

    #[test]
    fn a_short_key_shows_at_most_a_quarter() {
        assert_eq!(mask(&SecretString::from("k-123456")), "********");
        assert_eq!(mask(&SecretString::from("k-1234567")), "********67");
        assert_eq!(mask(&SecretString::from("k-1234567890")), "********890");
        assert_eq!(
            mask(&SecretString::from("ak-0123456789abcdef")),
            "********cdef"
        );
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn production_refuses_development_secrets() {
        use crate::auth::{AuthConfig, TokenConfig};
        use crate::config::InvalidConfig;
        use crate::runtime::Profile;
        use std::os::unix::fs::PermissionsExt;

        let dir = std::env::temp_dir().join(format!("wmslink-secrets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (_, good_line) = KeyRing::generate("prod-1");
        let good = dir.join("good.key");
        std::fs::write(&good, &good_line).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
        let readable = dir.join("readable.key");
        std::fs::write(&readable, &good_line).unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
        let demo = dir.join("demo.key");
        std::fs::write(&demo, format!("dev-2026-11={DEV_MASTER_KEY}\n")).unwrap();
        std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o600)).unwrap();

        let file = |path: &std::path::Path| MasterKeyConfig {
            master_key_file: path.display().to_string(),
            ..MasterKeyConfig::default()
        };
        let tokens = |value: &str| AuthConfig {
            tokens: vec![TokenConfig {
                caller: "cart".into(),
                token: SecretString::from(value.to_owned()),
                scopes: vec![],
                shops: vec![],
            }],
        };
        let strong = "a-production-token-of-enough-length-0123";
        let problems = |profile, secrets: &MasterKeyConfig, auth: &AuthConfig| {
            let mut problems = InvalidConfig::default();
            check_production(profile, secrets, auth, &mut problems);
            problems.to_string()
        };

        let none = InvalidConfig::default().to_string();
        assert_eq!(
            problems(Profile::Production, &file(&good), &tokens(strong)),
            none
        );
        let inline = MasterKeyConfig {
            master_keys: SecretString::from(good_line.clone()),
            ..MasterKeyConfig::default()
        };
        for (secrets, auth, expected) in [
            (&inline, tokens(strong), "secrets.master_keys"),
            (
                &file(&readable),
                tokens(strong),
                "can be read by every user",
            ),
            (&file(&demo), tokens(strong), "development master key"),
            (&file(&good), tokens("dev-cart-token"), "auth.tokens"),
            (&file(&good), tokens("short-token"), "auth.tokens"),
        ] {
            let text = problems(Profile::Production, secrets, &auth);
            assert!(text.contains(expected), "{expected}: {text}");
            assert_eq!(problems(Profile::Development, secrets, &auth), none);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn seal_open_round_trip_with_fresh_nonces_and_bound_owner() {
        let (ring, _) = KeyRing::generate("k1");
        let secret = SecretString::from("abcdefgh-1234");
        let a = ring.seal(&secret, b"shop-a").expect("seal");
        let b = ring.seal(&secret, b"shop-a").expect("seal");
        assert_ne!(a.blob, b.blob, "a fresh nonce every time");
        assert_eq!(
            ring.open(&a, b"shop-a").expect("open").expose_secret(),
            "abcdefgh-1234"
        );
        assert!(matches!(ring.open(&a, b"shop-b"), Err(SecretsError::Open)));
    }

    #[test]
    fn rotation_keeps_old_seals_readable() {
        let (_, old_line) = KeyRing::generate("k1");
        let (_, new_line) = KeyRing::generate("k2");
        let old_ring = KeyRing::parse(&old_line, "").expect("ring");
        let sealed = old_ring
            .seal(&SecretString::from("key-123456789"), b"s")
            .expect("seal");
        let rotated = KeyRing::parse(&format!("{old_line}\n{new_line}\n"), "").expect("ring");
        assert_eq!(rotated.active_key_id(), "k2");
        assert_eq!(
            rotated.open(&sealed, b"s").expect("open").expose_secret(),
            "key-123456789"
        );
        assert_eq!(
            rotated
                .seal(&SecretString::from("x"), b"s")
                .expect("seal")
                .key_id,
            "k2"
        );
    }

    #[test]
    fn masks_all_but_the_last_four() {
        assert_eq!(
            mask(&SecretString::from("abcdefghijklmnop")),
            "********mnop"
        );
        assert_eq!(mask(&SecretString::from("short")), "********");
    }
}
