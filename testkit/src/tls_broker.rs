//! A broker that speaks TLS only: a private tansu (which has no TLS of its own) behind
//! nginx's `stream` module, which ends TLS with a certificate made for the test by a CA
//! of its own. tansu advertises the TLS port, so every connection a client makes, the
//! first and those the metadata points it to, goes through TLS. `scripts/test` installs
//! nginx with its stream module and exports `BOXOFFICE_NGINX_BIN`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use platform::kafka::{KafkaSecurity, SecurityProtocol};

use crate::{eventually, free_port, PrivateBroker};

/// Where Debian's `libnginx-mod-stream` puts the module.
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// tansu behind a TLS proxy.
pub struct TlsBroker {
    /// The TLS port on 127.0.0.1: the only address clients are given.
    pub port: u16,
    /// The CA certificate that signed the proxy's certificate (a PEM file).
    pub ca: PathBuf,
    dir: PathBuf,
    proxy: Child,
    _broker: PrivateBroker,
}

impl TlsBroker {
    /// Makes a CA and a certificate for 127.0.0.1, starts tansu and the proxy, and
    /// waits until the proxy accepts connections.
    pub async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("boxoffice-tls-broker-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create the TLS broker's directory");
        make_certificates(&dir);
        let broker = PrivateBroker::start_advertising(free_port(), port).await;
        let conf = format!(
            "load_module {STREAM_MODULE};\n\
             daemon off;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             stream {{\n\
               server {{\n\
                 listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {dir}/server.pem;\n\
                 ssl_certificate_key {dir}/server.key;\n\
                 proxy_pass 127.0.0.1:{upstream};\n\
               }}\n\
             }}\n",
            dir = dir.display(),
            upstream = broker.port,
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("cannot write nginx.conf");
        let proxy = crate::front_door::nginx(&dir, &conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nginx");
        let addr = format!("127.0.0.1:{port}");
        eventually(Duration::from_secs(20), "the TLS proxy to listen", || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(drop) }
        })
        .await;
        Self {
            port,
            ca: dir.join("ca.pem"),
            dir,
            proxy,
            _broker: broker,
        }
    }

    /// `host:port`, for clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The settings of a client that trusts the test's CA.
    pub fn security(&self) -> KafkaSecurity {
        KafkaSecurity {
            kafka_security_protocol: SecurityProtocol::Ssl,
            kafka_ssl_ca_location: Some(self.ca.display().to_string()),
            ..KafkaSecurity::PLAINTEXT
        }
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        crate::front_door::stop_nginx(&mut self.proxy);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, and a server certificate for 127.0.0.1 it signs, with the `openssl` tool.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("cannot run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=boxoffice test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .expect("cannot write san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}
