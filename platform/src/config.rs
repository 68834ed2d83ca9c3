//! Settings. Every service reads its configuration with clap: each setting is an option
//! with an environment variable (`#[arg(long, env = "NAME", ...)]`), so `<binary> --help`
//! lists every variable, what it does and its default, and `.env.example` is checked
//! against that list (`bench/tests/env_example.rs`).
//!
//! Conventions: the option is the variable without its `BOXOFFICE_` prefix, in lower
//! case with dashes (`BOXOFFICE_RELAY_BATCH` is `--relay-batch`); a variable set to
//! nothing counts as unset ([`empty_is_unset`], the value parser of every setting);
//! secrets and database URLs are declared with `hide_env_values = true`, so `--help`
//! does not show them, and the settings holding them have no `Debug` that would.

use std::ffi::OsStr;
use std::fmt::Display;
use std::marker::PhantomData;
use std::str::FromStr;

use anyhow::anyhow;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

/// The `--help` footer of every binary: how its settings are read.
pub const ENV_HELP: &str = "Every setting is also read from the environment variable shown \
                            with it; an empty variable counts as unset.";

/// The value parser of every setting: a value set to nothing (as compose writes
/// `${VAR:-}`) counts as unset, so the argument's default applies (and an optional
/// string stays empty, which [`set`] turns into `None`); any other value is parsed with
/// `T`'s `FromStr`, and refused with an error naming the variable.
pub fn empty_is_unset<T>() -> EmptyIsUnset<T> {
    EmptyIsUnset(PhantomData)
}

/// See [`empty_is_unset`].
pub struct EmptyIsUnset<T>(PhantomData<fn() -> T>);

impl<T> Clone for EmptyIsUnset<T> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<T> TypedValueParser for EmptyIsUnset<T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: Display,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let value = match arg.and_then(|arg| arg.get_default_values().first()) {
            Some(default) if value.is_empty() => default.as_os_str(),
            _ => value,
        };
        let invalid = |reason: &dyn Display| {
            let (name, hidden) = arg.map_or((String::from("a setting"), false), |arg| {
                let long = arg.get_long().unwrap_or_default();
                let name = match arg.get_env() {
                    Some(env) => format!("{} (--{long})", env.to_string_lossy()),
                    None => format!("--{long}"),
                };
                (name, arg.is_hide_env_values_set())
            });
            let message = if hidden {
                format!("invalid value for {name}: {reason}")
            } else {
                format!(
                    "invalid value {:?} for {name}: {reason}",
                    value.to_string_lossy()
                )
            };
            clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n")).with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| invalid(&"it is not UTF-8"))?;
        text.parse().map_err(|err| invalid(&err))
    }
}

/// The value of an optional setting, `None` when unset or set to nothing.
pub fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.is_empty())
}

/// The value of a setting the service cannot run without; an error naming its
/// variable when it is unset or set to nothing. (Such settings are not required by
/// clap: the subcommands that do not need them run without them.)
pub fn required(name: &str, value: &Option<String>) -> anyhow::Result<String> {
    set(value)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{name} must be set"))
}

/// The first of `candidates` (variable, value) that is set; an error naming them all
/// when none is.
pub fn first_set(candidates: &[(&str, &Option<String>)]) -> anyhow::Result<String> {
    candidates
        .iter()
        .find_map(|(_, value)| set(value))
        .map(str::to_owned)
        .ok_or_else(|| {
            let names: Vec<&str> = candidates.iter().map(|(name, _)| *name).collect();
            anyhow!("none of {} is set", names.join(", "))
        })
}

/// The settings `S` from the environment alone (no command-line arguments), as
/// `binary` would read them; errors name the variable at fault. For `Config::from_env`.
pub fn from_env<S: clap::Args + clap::FromArgMatches>(binary: &'static str) -> anyhow::Result<S> {
    parse(S::augment_args(clap::Command::new(binary)), [binary])
}

/// The settings `S` from command-line `args` alone (without the binary's name), the
/// environment ignored: what an empty environment gives, for tests.
pub fn from_args<S: clap::Args + clap::FromArgMatches>(args: &[&str]) -> anyhow::Result<S> {
    let cmd = S::augment_args(clap::Command::new("settings"))
        .mut_args(|arg| arg.env(None::<&'static str>));
    parse(cmd, std::iter::once("settings").chain(args.iter().copied()))
}

fn parse<'a, S: clap::FromArgMatches>(
    cmd: clap::Command,
    args: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<S> {
    let matches = cmd.try_get_matches_from(args).map_err(plain)?;
    S::from_arg_matches(&matches).map_err(plain)
}

/// clap's error as a message of its own (clap's starts with `error: `).
fn plain(err: clap::Error) -> anyhow::Error {
    let text = err.render().to_string();
    anyhow!("{}", text.trim_start_matches("error: ").trim_end())
}

#[cfg(test)]
mod tests {
    use clap::{Arg, Command};

    use super::*;

    fn command() -> Command {
        Command::new("t")
            .arg(
                Arg::new("batch")
                    .long("batch")
                    .env("BOXOFFICE_TEST_UNSET_BATCH")
                    .default_value("500")
                    .value_parser(empty_is_unset::<u32>()),
            )
            .arg(
                Arg::new("secret")
                    .long("secret")
                    .env("BOXOFFICE_TEST_UNSET_SECRET")
                    .hide_env_values(true)
                    .value_parser(empty_is_unset::<u8>()),
            )
    }

    fn batch(args: &[&str]) -> Result<u32, String> {
        command()
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .map(|m| *m.get_one::<u32>("batch").unwrap())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn an_empty_value_is_the_default() {
        assert_eq!(batch(&[]), Ok(500));
        assert_eq!(batch(&["--batch", ""]), Ok(500));
        assert_eq!(batch(&["--batch", "7"]), Ok(7));
    }

    #[test]
    fn an_invalid_value_is_refused_naming_the_variable() {
        let err = batch(&["--batch", "lots"]).unwrap_err();
        assert!(
            err.contains("invalid value \"lots\" for BOXOFFICE_TEST_UNSET_BATCH (--batch)"),
            "{err}"
        );
    }

    #[test]
    fn a_hidden_value_is_not_repeated_in_errors() {
        let err = command()
            .try_get_matches_from(["t", "--secret", "hunter2"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("BOXOFFICE_TEST_UNSET_SECRET"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn from_args_names_the_variable_at_fault() {
        #[derive(Debug, clap::Parser)]
        struct Settings {
            /// A batch.
            #[arg(long, env = "BOXOFFICE_TEST_UNSET_BATCH", default_value_t = 500, value_parser = empty_is_unset::<u32>())]
            batch: u32,
        }
        assert_eq!(from_args::<Settings>(&[]).unwrap().batch, 500);
        let err = from_args::<Settings>(&["--batch", "x"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid value \"x\" for --batch:"), "{err}");
    }

    #[test]
    fn optional_and_required_values() {
        let empty = Some(String::new());
        let url = Some("postgres://db".to_owned());
        assert_eq!(set(&empty), None);
        assert_eq!(set(&url), Some("postgres://db"));
        assert_eq!(
            required("DATABASE_URL", &empty).unwrap_err().to_string(),
            "DATABASE_URL must be set"
        );
        assert_eq!(
            first_set(&[("A", &None), ("B", &empty), ("C", &url)]).unwrap(),
            "postgres://db"
        );
        assert_eq!(
            first_set(&[("A", &None), ("B", &empty)])
                .unwrap_err()
                .to_string(),
            "none of A, B is set"
        );
    }
}
