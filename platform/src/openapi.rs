//! What every service's OpenAPI document shares: the error envelope's schema, the
//! bearer scheme, the headers and error answers common to every operation, and the
//! routes that serve the document (`/openapi.json`) and a browsable UI (`/docs`,
//! Swagger UI bundled in the binary by the `swagger-ui-dist` crate: no CDN).
//!
//! Each service derives its own document from its handlers' `#[utoipa::path]`
//! annotations and passes it through [`finish`], so the shared parts are written
//! once. The documents are committed under `docs/openapi/`; a test of each service
//! fails when the committed file differs from what the code generates.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, PathItem, RefOr, Required, Schema, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::http::ErrorCode;

/// The name of the bearer security scheme in the documents.
pub const BEARER: &str = "bearer";

/// The error envelope: every answer other than a success.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no such event"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: what a client branches on (`validation_failed`,
    /// `not_found`, `sold_out`, `rate_limited`, `overloaded`, ...).
    pub code: ErrorCode,
    /// For people; may change.
    pub message: String,
    /// For 422 `validation_failed`: one `{"field", "message"}` per problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub details: Option<Value>,
}

/// What a service passes through before serving its document: the bearer scheme,
/// `X-Correlation-Id` on every operation, `Idempotency-Key` on every POST when
/// `commands` is set (command-api), the read-your-writes headers on the read models'
/// reads when it is not (query-api), the error answers any operation may give, and the
/// health and metrics endpoints.
pub fn finish(mut api: OpenApi, commands: bool) -> OpenApi {
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BEARER.to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "HS256 JWT: `sub` (the user), `role` (`admin` or `customer`), `exp`; \
                     `iss`, `aud` and `nbf` when the service is configured to check them.",
                ))
                .build(),
        ),
    );
    components
        .schemas
        .insert("ErrorBody".to_owned(), ErrorBody::schema());
    components
        .schemas
        .insert("ErrorDetail".to_owned(), ErrorDetail::schema());

    for (path, item) in api.paths.paths.iter_mut() {
        // The read models' reads can wait for a write (query-api).
        let consistent = !commands
            && path.starts_with("/v1/")
            && !path.starts_with("/v1/admin/")
            && !path.starts_with("/v1/audit/");
        for (post, operation) in operations(item) {
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            if consistent && !post {
                parameters.push(header_parameter_matching(
                    "X-Consistency-Token",
                    domain::consistency::PATTERN,
                    "event:0193b3c4-8f5e-7a1c-9d2e-3f4a5b6c7d8e:3",
                    "A command's `consistency_token`: the read waits until the read models \
                     include that write (else 503 `not_caught_up`).",
                ));
                parameters.push(header_parameter_matching(
                    "X-Consistency-Timeout-Ms",
                    "^[0-9]{1,9}$",
                    "2000",
                    "How long to wait for `X-Consistency-Token`, in ms: 5000 when absent, \
                     at most 30000.",
                ));
            }
            parameters.push(header_parameter(
                "X-Correlation-Id",
                "Ties the request to others of one flow; recorded with the facts it \
                 causes and echoed in the answer. One is made when absent.",
            ));
            if consistent && !post {
                operation
                    .responses
                    .responses
                    .entry("400".to_owned())
                    .or_insert_with(|| {
                        error_response(
                            "`invalid_consistency_token` (not a token of one of the caller's \
                         writes) or `invalid_consistency_timeout`.",
                        )
                    });
            }
            if post && commands {
                parameters.push(header_parameter_matching(
                    "Idempotency-Key",
                    IDEMPOTENCY_KEY_PATTERN,
                    "order-2030-05-01-42",
                    "1 to 200 characters. The same user repeating a key with the same body \
                     gets the first answer again and nothing is appended; with another \
                     body, 422 `idempotency_key_reused`.",
                ));
            }
            let responses = &mut operation.responses.responses;
            let mut common = vec![
                (
                    401,
                    "No valid bearer token (missing, malformed, badly signed, expired).",
                ),
                (
                    503,
                    "`overloaded` (too many requests at once), `request_timeout`, \
                     `unavailable` (the database, for a moment) or, for reads with \
                     `X-Consistency-Token`, `not_caught_up`; with `Retry-After`.",
                ),
            ];
            if post {
                common.extend([
                    (400, "The body is not JSON (`malformed_json`)."),
                    (408, "The body did not arrive in time (`body_timeout`)."),
                    (413, "The body is over 64 KiB (`payload_too_large`)."),
                    (415, "The body is not `application/json`."),
                ]);
            }
            if commands {
                common.push((
                    429,
                    "`rate_limited`: this customer sends commands too fast; see `Retry-After`.",
                ));
            }
            for (status, description) in common {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description));
            }
        }
    }
    operational(&mut api);
    api
}

