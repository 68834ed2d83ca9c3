//! A real SMTP server for a test: `scripts/smtp-sink.py` (aiosmtpd), a private one per
//! test on a free loopback port, writing every message it accepts as an `.eml` file to
//! a folder of its own. A recipient whose local part starts with `reject` is refused
//! with 550 (permanent), one starting with `defer` with 451 (temporary); a message to
//! one starting with `slow` is written at once and answered 250 three seconds later. `scripts/test`
//! installs aiosmtpd and exports `BOXOFFICE_SMTP_PYTHON` (the venv's python) and
//! `BOXOFFICE_SMTP_SINK` (the script); without them the venv of
//! `ensure_aiosmtpd_installed` (`.local/aiosmtpd/venv`) and the repository's script
//! are used.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

use crate::{eventually_or, free_port};

/// How long the sink may take to listen, and to exit on SIGTERM.
const START_WITHIN: Duration = Duration::from_secs(20);
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// What to run when the sink cannot start.
const INSTALL_HINT: &str = "install aiosmtpd with `bash -c 'source scripts/lib.sh && \
    ensure_aiosmtpd_installed'` from the repository root (scripts/test does it and exports \
    BOXOFFICE_SMTP_PYTHON and BOXOFFICE_SMTP_SINK)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The python of the aiosmtpd venv.
fn python() -> PathBuf {
    std::env::var_os("BOXOFFICE_SMTP_PYTHON").map_or_else(
        || repo_root().join(".local/aiosmtpd/venv/bin/python"),
        PathBuf::from,
    )
}

/// `scripts/smtp-sink.py`.
fn script() -> PathBuf {
    std::env::var_os("BOXOFFICE_SMTP_SINK")
        .map_or_else(|| repo_root().join("scripts/smtp-sink.py"), PathBuf::from)
}

/// An SMTP server of the test's own (see the module's documentation). Killed, and its
/// folder deleted, when dropped.
pub struct SmtpSink {
    port: u16,
    /// Its temporary directory: the log, and `mail/`.
    root: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

/// Why a start failed.
enum StartError {
    /// The process exited at once (with "address already in use" when another process
    /// took the port in the meantime).
    Exited(String),
    /// It did not answer in time.
    TimedOut,
}

impl SmtpSink {
    /// Starts a sink on a free loopback port, in a fresh temporary folder, and waits
    /// until it accepts connections.
    pub async fn start() -> Self {
        // A free port can be taken by another process before the sink binds it: then
        // try another.
        for attempt in 1..=3 {
            let port = free_port();
            let root = std::env::temp_dir().join(format!("boxoffice-smtp-{port}"));
            let _ = std::fs::remove_dir_all(&root);
            let dir = root.join("mail");
            std::fs::create_dir_all(&dir).expect("cannot create the SMTP sink's folder");
            let mut sink = Self {
                port,
                root,
                dir,
                child: None,
            };
            match sink.spawn().await {
                Ok(()) => return sink,
                Err(StartError::Exited(log))
                    if attempt < 3 && log.contains("address already in use") => {}
                Err(err) => sink.fail(err),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the messages land in, one `.eml` file each.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGTERM, and waits until it has exited: the port refuses connections afterwards.
    /// The messages stay.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "cannot send SIGTERM to the SMTP sink"
        );
        let exited = eventually_or(STOP_WITHIN, || {
            let status = child.try_wait().ok().flatten();
            async move { status }
        })
        .await;
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SMTP sink did not exit within {STOP_WITHIN:?} of SIGTERM; its log:\n{}",
                self.log()
            );
        }
    }

