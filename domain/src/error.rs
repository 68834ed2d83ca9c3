//! What every refusal of the domain has in common: a kind the edge maps to a status
//! code, and a stable snake_case code clients can match on.

/// How a refusal is to be understood by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The aggregate the command names does not exist (HTTP 404).
    NotFound,
    /// The command is well formed but the current state refuses it (HTTP 409).
    Conflict,
    /// The command contradicts a rule about its own content (HTTP 422).
    Invalid,
    /// The caller may not do this to this aggregate (HTTP 403).
    Forbidden,
}

/// Implemented by the error type of every aggregate.
pub trait DomainError: std::error::Error {
    /// How the refusal is to be understood.
    fn kind(&self) -> ErrorKind;
    /// A stable snake_case code, for example `sold_out`.
    fn code(&self) -> &'static str;
}
