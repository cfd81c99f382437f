//! Envelope encryption: every contact has its own random data key, and
//! everything stored about the contact (message bodies, profile, session,
//! history, queued messages) is sealed under it ([`crate::privacy::crypto`]).
//! The data key is kept only wrapped (sealed) under a master key, with the
//! master key's id in front, so a new master key can be introduced while
//! data keys wrapped under the previous one stay readable until they are
//! rewrapped (`whatsify rotate-key`, and a background pass in `serve`).
//! Erasing a contact destroys its data key: whatever copy of its
//! ciphertext survives elsewhere (a Redis replica's backlog, a backup)
//! can no longer be opened.
//!
//! Values that belong to no contact (signed bodies we could not parse,
//! account-level events) are sealed under the master key itself, with its
//! id in front.
//!
//! With the embedded store and no `privacy.master_key` configured, the
//! keys live in a file beside the store (`keys.toml`, mode 0600), created
//! on first start: a master key and a separate pseudonym key (the pepper of
//! the keyed hashes that stand in for phone numbers).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Backend, Key32, Settings};
use crate::domain::ContactKey;
use crate::privacy::crypto::{CryptoError, Sealer};

type HmacSha256 = Hmac<Sha256>;

/// Format byte of a wrapped data key.
const WRAPPED: u8 = 0x4b;
/// Format byte of a value sealed under a master key.
const MASTER_SEALED: u8 = 2;
const ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
/// Data keys kept unwrapped in memory (per process).
const CACHE: usize = 16_384;
/// The key file's name in the embedded store's folder.
pub const KEY_FILE: &str = "keys.toml";

/// How long a contact's data key is kept after its last message: the
/// retention period (profile and history live that long) and two days'
/// margin for what is written after the message.
pub fn data_key_ttl(retention_days: u32) -> std::time::Duration {
    std::time::Duration::from_secs((u64::from(retention_days.max(1)) + 2) * 86_400)
}

/// As [`data_key_ttl`], from the profile's time to live.
pub fn data_key_ttl_for(profile_ttl: std::time::Duration) -> std::time::Duration {
    profile_ttl + std::time::Duration::from_secs(2 * 86_400)
}

/// The short public id of a master key (8 hex digits): which key wrapped a
/// data key. It reveals nothing about the key.
pub fn key_id(key: &Key32) -> [u8; ID_LEN] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.expose())
        .expect("HMAC takes keys of any length");
    m.update(b"whatsify master key id v1");
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&m.finalize().into_bytes()[..ID_LEN]);
    id
}

/// The master keys in force: the current one wraps new data keys; the
/// previous ones still unwrap.
pub struct MasterKeys {
    pub current: Key32,
    pub previous: Vec<Key32>,
}

struct Ring {
    /// The current key first.
    keys: Vec<([u8; ID_LEN], XChaCha20Poly1305)>,
}

impl Ring {
    fn new(keys: &MasterKeys) -> Ring {
        let mut out = vec![(
            key_id(&keys.current),
            XChaCha20Poly1305::new(keys.current.expose().into()),
        )];
        for k in &keys.previous {
            let id = key_id(k);
            if out.iter().all(|(i, _)| *i != id) {
                out.push((id, XChaCha20Poly1305::new(k.expose().into())));
            }
        }
        Ring { keys: out }
    }

    fn current(&self) -> &([u8; ID_LEN], XChaCha20Poly1305) {
        &self.keys[0]
    }

    fn find(&self, id: &[u8]) -> Option<&XChaCha20Poly1305> {
        self.keys.iter().find(|(i, _)| i == id).map(|(_, c)| c)
    }
}

/// Unwrapped data keys by contact, with the wrapped form they came from.
type Cache = HashMap<ContactKey, (Vec<u8>, Sealer)>;

/// The master keys and a cache of unwrapped data keys. Cheap to clone;
/// every clone sees a [`Keyring::replace`] (SIGHUP).
#[derive(Clone)]
pub struct Keyring {
    ring: Arc<RwLock<Arc<Ring>>>,
    cache: Arc<Mutex<Cache>>,
}

