//! The SMTP sink (`scripts/smtp-sink.py` through `testkit::smtp`), spoken to in plain
//! SMTP: what it writes, the refusals it is made to give, and a stop and a restart.

use std::time::Duration;

use testkit::smtp::{Mail, SmtpSink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(10);

/// A minimal SMTP client: one command, one reply.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    /// Connects and reads the greeting.
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("cannot connect to the sink");
        let mut client = Self {
            stream: BufReader::new(stream),
        };
        let (code, text) = client.reply().await;
        assert_eq!(code, 220, "greeting: {text}");
        client
    }

    /// A reply: its code and its text (the lines of a multi-line one joined by `\n`).
    async fn reply(&mut self) -> (u16, String) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WITHIN, self.stream.read_line(&mut line))
                .await
                .expect("no reply from the sink in time")
                .expect("cannot read the reply");
            assert!(read > 0, "the sink closed the connection");
            let line = line.trim_end();
            assert!(line.len() >= 3, "not an SMTP reply: {line:?}");
            let code = line[..3].parse().expect("not an SMTP reply code");
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            // `250-...` continues, `250 ...` ends.
            if line.as_bytes().get(3) != Some(&b'-') {
                return (code, lines.join("\n"));
            }
        }
    }

    /// Sends `line` (CRLF added) and reads the reply.
    async fn command(&mut self, line: &str) -> (u16, String) {
        self.write(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream
            .get_mut()
            .write_all(bytes)
            .await
            .expect("cannot write to the sink");
    }

    /// DATA with `message` (LF or CRLF lines), dot-stuffed; the final reply.
    async fn data(&mut self, message: &str) -> (u16, String) {
        let (code, text) = self.command("DATA").await;
        assert_eq!(code, 354, "DATA: {text}");
        let mut wire = String::new();
        for line in message.replace("\r\n", "\n").lines() {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.write(wire.as_bytes()).await;
        self.reply().await
    }

    /// One message to `to` (each must be accepted), from `from`.
    async fn send(&mut self, from: &str, to: &[&str], message: &str) {
        let (code, text) = self.command(&format!("MAIL FROM:<{from}>")).await;
        assert_eq!(code, 250, "MAIL FROM: {text}");
        for rcpt in to {
            let (code, text) = self.command(&format!("RCPT TO:<{rcpt}>")).await;
            assert_eq!(code, 250, "RCPT TO {rcpt}: {text}");
        }
        let (code, text) = self.data(message).await;
        assert_eq!(code, 250, "end of DATA: {text}");
    }
}

const PLAIN: &str = "From: boxoffice <tickets@boxoffice.test>\n\
To: Alice <alice@example.test>, bob@example.test\n\
Subject: Your booking\n\
Message-ID: <plain-1@boxoffice.test>\n\
X-Booking-Id: b-42\n\
\n\
Two seats are yours.\n\
.a line that starts with a dot\n";

const MULTIPART: &str = "From: tickets@boxoffice.test\n\
To: carol@example.test\n\
Subject: =?utf-8?q?Your_tickets_=E2=9C=93?=\n\
Message-ID: <multi-2@boxoffice.test>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"outer\"\n\
\n\
--outer\n\
Content-Type: multipart/alternative; boundary=\"inner\"\n\
\n\
--inner\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
Row 4, seats 7 and 8.\n\
--inner\n\
Content-Type: text/html; charset=utf-8\n\
\n\
<p>Row 4, seats 7 and 8.</p>\n\
--inner--\n\
--outer\n\
Content-Type: application/pdf; name=\"ticket.pdf\"\n\
Content-Disposition: attachment; filename=\"ticket.pdf\"\n\
Content-Transfer-Encoding: base64\n\
\n\
JVBERi0xLjQK\n\
--outer--\n";

#[tokio::test]
async fn the_sink_writes_what_it_accepts_refuses_as_told_and_restarts() {
    let mut sink = SmtpSink::start().await;
    assert_eq!(sink.url(), format!("smtp://127.0.0.1:{}", sink.port()));
    assert!(sink.messages().is_empty());

    let mut client = Client::connect(sink.port()).await;
    let (code, text) = client.command("EHLO test.example").await;
    assert_eq!(code, 250, "EHLO: {text}");
    let (code, _) = client.command("MAIL FROM:<shop@boxoffice.test>").await;
    assert_eq!(code, 250);
    let (code, _) = client.command("RCPT TO:<alice@example.test>").await;
    assert_eq!(code, 250);
    let (code, text) = client.command("RCPT TO:<reject-me@example.test>").await;
    assert_eq!(
        (code, text.as_str()),
        (550, "5.1.1 mailbox unavailable"),
        "a permanent failure"
    );
    let (code, text) = client.command("RCPT TO:<Defer.later@example.test>").await;
    assert_eq!(
        (code, text.as_str()),
        (451, "4.3.0 try again later"),
        "a temporary failure"
    );
    let (code, _) = client.command("RCPT TO:<bob@example.test>").await;
    assert_eq!(code, 250);
    let (code, text) = client.data(PLAIN).await;
    assert_eq!(code, 250, "end of DATA: {text}");

    // A second message on the same connection.
    client
        .send("shop@boxoffice.test", &["carol@example.test"], MULTIPART)
        .await;

    // Every recipient refused: no message.
    let (code, _) = client.command("MAIL FROM:<shop@boxoffice.test>").await;
    assert_eq!(code, 250);
    let (code, _) = client.command("RCPT TO:<reject@example.test>").await;
    assert_eq!(code, 550);
    let (code, _) = client.command("DATA").await;
    assert_eq!(code, 503, "DATA without an accepted recipient");
    let (code, _) = client.command("QUIT").await;
    assert_eq!(code, 221);

    let mails = sink.wait_for(2, WITHIN).await;
    assert_eq!(mails.len(), 2, "{mails:#?}");
    check_plain(&mails[0]);
    check_multipart(&mails[1]);
    assert!(mails.iter().all(|m| m.path.starts_with(sink.dir())));

    // Stopped, the port refuses; restarted, the same port and folder.
    sink.stop().await;
    let refused = TcpStream::connect(("127.0.0.1", sink.port())).await;
    assert!(
        refused.is_err(),
        "the port still accepts connections after stop()"
    );
    let dir = sink.dir().to_owned();
    sink.restart().await;
    assert_eq!(sink.dir(), dir);
    let mut client = Client::connect(sink.port()).await;
    let (code, _) = client.command("HELO again.example").await;
    assert_eq!(code, 250);
    client
        .send(
            "",
            &["dave@example.test"],
            "Subject: after the restart\n\nhello\n",
        )
        .await;
    let (code, _) = client.command("QUIT").await;
    assert_eq!(code, 221);

    let mails = sink.wait_for(3, WITHIN).await;
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["Your booking", "Your tickets ✓", "after the restart"],
        "in arrival order"
    );
    let last = &mails[2];
    assert_eq!(last.return_path, "", "the null sender");
    assert!(last.raw_text().starts_with("Return-Path: <>\r\n"));
    assert_eq!(last.delivered_to, ["dave@example.test"]);
    assert_eq!(last.text.as_deref(), Some("hello\r\n"));
}

