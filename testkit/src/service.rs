//! Running a service under test: in this process on port 0, or as its real binary in a
//! child process (for tests that kill it).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{eventually, free_port, http};

/// A service running in this process.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// Runs `run(listener, shutdown)` (a service's `Application::run`) on a port of its own.
pub async fn serve<F, Fut>(run: F) -> Running
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // Logs go to the test's captured output, shown when it fails.
    platform::telemetry::init_from_env();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("no port");
    let addr = listener.local_addr().expect("no address");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(listener, shutdown.clone()));
    Running {
        addr,
        shutdown,
        handle,
    }
}

impl Running {
    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops it as SIGTERM would, and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("the service panicked")
            .expect("the service failed");
    }

    /// Drops it on the floor, as a crash would: nothing is finished or committed.
    pub fn abort(self) {
        self.handle.abort();
    }
}

/// The path of a workspace binary (`command-api`, `projector`, `payment-gateway`, ...)
/// built beside the running test, in the same target directory and profile. A crate's
/// own tests have `env!("CARGO_BIN_EXE_<name>")`; tests of another crate (e2e) use
/// this, and `scripts/test` builds the binaries before the tests run.
pub fn binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("no current executable");
    // target/<profile>/deps/<test>-<hash>  ->  target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} does not exist: build it first (cargo build -p {name}; scripts/test does)",
        path.display()
    );
    path.display().to_string()
}

/// A service's real binary in a child process.
pub struct ServiceProcess {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its output goes.
    pub log: PathBuf,
}

impl ServiceProcess {
    /// Starts `binary` with exactly `env` (plus `PATH`), listening on a free port given
    /// in `addr_var`, and waits until `/health/live` answers. Output goes to a file in
    /// `log_dir`.
    pub async fn start(
        binary: &str,
        env: &[(String, String)],
        addr_var: &str,
        log_dir: &Path,
    ) -> Self {
        let port = free_port();
        let name = Path::new(binary)
            .file_name()
            .map_or("service".into(), |n| n.to_string_lossy().into_owned());
        let log = log_dir.join(format!("{name}-{port}.log"));
        let out = std::fs::File::create(&log).expect("cannot create the log file");
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(addr_var, format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            .stdout(out.try_clone().expect("cannot share the log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {binary}: {err}"));
        let process = Self { child, port, log };
        let url = format!("{}/health/live", process.base_url());
        let client = http();
        eventually(Duration::from_secs(30), "the service to answer", || {
            let request = client.get(&url).send();
            async move {
                request
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(drop)
            }
        })
        .await;
        process
    }

    /// `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub async fn terminate(self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIGTERM");
        self.wait().await
    }

    /// Waits for the process to exit; returns the exit code.
    pub async fn wait(mut self) -> Option<i32> {
        let status = eventually(Duration::from_secs(30), "the service to exit", || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await;
        status.code()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
