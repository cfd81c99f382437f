//! `whatsify serve` run as its own process, for tests that need what only
//! a process has: its own memory to measure, signals to send.

#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::helpers::free_port;

/// `whatsify serve` as a child process (its memory is its own, unlike a
/// server inside the test binary); killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    /// Holds the server's log.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the binary with `env`, and `settings` as its settings file
    /// when given; waits until it listens.
    pub async fn start(env: Vec<(String, String)>, settings: Option<&str>) -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("whatsify.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_whatsify"));
        command.arg("serve");
        if let Some(settings) = settings {
            let file = dir.path().join("whatsify.toml");
            std::fs::write(&file, settings).expect("settings file");
            command.arg("--config").arg(file);
        }
        let child = command
            .envs(env)
            .env("WHATSIFY__SERVER__BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the binary starts");
        let mut server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the binary exited ({status}):\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "the binary did not listen");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Replaces the settings file (then [`Server::sighup`]).
    pub fn rewrite_settings(&self, settings: &str) {
        std::fs::write(self.dir.path().join("whatsify.toml"), settings).expect("settings file");
    }

    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -HUP failed");
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("whatsify.log")).unwrap_or_default()
    }

    /// Resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