fn wrap_context(contact: &ContactKey) -> Vec<u8> {
    let mut c = b"whatsify data key\0".to_vec();
    c.extend_from_slice(contact.as_str().as_bytes());
    c
}

fn seal_with(
    id: &[u8; ID_LEN],
    cipher: &XChaCha20Poly1305,
    format: u8,
    plaintext: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        .map_err(|_| CryptoError::Seal)?;
    let mut out = Vec::with_capacity(1 + ID_LEN + NONCE_LEN + ct.len());
    out.push(format);
    out.extend_from_slice(id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

impl Keyring {
    pub fn new(keys: &MasterKeys) -> Keyring {
        Keyring {
            ring: Arc::new(RwLock::new(Arc::new(Ring::new(keys)))),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn ring(&self) -> Arc<Ring> {
        match self.ring.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts new master keys in force; answers whether they differ.
    pub fn replace(&self, keys: &MasterKeys) -> bool {
        let new = Ring::new(keys);
        let mut guard = match self.ring.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let same = guard.keys.len() == new.keys.len()
            && guard
                .keys
                .iter()
                .zip(&new.keys)
                .all(|((a, _), (b, _))| a == b);
        if !same {
            *guard = Arc::new(new);
        }
        !same
    }

    /// The current master key's id (hex).
    pub fn current_id(&self) -> String {
        hex::encode(self.ring().current().0)
    }

    /// Whether master keys other than the current one are in force.
    pub fn rotating(&self) -> bool {
        self.ring().keys.len() > 1
    }

    /// A new random data key for `contact`, and the key wrapped for storage.
    pub fn new_data_key(&self, contact: &ContactKey) -> Result<(Sealer, Vec<u8>), CryptoError> {
        let mut dek = [0u8; 32];
        rand::fill(&mut dek);
        let ring = self.ring();
        let (id, cipher) = ring.current();
        let wrapped = seal_with(id, cipher, WRAPPED, &dek, &wrap_context(contact))?;
        let sealer = Sealer::new(&Key32::new(dek));
        Ok((sealer, wrapped))
    }

    fn unwrap_raw(&self, contact: &ContactKey, wrapped: &[u8]) -> Result<Key32, CryptoError> {
        if wrapped.len() < 1 + ID_LEN + NONCE_LEN + 16 || wrapped[0] != WRAPPED {
            return Err(CryptoError::Malformed);
        }
        let ring = self.ring();
        let cipher = ring
            .find(&wrapped[1..1 + ID_LEN])
            .ok_or(CryptoError::UnknownKey)?;
        let nonce: [u8; NONCE_LEN] = wrapped[1 + ID_LEN..1 + ID_LEN + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &wrapped[1 + ID_LEN + NONCE_LEN..],
                    aad: &wrap_context(contact),
                },
            )
            .map_err(|_| CryptoError::Forged)?;
        let dek: [u8; 32] = plain.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(Key32::new(dek))
    }

    /// The contact's data key from its stored (wrapped) form.
    pub fn unwrap(&self, contact: &ContactKey, wrapped: &[u8]) -> Result<Sealer, CryptoError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((w, s)) = cache.get(contact)
            && w == wrapped
        {
            return Ok(s.clone());
        }
        let sealer = Sealer::new(&self.unwrap_raw(contact, wrapped)?);
        self.remember(contact, wrapped, &sealer);
        Ok(sealer)
    }

    /// Keeps an unwrapped data key for the next use.
    pub fn remember(&self, contact: &ContactKey, wrapped: &[u8], sealer: &Sealer) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE && !cache.contains_key(contact) {
                // Bounded: drop an arbitrary entry (a miss costs one unwrap).
                if let Some(k) = cache.keys().next().cloned() {
                    cache.remove(&k);
                }
            }
            cache.insert(contact.clone(), (wrapped.to_vec(), sealer.clone()));
        }
    }

    /// The data key this process last used for `contact`, if any.
    pub fn cached(&self, contact: &ContactKey) -> Option<(Vec<u8>, Sealer)> {
        self.cache.lock().ok()?.get(contact).cloned()
    }

    /// Forgets a contact's data key (it was destroyed or replaced).
    pub fn forget(&self, contact: &ContactKey) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(contact);
        }
    }

    /// The same data key wrapped under the current master key, or `None`
    /// when it already is.
    pub fn rewrap(
        &self,
        contact: &ContactKey,
        wrapped: &[u8],
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        let ring = self.ring();
        let (id, cipher) = ring.current();
        if wrapped.get(1..1 + ID_LEN) == Some(&id[..]) {
            return Ok(None);
        }
        let dek = self.unwrap_raw(contact, wrapped)?;
        seal_with(id, cipher, WRAPPED, dek.expose(), &wrap_context(contact)).map(Some)
    }

    /// Seals a value that belongs to no contact under the current master key.
    pub fn seal_system(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let ring = self.ring();
        let (id, cipher) = ring.current();
        seal_with(id, cipher, MASTER_SEALED, plaintext, context)
    }

    /// Opens a value sealed by [`Keyring::seal_system`] under any master
    /// key in force.
    pub fn open_system(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 1 + ID_LEN + NONCE_LEN + 16 || sealed[0] != MASTER_SEALED {
            return Err(CryptoError::Malformed);
        }
        let ring = self.ring();
        let cipher = ring
            .find(&sealed[1..1 + ID_LEN])
            .ok_or(CryptoError::UnknownKey)?;
        let nonce: [u8; NONCE_LEN] = sealed[1 + ID_LEN..1 + ID_LEN + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[1 + ID_LEN + NONCE_LEN..],
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Forged)
    }
}

