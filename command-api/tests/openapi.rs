//! The contract: the OpenAPI document generated from the code is the one committed
//! under `docs/openapi/`, and the running service serves it with a browsable UI.
//! After a change to the API: `BOXOFFICE_UPDATE_OPENAPI=1 cargo test -p command-api
//! --test openapi` rewrites the committed file (then review the diff).

mod common;

use common::*;
use reqwest::StatusCode;
use testkit::TestDb;

const COMMITTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/openapi/command-api.json"
);

#[test]
fn the_committed_document_is_the_one_the_code_generates() {
    let generated = command_api::openapi::document_json();
    if std::env::var_os("BOXOFFICE_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write the document");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi/command-api.json differs from what the code generates; \
         run BOXOFFICE_UPDATE_OPENAPI=1 cargo test -p command-api --test openapi and review the diff"
    );
}

#[test]
fn every_route_is_documented_with_its_answers() {
    let document: serde_json::Value =
        serde_json::from_str(&command_api::openapi::document_json()).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/v1/locations", "post"),
        ("/v1/locations/{id}/halls", "post"),
        ("/v1/events", "post"),
        ("/v1/events/{id}/cancel", "post"),
        ("/v1/events/{id}/bookings", "post"),
        ("/v1/bookings/{id}/cancel", "post"),
        ("/v1/admin/users/{user_id}/erase", "post"),
        ("/v1/admin/sagas/parked", "get"),
        ("/v1/admin/sagas/{id}/retry", "post"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        if path.starts_with("/v1/") {
            let responses = operation["responses"].as_object().expect("responses");
            for status in ["401", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            if method == "post" {
                let headers: Vec<_> = operation["parameters"]
                    .as_array()
                    .expect("parameters")
                    .iter()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert!(headers.contains(&"Idempotency-Key"), "{path}: {headers:?}");
            }
        }
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_service_serves_its_document_and_a_browsable_ui() {
    let db = TestDb::create().await;
    let app = TestApp::spawn_with(config(
        &db.url,
        "127.0.0.1:1",
        &testkit::unique_topic(),
        false,
    ))
    .await;
    let served = app
        .client()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "application/json");
    assert_eq!(
        served.text().await.expect("body"),
        command_api::openapi::document_json()
    );
    let ui = app
        .client()
        .get(app.url("/docs"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ui.status(), StatusCode::OK);
    let page = ui.text().await.expect("body");
    assert!(
        page.contains("url: 'openapi.json'") && page.contains("swagger-ui-bundle.js"),
        "{page}"
    );
    // The UI's script comes from the service itself, not from a CDN.
    let script = app
        .client()
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .expect("GET");
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        !page.contains("https://"),
        "the UI page loads something from elsewhere: {page}"
    );
}
