//! The embedded store's folder and files on disk: the server's user's
//! alone (folder 0700, files 0600), made so on a fresh start and tightened
//! on a start over an older, looser folder.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::helpers::{Backend, spawn_app_with};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Every file directly in `dir`, with its mode.
fn files(dir: &Path) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = std::fs::read_dir(dir)
        .expect("read folder")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect();
    out.sort();
    out
}

/// No master key configured: the first start makes the folder, the redb
/// file and the key file, all private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_embedded_store_is_private_to_its_user() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("fresh").join("data");
    let backend = Backend::Embedded(dir.clone());
    let app = spawn_app_with(
        &backend,
        &[("WHATSIFY__PRIVACY__MASTER_KEY", String::new())],
    )
    .await;
    assert_eq!(mode(&dir), 0o700, "the store folder");
    let found = files(&dir);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"whatsify.redb"), "{found:?}");
    assert!(names.contains(&"keys.toml"), "{found:?}");
    for (name, m) in &found {
        assert_eq!(*m, 0o600, "{name} is {m:o}");
    }
    app.stop().await;
}

/// A store folder left 0755 with 0644 files (as older versions made them)
/// is tightened when the server starts on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_looser_store_is_tightened_at_start() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let backend = Backend::Embedded(dir.clone());
    let app = spawn_app_with(
        &backend,
        &[("WHATSIFY__PRIVACY__MASTER_KEY", String::new())],
    )
    .await;
    app.stop().await;
    drop(app);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, _) in files(&dir) {
        std::fs::set_permissions(dir.join(&name), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    std::fs::write(dir.join("notes.txt"), b"left by an operator").expect("write");
    std::fs::set_permissions(
        dir.join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    // The first server may hold the redb file for a moment after stopping.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let app = loop {
        match crate::helpers::try_spawn_app(
            &backend,
            &[("WHATSIFY__PRIVACY__MASTER_KEY", String::new())],
        )
        .await
        {
            Ok(app) => break app,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "restart: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(mode(&dir), 0o700, "the store folder");
    let found = files(&dir);
    assert_eq!(found.len(), 3, "{found:?}");
    for (name, m) in &found {
        assert_eq!(*m, 0o600, "{name} is {m:o}");
    }
    app.stop().await;
}
