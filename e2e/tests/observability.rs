//! Every metric that a Grafana dashboard (`ops/grafana/dashboards/*.json`) or a
//! Prometheus rule (`ops/prometheus/rules/*.yml`) names is one the services export.
//!
//! The stack runs one booking through (confirmed), one declined payment (a
//! compensation), a read-your-writes read and a rebuild of a projection; then every
//! service's `/metrics` is scraped, and the series names that its `# TYPE` lines stand
//! for (`_total` of a counter, `_bucket`/`_sum`/`_count` of a histogram, the name of a
//! gauge) are compared with the metric names in every `expr` of the dashboards and the
//! rules. A dashboard naming a metric nobody exports shows "No data" forever and an alert
//! on one never fires: this test names them instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Series Prometheus makes itself for every target it scrapes.
const MADE_BY_PROMETHEUS: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Keywords of PromQL that are neither functions nor metrics.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: every identifier that is not a
/// function (followed by `(`), a keyword, a label name (in `{...}` or in the list after
/// `by`, `on`, ...), a string, a number or duration, or a Grafana variable (`$...`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // Skips a quoted string starting at `i`; returns the index after it.
    let skip_string = |mut i: usize| {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            if chars[i] == '\\' && quote != '`' {
                i += 1;
            }
            i += 1;
        }
        i + 1
    };
    // Skips to after the bracket closing the one at `i` (strings inside skipped).
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(i);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '{' {
            // Label matchers: names and values, no metric.
            i = skip_group(i, '{', '}');
        } else if c == '$' {
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                i = skip_group(i, '{', '}');
            }
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (5m, 1h30m, 1e3).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            // An aggregation with its grouping first: `sum by (le) (...)`.
            let word: String = chars[next..]
                .iter()
                .take_while(|c| ident_char(**c))
                .collect();
            let grouped = matches!(word.to_ascii_lowercase().as_str(), "by" | "without");
            let lower = ident.to_ascii_lowercase();
            if called && LABEL_LISTS.contains(&lower.as_str()) {
                i = skip_group(next, '(', ')');
            } else if !called && !grouped && !KEYWORDS.contains(&lower.as_str()) {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

/// The files in `dir` whose names end with `extension`, sorted.
fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no *.{extension} in {}", dir.display());
    found
}

/// Every `expr` string in a dashboard, however deep (panels, rows, targets).
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The `expr:` values of a rule file: plain one-line values, quoted ones, and block
/// scalars (`expr: |` or `expr: >-` and the lines indented below).
fn rule_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        i += 1;
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - line.trim_start().len();
            let mut block = Vec::new();
            while i < lines.len() {
                let next = lines[i];
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                block.push(next.trim());
                i += 1;
            }
            exprs.push(block.join("\n"));
        } else {
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            exprs.push(unquoted.to_owned());
        }
    }
    exprs
}

/// Each metric name the dashboards and rules use, with the files using it.
fn used_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut note = |file: &Path, expr: &str| {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{}: an expression naming no metric: {expr}",
            file.display()
        );
        let file = file
            .strip_prefix(ops().parent().unwrap())
            .unwrap_or(file)
            .display()
            .to_string();
        for name in names {
            used.entry(name).or_default().insert(file.clone());
        }
    };
    for file in files(&ops().join("grafana/dashboards"), "json") {
        let text = std::fs::read_to_string(&file).unwrap();
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{}: not JSON: {err}", file.display()));
        let mut exprs = Vec::new();
        dashboard_exprs(&dashboard, &mut exprs);
        assert!(!exprs.is_empty(), "{}: no expr at all", file.display());
        exprs.iter().for_each(|e| note(&file, e));
    }
    for file in files(&ops().join("prometheus/rules"), "yml") {
        let text = std::fs::read_to_string(&file).unwrap();
        let exprs = rule_exprs(&text);
        assert!(!exprs.is_empty(), "{}: no expr at all", file.display());
        exprs.iter().for_each(|e| note(&file, e));
    }
    used
}