fn check_plain(mail: &Mail) {
    let raw = mail.raw_text();
    assert!(
        raw.starts_with(
            "Return-Path: <shop@boxoffice.test>\r\n\
             Delivered-To: alice@example.test\r\n\
             Delivered-To: bob@example.test\r\n\
             From: boxoffice <tickets@boxoffice.test>\r\n"
        ),
        "the envelope, then the message as sent: {raw}"
    );
    assert_eq!(mail.return_path, "shop@boxoffice.test");
    assert_eq!(
        mail.delivered_to,
        ["alice@example.test", "bob@example.test"],
        "the accepted recipients only"
    );
    assert_eq!(mail.from, "boxoffice <tickets@boxoffice.test>");
    assert_eq!(mail.to, "Alice <alice@example.test>, bob@example.test");
    assert_eq!(mail.subject, "Your booking");
    assert_eq!(mail.message_id, "plain-1@boxoffice.test");
    assert_eq!(mail.header("x-booking-id").as_deref(), Some("b-42"));
    assert_eq!(mail.header("X-Missing"), None);
    assert_eq!(
        mail.text.as_deref(),
        Some("Two seats are yours.\r\n.a line that starts with a dot\r\n"),
        "dot-stuffing undone"
    );
    assert_eq!(mail.html, None);
    assert!(mail.attachments.is_empty());
}

fn check_multipart(mail: &Mail) {
    assert_eq!(mail.delivered_to, ["carol@example.test"]);
    assert_eq!(mail.from, "tickets@boxoffice.test");
    assert_eq!(mail.subject, "Your tickets ✓", "decoded");
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your tickets ✓"),
        "decoded"
    );
    assert_eq!(mail.message_id, "multi-2@boxoffice.test");
    assert_eq!(mail.text.as_deref(), Some("Row 4, seats 7 and 8."));
    assert_eq!(mail.html.as_deref(), Some("<p>Row 4, seats 7 and 8.</p>"));
    assert_eq!(mail.attachments.len(), 1, "{:#?}", mail.attachments);
    let ticket = &mail.attachments[0];
    assert_eq!(ticket.filename.as_deref(), Some("ticket.pdf"));
    assert_eq!(ticket.content_type, "application/pdf");
    assert_eq!(ticket.body, b"%PDF-1.4\n");
}
