//! The contract: the OpenAPI document generated from the code is the one committed
//! under `docs/openapi/`, and the running service serves it with a browsable UI.
//! After a change to the API: `BOXOFFICE_UPDATE_OPENAPI=1 cargo test -p query-api
//! --test openapi` rewrites the committed file (then review the diff).

use std::net::SocketAddr;

use reqwest::StatusCode;
use testkit::service::serve;
use testkit::{TestDb, JWT_SECRET};

const COMMITTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/openapi/query-api.json"
);

#[test]
fn the_committed_document_is_the_one_the_code_generates() {
    let generated = query_api::openapi::document_json();
    if std::env::var_os("BOXOFFICE_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write the document");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi/query-api.json differs from what the code generates; \
         run BOXOFFICE_UPDATE_OPENAPI=1 cargo test -p query-api --test openapi and review the diff"
    );
}

#[test]
fn every_route_is_documented_with_its_headers_and_answers() {
    let document: serde_json::Value =
        serde_json::from_str(&query_api::openapi::document_json()).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    let parameters = |operation: &serde_json::Value| -> Vec<String> {
        operation["parameters"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (path, method, consistent) in [
        ("/v1/locations", "get", true),
        ("/v1/locations/{id}", "get", true),
        ("/v1/events", "get", true),
        ("/v1/events/{id}", "get", true),
        ("/v1/bookings/{id}", "get", true),
        ("/v1/users/me/bookings", "get", true),
        ("/v1/admin/projections", "get", false),
        ("/v1/admin/projections/{name}/rebuild", "post", false),
        ("/v1/admin/parked", "get", false),
        ("/v1/admin/parked/{position}/retry", "post", false),
        ("/v1/audit/streams/{aggregate_type}/{id}", "get", false),
        (
            "/v1/audit/streams/{aggregate_type}/{id}/state",
            "get",
            false,
        ),
        ("/v1/audit/verify", "get", false),
        ("/v1/audit/export", "get", false),
        ("/health/live", "get", false),
        ("/health/ready", "get", false),
        ("/metrics", "get", false),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let names = parameters(operation);
        assert_eq!(
            names.iter().any(|n| n == "X-Consistency-Token"),
            consistent,
            "{method} {path}: {names:?}"
        );
        if path.starts_with("/v1/") {
            assert!(
                operation["responses"]["200"].is_object()
                    || operation["responses"]["202"].is_object()
            );
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} lacks 401"
            );
        }
    }
    // The answer types are in the document, as the handlers serialize them.
    for schema in [
        "Event",
        "Booking",
        "Location",
        "ErrorBody",
        "ProjectionStatus",
        "Report",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "no schema {schema}"
        );
    }
}

#[tokio::test]
async fn the_service_serves_its_document_and_a_browsable_ui() {
    // The documents need no data: a query-api on a migrated, empty store.
    let db = TestDb::create().await;
    let pool = platform::db::connect(&db.url, 2).await.expect("connect");
    platform::db::migrate_event_store(&pool)
        .await
        .expect("migrate");
    let app = query_api::Application::build(query_api::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..query_api::Config::new(&db.url, JWT_SECRET)
    })
    .await
    .expect("build query-api");
    let api = serve(|l, s| app.run(l, s)).await;
    let client = testkit::http();
    let served = client
        .get(api.url("/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(
        served.text().await.expect("body"),
        query_api::openapi::document_json()
    );
    let ui = client.get(api.url("/docs")).send().await.expect("GET");
    assert_eq!(ui.status(), StatusCode::OK);
    let page = ui.text().await.expect("body");
    assert!(
        page.contains("url: 'openapi.json'") && !page.contains("https://"),
        "{page}"
    );
    api.stop().await;
}