/// The series names an OpenMetrics exposition has, from its `# TYPE` lines (a
/// counter's samples are `<name>_total`, a histogram's `<name>_bucket`, `_sum` and
/// `_count`), and the sample lines' names besides.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[test]
fn observability_metric_names_are_told_from_functions_labels_and_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, command) (rate(boxoffice_command_duration_seconds_bucket{job="command-api", le!="+Inf"}[$__rate_interval])))
        / on (instance) group_left (state) max without (state) (boxoffice_payment_circuit_state == bool 1)
        and (sum(rate(payment_gateway_requests_total{status=~"5.."}[5m] offset 1h)) or vector(0)) > 0.5e-1
        unless up{job='x'} == 0 or ${var} > 1m
        or count without (instance) (topk(3, boxoffice_sagas_in_flight))"#;
    assert_eq!(
        metric_names(expr),
        [
            "boxoffice_command_duration_seconds_bucket",
            "boxoffice_payment_circuit_state",
            "boxoffice_sagas_in_flight",
            "payment_gateway_requests_total",
            "up",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<BTreeSet<_>>()
    );
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 1m\n      - alert: B\n        expr: |\n          sum(rate(x_total[5m]))\n            > 1\n        labels: {}\n      - record: r\n        expr: \"max(y)\"\n";
    assert_eq!(
        rule_exprs(rules),
        ["up == 0", "sum(rate(x_total[5m]))\n> 1", "max(y)"]
    );
    let exposition = "# HELP a_x X.\n# TYPE a_x counter\na_x_total 1\n# TYPE b histogram\nb_bucket{le=\"1\"} 0\n# TYPE c gauge\nc{k=\"v\"} 1\n# EOF\n";
    assert_eq!(
        exported(exposition),
        [
            "a_x_total",
            "a_x_created",
            "b_bucket",
            "b_sum",
            "b_count",
            "b_created",
            "c"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<BTreeSet<_>>()
    );
}

/// Waits until `booking` has `status` in query-api.
async fn until_status(stack: &Stack, booking: &str, user: &str, status: &str) {
    stack
        .eventually(
            &format!("/v1/bookings/{booking}"),
            &customer(user),
            &format!("booking {booking} to be {status}"),
            |a| a.status == StatusCode::OK && a.body["status"] == status,
        )
        .await;
}

async fn scrape(stack: &Stack, url: &str) -> String {
    let answer = stack.client.get(url).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "GET {url}");
    answer.text().await.unwrap()
}