    /// Starts it again after [`stop`](Self::stop): the same port, the same folder (the
    /// messages so far stay, new ones sort after them). Stops it first if it runs.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Err(err) = self.spawn().await {
            self.fail(err);
        }
    }

    /// Every message so far, in arrival order.
    pub fn messages(&self) -> Vec<Mail> {
        self.files()
            .iter()
            .filter_map(|path| match std::fs::read(path) {
                Ok(raw) => Some(Mail::parse(path.clone(), raw)),
                // Deleted by the test since it was listed.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => panic!("cannot read {}: {err}", path.display()),
            })
            .collect()
    }

    /// Polls until at least `count` messages have arrived, and returns them all (in
    /// arrival order). Fails the test after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Mail> {
        let arrived = eventually_or(within, || {
            let enough = self.files().len() >= count;
            async move { enough.then_some(()) }
        })
        .await;
        if arrived.is_none() {
            let got = self.messages();
            let subjects: Vec<&str> = got.iter().map(|m| m.subject.as_str()).collect();
            panic!(
                "timed out after {within:?} waiting for {count} message(s) in {}: {} arrived \
                 (subjects {subjects:?}); the sink's log:\n{}",
                self.dir.display(),
                got.len(),
                self.log()
            );
        }
        self.messages()
    }

    /// The `.eml` files, sorted by name: in arrival order (the sink names them so). A
    /// file being written has a name starting with `.`.
    fn files(&self) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(&self.dir)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", self.dir.display()));
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let name = path.file_name()?.to_str()?;
                (name.ends_with(".eml") && !name.starts_with('.')).then_some(path)
            })
            .collect();
        files.sort();
        files
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("smtp-sink.log")
    }

    /// What the sink printed (its start, a line per message, any error).
    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs the sink on `self.port` and waits until it greets.
    async fn spawn(&mut self) -> Result<(), StartError> {
        let (python, script) = (python(), script());
        for (what, path) in [("python", &python), ("script", &script)] {
            assert!(
                path.exists(),
                "the SMTP sink's {what} {} does not exist: {INSTALL_HINT}",
                path.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("cannot open the SMTP sink's log");
        let child = Command::new(&python)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot share the SMTP sink's log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {} {}: {err}; {INSTALL_HINT}",
                    python.display(),
                    script.display()
                )
            });
        let child = self.child.insert(child);
        let addr = format!("127.0.0.1:{}", self.port);
        let ready = eventually_or(START_WITHIN, || {
            let exited = child.try_wait().ok().flatten();
            let addr = addr.clone();
            async move {
                if exited.is_some() {
                    return Some(false);
                }
                greets(&addr).await.then_some(true)
            }
        })
        .await;
        match ready {
            Some(true) => Ok(()),
            Some(false) => {
                self.child = None;
                Err(StartError::Exited(self.log()))
            }
            None => Err(StartError::TimedOut),
        }
    }

    fn fail(&mut self, err: StartError) -> ! {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let what = match err {
            StartError::Exited(_) => "exited during start-up".to_owned(),
            StartError::TimedOut => format!("did not accept connections within {START_WITHIN:?}"),
        };
        panic!(
            "the SMTP sink ({} {}) on 127.0.0.1:{} {what}. If aiosmtpd is missing: \
             {INSTALL_HINT}. Its log:\n{}",
            python().display(),
            script().display(),
            self.port,
            self.log()
        );
    }
}

/// Whether an smtp-sink answers at `addr` (its greeting names it: not another server
/// that took the port).
async fn greets(addr: &str) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stream);
    let read = tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line)).await;
    matches!(read, Ok(Ok(_))) && line.starts_with("220 ") && line.contains("smtp-sink")
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One message the sink received, parsed (with `mail-parser`).
#[derive(Debug, Clone)]
pub struct Mail {
    /// The file, as the sink wrote it: `Return-Path`, `Delivered-To`, then the message
    /// as the client sent it.
    pub raw: Vec<u8>,
    /// The file it is in.
    pub path: PathBuf,
    /// The envelope's sender (MAIL FROM), from `Return-Path`; empty for `<>`.
    pub return_path: String,
    /// The envelope's recipients the sink accepted (RCPT TO), from `Delivered-To`.
    pub delivered_to: Vec<String>,
    /// The `From` header: `Name <address>` or `address`, several joined with `, `
    /// (display names decoded). Empty when missing.
    pub from: String,
    /// The `To` header, as `from`.
    pub to: String,
    /// The `Subject`, decoded. Empty when missing.
    pub subject: String,
    /// The `Message-ID`, without its angle brackets. Empty when missing.
    pub message_id: String,
    /// The first text/plain body part, decoded (none for an HTML-only message).
    pub text: Option<String>,
    /// The first text/html body part, decoded.
    pub html: Option<String>,
    /// The attachments (inline ones too), decoded.
    pub attachments: Vec<Attachment>,
    /// Every header of the message, in order: its name as written, its value unfolded
    /// (unstructured text, such as `Subject`, decoded).
    pub headers: Vec<(String, String)>,
}

