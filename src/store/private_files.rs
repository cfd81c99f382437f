//! The embedded store's folder and files are the server user's alone: the
//! folder is made 0700 and every file in it 0600 (the redb file holds the
//! sealed data and the audit log, `keys.toml` the keys that open them).
//!
//! An existing folder or file with looser modes (made by an older version,
//! or by hand) is tightened when the store opens, with a warning naming the
//! path and the old mode; if that is not allowed (another owner), the store
//! refuses to open and says why. Only the folder itself and the regular
//! files directly in it are touched (not subfolders, not what a symbolic
//! link points at). On systems without Unix modes this does nothing.

use std::path::Path;

/// What a private folder's mode keeps: the owner's bits.
#[cfg(unix)]
const OWNER: u32 = 0o700;

/// Makes `dir` (and missing parents) with mode 0700, or tightens it.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        // The working folder (a bare file name's parent): not ours to change.
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(OWNER)
            .create(dir)
            .map_err(|e| format!("cannot create store folder {}: {e}", dir.display()))?;
        tighten(dir, OWNER)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create store folder {}: {e}", dir.display()))
    }
}

/// Creates `file` empty with mode 0600 when it does not exist (an existing
/// one is left as it is: see [`private_files_in`]).
pub fn private_file(file: &Path) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(file)
        .map(drop)
        .map_err(|e| format!("cannot create {}: {e}", file.display()))
}

/// Tightens every regular file directly in `dir` to the owner's bits
/// (0644 becomes 0600).
pub fn private_files_in(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read store folder {}: {e}", dir.display()))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| format!("cannot read store folder {}: {e}", dir.display()))?;
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file {
                tighten(&entry.path(), 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Drops the group's and others' bits of `path` (a folder keeps its
/// owner's, a file at most `keep`).
#[cfg(unix)]
fn tighten(path: &Path, keep: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let tight = if meta.is_dir() { OWNER } else { mode & keep };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(tight)).map_err(|e| {
        format!(
            "{} has mode {mode:o} (readable by others) and cannot be made {tight:o}: {e}; \
             make it owned by the server's user, or fix its mode",
            path.display()
        )
    })?;
    tracing::warn!(
        path = %path.display(),
        was = %format!("{mode:o}"),
        now = %format!("{tight:o}"),
        "the embedded store's folder or file was readable by others; tightened"
    );
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_folder_is_0700_and_a_new_file_0600() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("a").join("data");
        private_dir(&dir).expect("made");
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        private_file(&file).expect("made");
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn looser_modes_are_tightened_and_symbolic_links_left_alone() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = dir.join("whatsify.redb");
        std::fs::write(&file, b"").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"").expect("write");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::symlink(&outside, dir.join("link")).expect("symlink");
        private_dir(&dir).expect("tightened");
        private_files_in(&dir).expect("tightened");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&outside), 0o644, "not followed");
    }
}