/// What a rewrap pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Data keys now wrapped under the current master key.
    pub rewrapped: usize,
    /// Data keys that already were.
    pub current: usize,
    /// Data keys no configured master key unwraps (left as they are).
    pub unreadable: usize,
}

/// Data keys looked at per store call.
const REWRAP_PAGE: usize = 500;

/// Wraps every data key that is under a previous master key under the
/// current one. Safe to run while the server runs, and on several
/// instances at once: a key is replaced only if it is still the one read.
pub async fn rewrap_all(
    store: &dyn crate::store::Store,
    keyring: &Keyring,
) -> Result<Rewrapped, crate::store::StoreError> {
    let mut done = Rewrapped::default();
    let mut cursor = None;
    loop {
        let (page, next) = store.data_keys(cursor, REWRAP_PAGE).await?;
        for (contact, wrapped) in page {
            match keyring.rewrap(&contact, &wrapped) {
                Ok(None) => done.current += 1,
                Ok(Some(new)) => {
                    if store.replace_data_key(&contact, &wrapped, &new).await? {
                        done.rewrapped += 1;
                    }
                }
                Err(e) => {
                    tracing::error!(contact = %contact, error = %e, "data key cannot be rewrapped");
                    done.unreadable += 1;
                }
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(done),
        }
    }
}

/// Why the keys could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "privacy.master_key is missing: set it in the config file or WHATSIFY__PRIVACY__MASTER_KEY (the Redis store needs it; only the embedded store keeps its own key file)"
    )]
    Missing,
    #[error("cannot read or create the key file {path}: {problem}")]
    File { path: String, problem: String },
    #[error(
        "privacy.pseudonym_key must be set while privacy.master_key_previous is: pseudonyms derived from the master key would change with it and every contact would lose its data (`whatsify rotate-key` prints the value to pin)"
    )]
    PseudonymNotPinned,
    #[error(
        "the store's contacts are named under pseudonym key {stored}, but these settings give key {given}: with it every contact would lose its data and erased contacts could be subscribed again. Restore the key file or privacy.pseudonym_key (or privacy.master_key) this store was written with"
    )]
    WrongStore { stored: String, given: String },
    #[error(
        "the key file {path} is missing: restore it (a new one would make the stored data unreadable)"
    )]
    FileMissing { path: String },
}

/// The name of the store's pin of its pseudonym key's id.
pub const PEPPER_PIN: &str = "pseudonym_key_id";