/// An attachment of a [`Mail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// From `Content-Disposition: ...; filename=` or `Content-Type: ...; name=`.
    pub filename: Option<String>,
    /// `type/subtype`, in lower case (`application/octet-stream` when not given).
    pub content_type: String,
    /// The content, transfer encoding undone.
    pub body: Vec<u8>,
}

impl Mail {
    fn parse(path: PathBuf, raw: Vec<u8>) -> Self {
        let message = MessageParser::default()
            .parse(&raw)
            .unwrap_or_else(|| panic!("{} is not an e-mail message", path.display()));
        let headers: Vec<(String, String)> = message
            .headers()
            .iter()
            .map(|header| {
                let value = match header.value() {
                    HeaderValue::Text(text) => unfold(text),
                    _ => {
                        let start = header.offset_start() as usize;
                        let end = (header.offset_end() as usize).min(raw.len());
                        unfold(&String::from_utf8_lossy(&raw[start.min(end)..end]))
                    }
                };
                (header.name().to_owned(), value)
            })
            .collect();
        // The addresses the sink prepended, without angle brackets.
        let envelope = |name: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim_start_matches('<').trim_end_matches('>').to_owned())
                .collect()
        };
        let return_path = envelope("Return-Path")
            .into_iter()
            .next()
            .unwrap_or_default();
        let delivered_to = envelope("Delivered-To");
        let text = message.text_bodies().find_map(|part| match &part.body {
            PartType::Text(text) => Some(text.to_string()),
            _ => None,
        });
        let html = message.html_bodies().find_map(|part| match &part.body {
            PartType::Html(html) => Some(html.to_string()),
            _ => None,
        });
        let attachments = message
            .attachments()
            .map(|part| Attachment {
                filename: part.attachment_name().map(str::to_owned),
                content_type: part.content_type().map_or_else(
                    || "application/octet-stream".to_owned(),
                    |ct| match ct.subtype() {
                        Some(sub) => format!("{}/{sub}", ct.ctype()).to_ascii_lowercase(),
                        None => ct.ctype().to_ascii_lowercase(),
                    },
                ),
                body: part.contents().to_vec(),
            })
            .collect();
        Self {
            return_path,
            delivered_to,
            from: addresses(message.from()),
            to: addresses(message.to()),
            subject: message.subject().unwrap_or_default().to_owned(),
            message_id: message.message_id().unwrap_or_default().to_owned(),
            text,
            html,
            attachments,
            headers,
            path,
            raw,
        }
    }

    /// The first header called `name` (in any case): its value unfolded, unstructured
    /// text decoded (as in [`Mail::headers`]).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// The raw message as text (lossy), for assertions and failure messages.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// A header's value on one line: line breaks of folding removed, ends trimmed.
fn unfold(value: &str) -> String {
    value
        .replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_owned()
}

/// `Name <address>` or `address`, several joined with `, `.
fn addresses(address: Option<&Address<'_>>) -> String {
    let Some(address) = address else {
        return String::new();
    };
    address
        .iter()
        .map(|addr| {
            let email = addr.address().unwrap_or_default();
            match addr.name() {
                Some(name) if !name.is_empty() => format!("{name} <{email}>"),
                _ => email.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
