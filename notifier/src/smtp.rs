//! SMTP through lettre: the [`Mailer`] the sender sends with (connections kept open,
//! each exchange bounded by `SMTP_TIMEOUT_MS`), and what an answer means for the
//! message (sent, try again later, or give up).
//!
//! Why not lettre's pool as it is: an exchange cut off by a timeout is a dropped
//! future, and lettre puts a dropped exchange's connection back in its pool, in the
//! middle of the conversation. The answer that was late then arrives on it and is read
//! as the answer to the next command (the check lettre makes on taking a connection,
//! a `NOOP`, passes on it): every answer after it is one behind, and a message can be
//! recorded sent on answers that were not its own. So each exchange here gets a
//! transport of its own, of one connection; one whose exchange ended is kept for the
//! next, one cut off is dropped with its connection.

use std::sync::Mutex;
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// lettre's pooled transport.
pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Sends messages over connections kept open between them (`SMTP_POOL_SIZE` at most),
/// each exchange within `SMTP_TIMEOUT_MS`; a connection whose exchange was cut off is
/// never used again.
pub struct Mailer {
    url: String,
    timeout: Duration,
    keep: usize,
    /// Transports of one connection each, free for the next message.
    idle: Mutex<Vec<Transport>>,
}

impl Mailer {
    /// A mailer for `url` (see [`transport`]); connections are opened when needed.
    pub fn new(url: &str, timeout: Duration, pool_size: u32) -> anyhow::Result<Self> {
        check_url(url)?;
        Ok(Self {
            url: url.to_owned(),
            timeout,
            keep: usize::try_from(pool_size).unwrap_or(usize::MAX),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `message`; the whole exchange (connect, commands, data, answer) within the
    /// timeout, or it is a temporary failure and its connection is closed.
    pub async fn send(&self, message: Message) -> Outcome {
        let free = self.idle().pop();
        let transport = match free {
            Some(transport) => transport,
            None => match transport(&self.url, self.timeout, 1) {
                Ok(transport) => transport,
                Err(err) => return Outcome::Temporary(format!("cannot set up SMTP: {err}")),
            },
        };
        // lettre bounds the connect by its timeout, not the exchange: the whole is here.
        let Ok(outcome) = tokio::time::timeout(self.timeout, send(&transport, message)).await
        else {
            // Dropped with its transport: the late answer reaches no other message.
            return Outcome::Temporary("no answer from the SMTP server in time".into());
        };
        let mut idle = self.idle();
        if idle.len() < self.keep {
            idle.push(transport);
        }
        outcome
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Transport>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The transport for `url` (see `SMTP_URL`): `smtp://` tries STARTTLS when the server
/// offers it unless `?tls=none`; `?tls=required` insists on it; `smtps://` is TLS on
/// connect.
pub fn transport(url: &str, timeout: Duration, pool_size: u32) -> anyhow::Result<Transport> {
    let url = with_tls_default(url);
    let builder = Transport::from_url(&url)?;
    Ok(builder
        .timeout(Some(timeout))
        .pool_config(
            PoolConfig::new()
                .max_size(pool_size)
                .idle_timeout(Duration::from_secs(30)),
        )
        .build())
}

/// Whether `url` is one [`transport`] can use (without building the pool, which needs
/// a runtime).
pub fn check_url(url: &str) -> anyhow::Result<()> {
    Transport::from_url(&with_tls_default(url))?;
    Ok(())
}

/// lettre reads `smtp://` without a `tls` parameter as "never TLS": here it means
/// STARTTLS when offered (`tls=opportunistic`), and `tls=none` is the way to say never.
fn with_tls_default(url: &str) -> String {
    if !url.starts_with("smtp://") {
        return url.to_owned();
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if params.contains(&"tls=none") {
        params.retain(|p| *p != "tls=none");
    } else if !params.iter().any(|p| p.starts_with("tls=")) {
        params.push("tls=opportunistic");
    }
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server took the message.
    Accepted,
    /// Worth trying again later: a 4xx answer, the server unreachable, a timeout.
    Temporary(String),
    /// It will not work as it is: a 5xx answer.
    Permanent(String),
}

/// Sends `message`, and says how it ended.
pub async fn send(transport: &Transport, message: Message) -> Outcome {
    match transport.send(message).await {
        Ok(_) => Outcome::Accepted,
        Err(err) if err.is_permanent() => Outcome::Permanent(answer(&err)),
        Err(err) => Outcome::Temporary(answer(&err)),
    }
}

/// What the log keeps of a failure: the answer, addresses masked, at most 300
/// characters.
fn answer(err: &lettre::transport::smtp::Error) -> String {
    mask_addresses(&err.to_string()).chars().take(300).collect()
}

/// `text` with every e-mail address in it replaced by `<address>`: an SMTP answer
/// often repeats the recipient, and the sent log keeps no address.
pub fn mask_addresses(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || "<>()[],;\"'".contains(c))
        .map(|token| {
            let (word, end) = match token.char_indices().last() {
                Some((i, c)) if c.is_whitespace() || "<>()[],;\"'".contains(c) => {
                    (&token[..i], &token[i..])
                }
                _ => (token, ""),
            };
            match word.split_once('@') {
                Some((user, host)) if !user.is_empty() && host.contains('.') => {
                    format!("<address>{end}")
                }
                _ => token.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttls_is_tried_unless_said_otherwise() {
        assert_eq!(
            with_tls_default("smtp://u:p@mail:587"),
            "smtp://u:p@mail:587?tls=opportunistic"
        );
        assert_eq!(
            with_tls_default("smtp://mail:25?tls=none"),
            "smtp://mail:25"
        );
        assert_eq!(
            with_tls_default("smtp://mail:25?tls=required"),
            "smtp://mail:25?tls=required"
        );
        assert_eq!(with_tls_default("smtps://mail:465"), "smtps://mail:465");
        for url in ["smtp://127.0.0.1:2525", "smtps://mail.example.com:465"] {
            check_url(url).expect(url);
        }
        assert!(check_url("http://mail").is_err());
    }

    #[test]
    fn addresses_in_answers_are_masked() {
        assert_eq!(
            mask_addresses("permanent error (550): 5.1.1 <ada@example.com>: mailbox unavailable"),
            "permanent error (550): 5.1.1 <<address>>: mailbox unavailable"
        );
        assert_eq!(
            mask_addresses("rejected ada.l@mail.example.org today"),
            "rejected <address> today"
        );
        assert_eq!(mask_addresses("connection refused"), "connection refused");
    }
}
