//! `.env.example` against the binaries' command lines: every environment variable a
//! service reads is a clap argument (`env = ...`), so `<binary> --help` lists it with
//! its default; this test keeps `.env.example` listing the same variables with the
//! same defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::CommandFactory;

/// One variable a binary reads.
#[derive(Debug)]
struct Setting {
    binary: &'static str,
    env: String,
    long: Option<String>,
    default: Option<String>,
    hidden_value: bool,
}

/// The services' command lines.
fn binaries() -> Vec<(&'static str, clap::Command)> {
    vec![
        ("command-api", command_api::cli::Cli::command()),
        ("projector", projector::cli::Cli::command()),
        ("query-api", query_api::cli::Cli::command()),
        ("payment-gateway", payment_gateway::cli::Cli::command()),
        ("notifier", notifier::cli::Cli::command()),
    ]
}

/// Every argument with an environment variable, in `cmd` and its subcommands.
fn settings_of(binary: &'static str, cmd: &clap::Command, into: &mut Vec<Setting>) {
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            into.push(Setting {
                binary,
                env: env.to_string_lossy().into_owned(),
                long: arg.get_long().map(str::to_owned),
                default: (!defaults.is_empty()).then(|| defaults.join(",")),
                hidden_value: arg.is_hide_env_values_set(),
            });
        }
    }
    for sub in cmd.get_subcommands() {
        settings_of(binary, sub, into);
    }
}

fn settings() -> Vec<Setting> {
    let mut all = Vec::new();
    for (binary, cmd) in binaries() {
        settings_of(binary, &cmd, &mut all);
    }
    assert!(!all.is_empty());
    all
}

/// A line of `.env.example` naming a variable: `NAME=value` (active, with its value)
/// or `# NAME=...` (documented, left unset).
#[derive(Debug)]
struct Example {
    line: usize,
    name: String,
    value: Option<String>,
}

fn env_example() -> Vec<Example> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env.example");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let (commented, rest) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let Some((name, value)) = rest.split_once('=') else {
            assert!(
                commented || line.is_empty(),
                ".env.example line {}: neither a comment nor NAME=value: {line}",
                i + 1
            );
            continue;
        };
        let is_name = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !is_name {
            assert!(
                commented,
                ".env.example line {}: {name:?} is not a variable name",
                i + 1
            );
            continue;
        }
        examples.push(Example {
            line: i + 1,
            name: name.to_owned(),
            value: (!commented).then(|| value.trim().to_owned()),
        });
    }
    assert!(!examples.is_empty());
    examples
}

#[test]
fn every_variable_a_binary_reads_is_in_env_example() {
    let listed: BTreeSet<String> = env_example().into_iter().map(|e| e.name).collect();
    let mut missing: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for setting in settings() {
        if !listed.contains(&setting.env) {
            missing.entry(setting.env).or_default().push(setting.binary);
        }
    }
    assert!(
        missing.is_empty(),
        "read by the binaries but not in .env.example: {missing:?}"
    );
}

#[test]
fn every_variable_in_env_example_is_read_by_a_binary() {
    let read: BTreeSet<String> = settings().into_iter().map(|s| s.env).collect();
    let unread: Vec<String> = env_example()
        .into_iter()
        .filter(|e| !read.contains(&e.name))
        .map(|e| format!("{} (line {})", e.name, e.line))
        .collect();
    assert!(
        unread.is_empty(),
        "in .env.example but read by no binary: {unread:?}"
    );
}

#[test]
fn the_values_in_env_example_are_the_defaults() {
    let settings = settings();
    let mut wrong = Vec::new();
    for example in env_example() {
        let Some(value) = &example.value else {
            continue;
        };
        for setting in settings.iter().filter(|s| s.env == example.name) {
            if let Some(default) = &setting.default {
                if default != value {
                    wrong.push(format!(
                        "{}={value} (line {}), but {}'s default is {default}",
                        example.name, example.line, setting.binary
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The help of each option: from its `--name` line to the next option or blank line.
fn option_blocks(help: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut open = false;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            blocks.push(line.to_owned());
            open = true;
        } else if trimmed.is_empty() || !line.starts_with(' ') {
            open = false;
        } else if open {
            let block = blocks.last_mut().expect("an open block");
            block.push('\n');
            block.push_str(line);
        }
    }
    blocks
}

/// What `--help` prints (the short help: no argument has a long one) lists every
/// variable with its default, and says that an empty variable counts as unset.
#[test]
fn help_lists_every_variable_with_its_default() {
    for (binary, mut cmd) in binaries() {
        let help = cmd.render_help().to_string();
        assert!(help.contains("an empty variable counts as unset"), "{help}");
        let blocks = option_blocks(&help);
        let mut own = Vec::new();
        settings_of(binary, &cmd, &mut own);
        for setting in own {
            let env = &setting.env;
            let block = blocks
                .iter()
                .find(|block| {
                    block.contains(&format!("[env: {env}]"))
                        || block.contains(&format!("[env: {env}="))
                })
                .unwrap_or_else(|| panic!("`{binary} --help` does not list {env}:\n{help}"));
            if let Some(default) = &setting.default {
                assert!(
                    block.contains(&format!("[default: {default}]")),
                    "`{binary} --help` does not give {env}'s default {default}: {block}"
                );
            }
        }
    }
}

#[test]
fn secrets_are_never_shown() {
    for setting in settings() {
        let env = &setting.env;
        let secret =
            env.contains("SECRET") || env.ends_with("_KEY") || env.ends_with("DATABASE_URL");
        assert!(
            !secret || setting.hidden_value,
            "{env} of {} may hold a secret: declare it with hide_env_values = true",
            setting.binary
        );
    }
}

#[test]
fn each_option_is_named_after_its_variable() {
    for setting in settings() {
        let env = &setting.env;
        let expected = env
            .strip_prefix("BOXOFFICE_")
            .unwrap_or(env)
            .to_ascii_lowercase()
            .replace('_', "-");
        assert_eq!(
            setting.long.as_deref(),
            Some(expected.as_str()),
            "{env} of {}: the option should be --{expected}",
            setting.binary
        );
    }
}

/// The services read their settings through clap alone (tests and the bench have
/// variables of their own, `BOXOFFICE_TEST_*` and the like, and are not scanned).
#[test]
fn no_service_reads_the_environment_behind_clap() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for krate in [
        "domain",
        "platform",
        "read-model",
        "command-api",
        "projector",
        "query-api",
        "payment-gateway",
        "notifier",
    ] {
        scan(&root.join(krate).join("src"), &mut found);
    }
    assert!(
        found.is_empty(),
        "read the environment outside clap (make it a setting): {found:#?}"
    );
}

fn scan(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.contains("env::var") || line.contains("from_default_env") {
                    found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
}