/// The operations of a path, each with whether it is a POST.
fn operations(item: &mut PathItem) -> Vec<(bool, &mut Operation)> {
    let mut found = Vec::new();
    if let Some(get) = item.get.as_mut() {
        found.push((false, get));
    }
    if let Some(post) = item.post.as_mut() {
        found.push((true, post));
    }
    found
}

/// An `Idempotency-Key` as the services take it: 1 to 200 visible ASCII characters
/// (spaces and tabs inside; HTTP strips them at the ends).
const IDEMPOTENCY_KEY_PATTERN: &str = "^[\\x21-\\x7e](?:[\\t\\x20-\\x7e]{0,198}[\\x21-\\x7e])?$";

fn header_parameter_matching(
    name: &str,
    pattern: &str,
    example: &str,
    description: &str,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .examples([example]),
        ))
        .build()
}

fn header_parameter(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(String::schema()))
        .build()
}

/// An answer in the error envelope.
pub fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(i64::schema())
                .description(Some("Seconds to wait (429 and 503 only)."))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))))
                .build(),
        )
        .build()
        .into()
}

/// `/health/live`, `/health/ready` and `/metrics`, which every service has.
fn operational(api: &mut OpenApi) {
    let text = |description: &str, content_type: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                content_type,
                ContentBuilder::new().schema(Some(String::schema())).build(),
            )
            .build()
    };
    let health = |description: &str| -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(description)),
            )
            .required("status")
            .into()
    };
    let readiness = || -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("`ready` or `not_ready`.")),
            )
            .required("status")
            .property(
                "checks",
                ObjectBuilder::new()
                    .description(Some("One entry per dependency: `ok`, or why not."))
                    .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String))),
            )
            .required("checks")
            .into()
    };
    let json = |description: &str, schema: RefOr<Schema>| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .build()
    };
    let operation = |summary: &str, responses: Vec<(u16, utoipa::openapi::Response)>| {
        let mut builder = utoipa::openapi::path::OperationBuilder::new()
            .summary(Some(summary))
            .tag("operations");
        for (status, response) in responses {
            builder = builder.response(status.to_string(), response);
        }
        builder.build()
    };
    let item = |operation: Operation| {
        utoipa::openapi::path::PathItemBuilder::new()
            .operation(utoipa::openapi::HttpMethod::Get, operation)
            .build()
    };
    api.paths.paths.insert(
        "/health/live".to_owned(),
        item(operation(
            "The process runs (no dependency is asked).",
            vec![(200, json("Alive.", health("`ok`")))],
        )),
    );
    api.paths.paths.insert(
        "/health/ready".to_owned(),
        item(operation(
            "The service can do its work: each dependency it needs answers.",
            vec![
                (200, json("Ready.", readiness())),
                (
                    503,
                    json("Not ready; the failing dependency says why.", readiness()),
                ),
            ],
        )),
    );
    api.paths.paths.insert(
        "/metrics".to_owned(),
        item(operation(
            "Prometheus metrics.",
            vec![(
                200,
                text(
                    "OpenMetrics text.",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
        )),
    );
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn to_json(api: &OpenApi) -> String {
    let mut json = api
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"));
    json.push('\n');
    json
}

/// `GET /openapi.json` (the document) and `GET /docs` (Swagger UI, from the binary).
///
/// The UI page names the document by a relative URL (`openapi.json`), so behind the
/// front door, which serves this service's page as `/command-api/docs` (or
/// `/query-api/docs`), it loads `/command-api/openapi.json`; its assets stay under
/// `/docs/`, the same bytes in every service.
pub fn docs_router(document: String, title: &str) -> Router {
    let served = Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], document).into_response() }
        }),
    );
    served.merge(swagger_ui_dist::generate_routes(
        swagger_ui_dist::ApiDefinition {
            uri_prefix: "/docs".to_owned(),
            api_definition: swagger_ui_dist::OpenApiSource::Uri("openapi.json".to_owned()),
            title: Some(title.to_owned()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ApiError;
    use axum::http::StatusCode;

    #[test]
    fn the_error_schema_reads_every_envelope_the_api_sends() {
        let errors = [
            ApiError::not_found("no such event"),
            ApiError::validation(serde_json::json!([{"field": "seats", "message": "1..=10"}])),
            ApiError::unavailable(ErrorCode::Overloaded, "too many", 1),
            ApiError::new(
                StatusCode::CONFLICT,
                domain::RefusalCode::SoldOut,
                "sold out",
            ),
        ];
        for err in errors {
            let body: ErrorBody = serde_json::from_value(err.body()).expect("an envelope");
            assert_eq!(body.error.code, err.code());
        }
    }
}