#[tokio::test]
async fn observability_every_metric_a_dashboard_or_an_alert_names_is_exported() {
    let used = used_metrics();
    let stack = Stack::start().await;

    // A booking through: command, relay, projector, saga, payment gateway.
    let location = stack.location("Observatory", 20).await;
    let event = stack.event(&event_body(&location)).await.id();
    let booking = stack.book(&event, "alice", 2).await;
    // A read-your-writes read (boxoffice_consistency_wait_seconds).
    let read = stack
        .query_with(
            &format!("/v1/bookings/{}", booking.id()),
            &customer("alice"),
            &[
                ("x-consistency-token", booking.token().as_str()),
                ("x-consistency-timeout-ms", "30000"),
            ],
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    until_status(&stack, &booking.id(), "alice", "confirmed").await;
    // A declined card: the seats are released (boxoffice_saga_compensations).
    let declined = stack
        .command(
            &format!("/v1/events/{event}/bookings"),
            &customer("bob"),
            &json!({"seats": 1, "card_token": "tok_decline_insufficient_funds"}),
        )
        .await;
    assert_eq!(declined.status, StatusCode::ACCEPTED, "{}", declined.body);
    until_status(&stack, &declined.id(), "bob", "rejected").await;
    // A refused command (boxoffice_commands_total{outcome="refused"}).
    let refused = stack
        .command(
            &format!("/v1/events/{}/bookings", uuid::Uuid::new_v4()),
            &customer("carol"),
            &json!({"seats": 1, "card_token": "tok_visa"}),
        )
        .await;
    assert!(refused.status.is_client_error(), "{}", refused.body);
    // A rebuild (boxoffice_projector_rebuild_progress).
    let rebuild = stack
        .admin_query_post("/v1/admin/projections/bookings/rebuild")
        .await;
    assert_eq!(rebuild.status, StatusCode::ACCEPTED, "{}", rebuild.body);
    let id = rebuild.body["id"].as_i64().unwrap();
    stack
        .eventually(
            "/v1/admin/projections",
            &admin(),
            "the rebuild to be done",
            |a| {
                a.body.as_array().is_some_and(|all| {
                    all.iter().any(|p| {
                        p["name"] == "bookings"
                            && p["rebuild"]["id"].as_i64() == Some(id)
                            && p["rebuild"]["status"] == "done"
                    })
                })
            },
        )
        .await;
    stack.caught_up().await;
    stack.published().await;

    // prometheus-client leaves a labelled family out of the exposition until it has a
    // child (its registry skips empty metrics). Conflicts and reconciliation findings
    // come from races and from a gateway out of line with the bookings, which one
    // booking does not make: a child at 0 is created here, as the service creates one
    // when it happens, so that the exposition shows the family under its registered
    // name and type.
    let metrics = &stack.command_state.metrics;
    metrics
        .conflicts
        .get_or_create(&command_api::metrics::CommandName {
            command: "request_booking",
        })
        .inc_by(0);
    metrics
        .reconciliation_findings
        .get_or_create(&command_api::metrics::FindingLabel {
            finding: "captured",
        })
        .inc_by(0);

    // The notifier, as deployed beside the others (its SMTP server is not needed to
    // export its metrics).
    let mut notifier_config = notifier::Config::new(
        &testkit::roles::url_as(&stack.db.url, testkit::roles::NOTIFIER),
        "smtp://127.0.0.1:1",
        &stack.brokers,
        stack.topic.clone(),
    );
    notifier_config.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    notifier_config.group = format!("{}-notifier", stack.group);
    let notifier_app = notifier::Application::build(notifier_config)
        .await
        .expect("notifier");
    let notifier = testkit::service::serve(|l, s| notifier_app.run(l, s)).await;

    // Give the periodic gauges (lag, sagas in flight, backlog) a round.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let projector = &stack.projector.as_ref().expect("the projector runs").0;
    let scraped = [
        (
            "command-api",
            scrape(&stack, &stack.command.url("/metrics")).await,
        ),
        (
            "projector",
            scrape(&stack, &projector.url("/metrics")).await,
        ),
        (
            "query-api",
            scrape(&stack, &stack.query.url("/metrics")).await,
        ),
        (
            "payment-gateway",
            scrape(&stack, &stack.gateway.url("/metrics")).await,
        ),
        ("notifier", scrape(&stack, &notifier.url("/metrics")).await),
    ];
    let mut available: BTreeSet<String> =
        MADE_BY_PROMETHEUS.iter().map(|s| s.to_string()).collect();
    for (service, text) in &scraped {
        let names = exported(text);
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("boxoffice_") || n.starts_with("payment_gateway_")),
            "{service} exports no metric of ours:\n{text}"
        );
        available.extend(names);
    }

    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !available.contains(*name))
        .map(|(name, files)| {
            format!(
                "{name} (in {})",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics named by the dashboards or rules that no service exports:\n  {}\n\nexported:\n  {}",
        missing.join("\n  "),
        available.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    println!(
        "{} metric names used by the dashboards and rules, all exported: {}",
        used.len(),
        used.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    notifier.stop().await;
    stack.stop().await;
}

/// The value of the sample whose line starts with `series` (name and labels, as the
/// exposition writes them), if there is one.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn answers_are_counted_by_status_and_error_code_and_the_pools_and_outbox_age_are_shown() {
    let stack = Stack::start().await;
    let location = stack.location("Olympia", 10).await;
    let event = stack.event(&event_body(&location)).await.id();
    let path = format!("/v1/events/{event}/bookings");
    // Two refusals of the same kind, one of another, and a success.
    let nowhere = format!("/v1/events/{}/bookings", uuid::Uuid::now_v7());
    let mut codes = Vec::new();
    for (path, seats) in [(&path, 0), (&path, 0), (&nowhere, 1)] {
        let body = json!({"seats": seats, "card_token": "tok_visa"});
        let refused = stack.command(path, &customer("alice"), &body).await;
        assert!(refused.status.is_client_error(), "{}", refused.body);
        let code = refused.body["error"]["code"].as_str().unwrap().to_owned();
        codes.push((refused.status.as_u16(), code));
    }
    assert_eq!(
        stack.book(&event, "alice", 1).await.status,
        StatusCode::ACCEPTED
    );
    stack.published().await;

    let metrics = scrape(&stack, &stack.command.url("/metrics")).await;
    let count = |status: u16, code: &str| {
        let series = format!(
            "boxoffice_http_responses_total{{method=\"POST\",route=\"/v1/events/{{id}}/bookings\",status=\"{status}\",code=\"{code}\"}}"
        );
        sample(&metrics, &series).unwrap_or(0.0)
    };
    let (status, code) = &codes[0];
    assert_eq!(count(*status, code), 2.0, "{codes:?}\n{metrics}");
    let (status, other) = &codes[2];
    assert_ne!(other, code, "two kinds of refusal: {codes:?}");
    assert_eq!(count(*status, other), 1.0, "{metrics}");
    assert_eq!(count(202, ""), 1.0, "{metrics}");
    // The event store's pool, as the e2e stack sizes it (10), and the empty outbox.
    assert_eq!(
        sample(
            &metrics,
            "boxoffice_db_pool_max_connections{pool=\"event_store\"}"
        ),
        Some(10.0),
        "{metrics}"
    );
    let open: f64 = ["idle", "in_use"]
        .iter()
        .map(|state| {
            sample(
                &metrics,
                &format!("boxoffice_db_pool_connections{{pool=\"event_store\",state=\"{state}\"}}"),
            )
            .expect("both states are shown")
        })
        .sum();
    assert!((1.0..=10.0).contains(&open), "{open} open\n{metrics}");
    let age = testkit::eventually(
        Duration::from_secs(10),
        "the outbox's age to be measured empty",
        || {
            let stack = &stack;
            async move {
                let metrics = scrape(stack, &stack.command.url("/metrics")).await;
                sample(&metrics, "boxoffice_outbox_oldest_age_seconds").filter(|age| *age == 0.0)
            }
        },
    )
    .await;
    assert_eq!(age, 0.0);
    stack.stop().await;
}