/// Checks the store was written under this pseudonym key (pinning it on
/// first use). On a mismatch a key file made just now is removed again.
pub async fn check_store(
    store: &dyn crate::store::Store,
    secrets: &Secrets,
) -> Result<(), crate::startup::StartError> {
    let given = hex::encode(key_id(&secrets.pseudonym_key));
    let stored = store.pin(PEPPER_PIN, &given).await?;
    if stored == given {
        return Ok(());
    }
    if let (true, Some(path)) = (secrets.key_file_created, &secrets.key_file) {
        let _ = std::fs::remove_file(path);
    }
    Err(KeyError::WrongStore { stored, given }.into())
}

/// Every secret derived from the settings (and the embedded key file).
pub struct Secrets {
    pub master: MasterKeys,
    /// The pepper of the keyed hashes (pseudonyms, audit chain).
    pub pseudonym_key: Key32,
    /// The key file in use, when the keys came from one.
    pub key_file: Option<PathBuf>,
    /// The key file was made by this call (the store was new to it).
    pub key_file_created: bool,
}

/// What the application derives from the secrets: the master keys, the
/// pseudonyms and the audit chain. Cheap to clone.
#[derive(Clone)]
pub struct Crypto {
    pub keyring: Keyring,
    pub pseudonymizer: crate::privacy::pseudonym::Pseudonymizer,
    pub audit: crate::privacy::audit::Chain,
}

impl Crypto {
    pub fn new(secrets: &Secrets) -> Crypto {
        Crypto {
            keyring: Keyring::new(&secrets.master),
            pseudonymizer: crate::privacy::pseudonym::Pseudonymizer::with_key(
                &secrets.pseudonym_key,
            ),
            audit: crate::privacy::audit::Chain::new(&secrets.pseudonym_key),
        }
    }
}

/// The contents of the embedded store's key file.
#[derive(serde::Deserialize, serde::Serialize)]
struct FileKeys {
    master_key: String,
    #[serde(default)]
    master_key_previous: String,
    pseudonym_key: String,
}

fn b64(k: &Key32) -> String {
    base64::engine::general_purpose::STANDARD.encode(k.expose())
}

fn random_key() -> Key32 {
    let mut k = [0u8; 32];
    rand::fill(&mut k);
    Key32::new(k)
}

fn decode_key(text: &str, path: &Path, field: &str) -> Result<Key32, KeyError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| KeyError::File {
            path: path.display().to_string(),
            problem: format!("{field} is not base64 of 32 bytes"),
        })?;
    Ok(Key32::new(bytes))
}

/// Splits a list of keys written as base64, separated by commas or spaces.
pub fn key_list(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The key file of the embedded store in `dir`.
pub fn key_file_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

fn read_key_file(path: &Path) -> Result<Option<(MasterKeys, Key32)>, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(KeyError::File {
                path: path.display().to_string(),
                problem: e.to_string(),
            });
        }
    };
    let file: FileKeys = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .and_then(config::Config::try_deserialize)
        // The parser's message can quote the line, a key: not repeated.
        .map_err(|_| KeyError::File {
            path: path.display().to_string(),
            problem:
                "not valid TOML with the fields master_key, master_key_previous and pseudonym_key"
                    .into(),
        })?;
    let current = decode_key(&file.master_key, path, "master_key")?;
    let previous = key_list(&file.master_key_previous)
        .map(|k| decode_key(k, path, "master_key_previous"))
        .collect::<Result<Vec<_>, _>>()?;
    let pepper = decode_key(&file.pseudonym_key, path, "pseudonym_key")?;
    Ok(Some((MasterKeys { current, previous }, pepper)))
}

/// Writes the key file atomically with mode 0600 (a temporary file in the
/// same folder, renamed over the old one).
fn write_key_file(path: &Path, keys: &MasterKeys, pepper: &Key32) -> Result<(), KeyError> {
    let err = |e: std::io::Error| KeyError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    let previous: Vec<String> = keys.previous.iter().map(b64).collect();
    let text = format!(
        "# whatsify's keys for the embedded store in this folder. Keep this file\n\
         # secret and back it up apart from the store: without it the stored\n\
         # messages cannot be read. Made by whatsify; see the README (keys).\n\
         master_key = \"{}\"\n\
         master_key_previous = \"{}\"\n\
         pseudonym_key = \"{}\"\n",
        b64(&keys.current),
        previous.join(","),
        b64(pepper),
    );
    if let Some(dir) = path.parent() {
        crate::store::private_files::private_dir(dir).map_err(|problem| KeyError::File {
            path: path.display().to_string(),
            problem,
        })?;
    }
    let tmp = path.with_extension("toml.tmp");
    // A leftover (or planted) temporary file is not written through.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    // The rename itself survives a crash only once the folder is synced.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// Derives the pseudonym key from a master key (when none is configured).
fn derived_pepper(master: &Key32) -> Key32 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(master.expose())
        .expect("HMAC takes keys of any length");
    m.update(b"whatsify pseudonym key v1");
    let mut out = [0u8; 32];
    out.copy_from_slice(&m.finalize().into_bytes());
    Key32::new(out)
}

