//! The master keys' sources: `privacy.master_key` and its previous keys,
//! or the embedded store's key file (`keys.toml`, mode 0600, created on
//! first start with a master key and a separate pseudonym key); the check
//! that a store was written under these keys; and the rewrap pass after a
//! master-key rotation. The key ring itself is [`crate::crypto::keyring`].

use std::path::{Path, PathBuf};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::{Backend, Key32, Settings};
use crate::crypto::keyring::{Keyring, MasterKeys, key_id};

type HmacSha256 = Hmac<Sha256>;

/// The key file's name in the embedded store's folder.
pub const KEY_FILE: &str = "keys.toml";

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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
) -> Result<(), KeyError> {
    let given = hex::encode(key_id(&secrets.pseudonym_key));
    let stored = store.pin(PEPPER_PIN, &given).await?;
    if stored == given {
        return Ok(());
    }
    if let (true, Some(path)) = (secrets.key_file_created, &secrets.key_file) {
        let _ = std::fs::remove_file(path);
    }
    Err(KeyError::WrongStore { stored, given })
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
    pub pseudonymizer: crate::crypto::pseudonym::Pseudonymizer,
    pub audit: crate::privacy::audit::Chain,
}

impl Crypto {
    pub fn new(secrets: &Secrets) -> Crypto {
        Crypto {
            keyring: Keyring::new(&secrets.master),
            pseudonymizer: crate::crypto::pseudonym::Pseudonymizer::with_key(
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
    let previous = crate::config::key_list(&file.master_key_previous)
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
         # messages cannot be read. Made by whatsify; see docs/privacy.md (keys).\n\
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
