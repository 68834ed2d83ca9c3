//! Reading configuration from the environment. Secrets are read here and never logged.

use std::str::FromStr;

use anyhow::{anyhow, Context};

/// The value of `name`, or `default` when it is unset or empty.
pub fn var_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => default.to_owned(),
    }
}

/// The value of `name`; an error naming the variable when it is unset or empty.
pub fn required(name: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(anyhow!("{name} must be set")),
    }
}

/// `name` parsed as `T`, or `default` when unset or empty.
pub fn parse_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .with_context(|| format!("{name}={value:?} is not valid")),
        _ => Ok(default),
    }
}