/// The secrets the settings give: the configured master key, or with the
/// embedded store and none configured, the store folder's key file
/// (created on first use).
pub fn load(settings: &Settings) -> Result<Secrets, KeyError> {
    load_keys(settings, true)
}

/// As [`load`], but never creates a key file (a SIGHUP must not).
pub fn reload(settings: &Settings) -> Result<Secrets, KeyError> {
    load_keys(settings, false)
}

fn load_keys(settings: &Settings, create: bool) -> Result<Secrets, KeyError> {
    let p = &settings.privacy;
    if let Some(master) = &p.master_key {
        let master = MasterKeys {
            current: master.clone(),
            previous: p.master_key_previous.clone(),
        };
        let pepper = match &p.pseudonym_key {
            Some(k) => k.clone(),
            None if !master.previous.is_empty() => return Err(KeyError::PseudonymNotPinned),
            None => derived_pepper(&master.current),
        };
        return Ok(Secrets {
            master,
            pseudonym_key: pepper,
            key_file: None,
            key_file_created: false,
        });
    }
    if settings.store.backend != Backend::Embedded {
        return Err(KeyError::Missing);
    }
    let path = key_file_path(&settings.store.path);
    let mut created = false;
    let (master, file_pepper) = match read_key_file(&path)? {
        Some(found) => found,
        None if !create => {
            return Err(KeyError::FileMissing {
                path: path.display().to_string(),
            });
        }
        None => {
            created = true;
            let keys = MasterKeys {
                current: random_key(),
                previous: Vec::new(),
            };
            let pepper = random_key();
            write_key_file(&path, &keys, &pepper)?;
            tracing::info!(
                key_file = %path.display(),
                key_id = %hex::encode(key_id(&keys.current)),
                "created the embedded store's master key"
            );
            (keys, pepper)
        }
    };
    Ok(Secrets {
        master,
        pseudonym_key: p.pseudonym_key.clone().unwrap_or(file_pepper),
        key_file: Some(path),
        key_file_created: created,
    })
}

/// What `whatsify rotate-key` did, for its report.
pub enum Rotated {
    /// The key file now holds a new current key; the old one is previous.
    File {
        path: PathBuf,
        new_id: String,
        old_id: String,
    },
    /// The settings hold the keys: the lines the operator must put in.
    Settings { new_id: String, lines: String },
}

