//! The front door under test: a real nginx, run from the same template as
//! `scripts/up`'s (`ops/nginx/boxoffice.conf.template`), in front of services the test
//! runs. `scripts/test` installs nginx and exports `BOXOFFICE_NGINX_BIN`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{env, eventually, free_port, http};

/// The template `scripts/up` renders too.
const TEMPLATE: &str = include_str!("../../ops/nginx/boxoffice.conf.template");

/// nginx (`BOXOFFICE_NGINX_BIN`) run with `conf` alone (never /etc/nginx), its pid,
/// logs and temporary files in `dir`.
pub(crate) fn nginx(dir: &Path, conf: &Path) -> Command {
    let mut command = Command::new(env("BOXOFFICE_NGINX_BIN"));
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"));
    command
}

/// Stops an nginx started by [`nginx`]: SIGTERM, nginx's fast shutdown, in which the
/// master stops its workers, then leaves (after SIGKILL the workers would stay, still
/// listening).
pub(crate) fn stop_nginx(master: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &master.id().to_string()])
        .status();
    let _ = master.wait();
}

/// Its edge limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per second per client address, sustained.
    pub rate: u32,
    /// Requests a client may run ahead of that rate.
    pub burst: u32,
}

impl Default for Limits {
    /// `scripts/up`'s defaults.
    fn default() -> Self {
        Self {
            rate: 200,
            burst: 400,
        }
    }
}

/// nginx in front of a command-api and a query-api, on a port of its own.
pub struct FrontDoor {
    /// Where clients reach it.
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl FrontDoor {
    /// Starts nginx in front of `command` and `query` and waits until it answers.
    pub async fn start(command: SocketAddr, query: SocketAddr, limits: Limits) -> Self {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = std::env::temp_dir().join(format!("boxoffice-nginx-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create nginx's directory");
        let conf = TEMPLATE
            .replace("@@DIR@@", &dir.display().to_string())
            .replace("@@LOGS@@", &dir.display().to_string())
            .replace("@@LISTEN@@", &addr.to_string())
            .replace("@@TLS@@", "")
            .replace("@@COMMAND_API@@", &command.to_string())
            .replace("@@QUERY_API@@", &query.to_string())
            .replace("@@RATE@@", &limits.rate.to_string())
            .replace("@@BURST@@", &limits.burst.to_string());
        assert!(!conf.contains("@@"), "a placeholder was left unreplaced");
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("cannot write nginx.conf");
        let check = nginx(&dir, &conf_path)
            .arg("-t")
            .output()
            .expect("cannot run nginx -t");
        assert!(
            check.status.success(),
            "nginx refuses the configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = nginx(&dir, &conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start nginx");
        let door = Self { addr, dir, child };
        let health = door.url("/health");
        eventually(Duration::from_secs(20), "nginx to answer", || {
            let health = health.clone();
            async move {
                let answer = http().get(&health).send().await.ok()?;
                answer.status().is_success().then_some(())
            }
        })
        .await;
        door
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Its access log (one JSON object per line), as written so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        stop_nginx(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