/// Introduces a new master key: in the key file when the keys come from
/// one, else by printing the settings to deploy.
pub fn rotate(settings: &Settings) -> Result<Rotated, KeyError> {
    let secrets = load(settings)?;
    let new = random_key();
    let new_id = hex::encode(key_id(&new));
    let old_id = hex::encode(key_id(&secrets.master.current));
    let mut previous = vec![secrets.master.current];
    previous.extend(secrets.master.previous);
    let keys = MasterKeys {
        current: new,
        previous,
    };
    match secrets.key_file {
        Some(path) => {
            let (_, file_pepper) = read_key_file(&path)?.ok_or_else(|| KeyError::File {
                path: path.display().to_string(),
                problem: "disappeared while rotating".into(),
            })?;
            write_key_file(&path, &keys, &file_pepper)?;
            Ok(Rotated::File {
                path,
                new_id,
                old_id,
            })
        }
        None => {
            let previous: Vec<String> = keys.previous.iter().map(b64).collect();
            let lines = format!(
                "[privacy]\nmaster_key = \"{}\"\nmaster_key_previous = \"{}\"\npseudonym_key = \"{}\"\n",
                b64(&keys.current),
                previous.join(","),
                b64(&secrets.pseudonym_key),
            );
            Ok(Rotated::Settings { new_id, lines })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(n: u8) -> ContactKey {
        ContactKey::from_hash(&[n; 16])
    }

    fn ring(current: u8, previous: &[u8]) -> Keyring {
        Keyring::new(&MasterKeys {
            current: Key32::new([current; 32]),
            previous: previous.iter().map(|p| Key32::new([*p; 32])).collect(),
        })
    }

    #[test]
    fn a_data_key_unwraps_only_for_its_contact_and_under_a_known_master_key() {
        let r = ring(1, &[]);
        let (sealer, wrapped) = r.new_data_key(&contact(1)).expect("new");
        let sealed = sealer.seal(b"hola", b"ctx").expect("seal");
        let fresh = ring(1, &[]);
        let again = fresh.unwrap(&contact(1), &wrapped).expect("unwrap");
        assert_eq!(again.open(&sealed, b"ctx").expect("open"), b"hola");
        assert_eq!(
            fresh.unwrap(&contact(2), &wrapped).err(),
            Some(CryptoError::Forged)
        );
        assert_eq!(
            ring(9, &[]).unwrap(&contact(1), &wrapped).err(),
            Some(CryptoError::UnknownKey)
        );
    }

    #[test]
    fn two_contacts_get_different_data_keys() {
        let r = ring(1, &[]);
        let (a, _) = r.new_data_key(&contact(1)).expect("new");
        let (b, _) = r.new_data_key(&contact(1)).expect("new");
        let sealed = a.seal(b"x", b"c").expect("seal");
        assert_eq!(b.open(&sealed, b"c"), Err(CryptoError::Forged));
    }

    #[test]
    fn rotation_keeps_old_data_readable_and_rewraps_to_the_new_key() {
        let old = ring(1, &[]);
        let (sealer, wrapped) = old.new_data_key(&contact(3)).expect("new");
        let sealed = sealer.seal(b"secret", b"ctx").expect("seal");
        let system = old.seal_system(b"body", b"quarantine").expect("seal");

        let rotated = ring(2, &[1]);
        assert!(rotated.rotating());
        let still = rotated.unwrap(&contact(3), &wrapped).expect("old key");
        assert_eq!(still.open(&sealed, b"ctx").expect("open"), b"secret");
        assert_eq!(
            rotated.open_system(&system, b"quarantine").expect("open"),
            b"body"
        );

        let rewrapped = rotated
            .rewrap(&contact(3), &wrapped)
            .expect("rewrap")
            .expect("was under the old key");
        assert_eq!(
            rotated.rewrap(&contact(3), &rewrapped).expect("again"),
            None
        );
        let only_new = ring(2, &[]);
        let after = only_new.unwrap(&contact(3), &rewrapped).expect("new key");
        assert_eq!(after.open(&sealed, b"ctx").expect("open"), b"secret");
        assert_eq!(
            only_new.unwrap(&contact(3), &wrapped).err(),
            Some(CryptoError::UnknownKey)
        );
    }

    #[test]
    fn replace_reports_a_change_of_keys_only() {
        let r = ring(1, &[]);
        let same = MasterKeys {
            current: Key32::new([1; 32]),
            previous: vec![],
        };
        assert!(!r.replace(&same));
        let rotated = MasterKeys {
            current: Key32::new([2; 32]),
            previous: vec![Key32::new([1; 32])],
        };
        let before = r.current_id();
        assert!(r.replace(&rotated));
        assert_ne!(r.current_id(), before);
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        let path = key_file_path(dir.path());
        let keys = MasterKeys {
            current: random_key(),
            previous: vec![random_key()],
        };
        let pepper = random_key();
        write_key_file(&path, &keys, &pepper).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (read, read_pepper) = read_key_file(&path).expect("read").expect("present");
        assert_eq!(read.current.expose(), keys.current.expose());
        assert_eq!(read.previous.len(), 1);
        assert_eq!(read.previous[0].expose(), keys.previous[0].expose());
        assert_eq!(read_pepper.expose(), pepper.expose());
    }
}
