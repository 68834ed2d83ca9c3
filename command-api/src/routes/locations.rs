//! `POST /v1/locations` and `POST /v1/locations/{id}/halls` (admin).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use domain::location::{Hall, LocationCommand};
use domain::values::{Capacity, Name, Problems};
use platform::auth::Admin;
use platform::http::{ApiError, JsonBody, PathId};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::commands::{submit, RequestContext, Submission};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/locations", post(create_location))
        .route("/v1/locations/{id}/halls", post(add_hall))
}

/// A hall of a location.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Main", "capacity": 100}))]
pub(crate) struct HallDto {
    /// 1 to 200 characters, unique within the location.
    #[schema(value_type = crate::openapi::Text)]
    name: String,
    /// Seats, 1 to 1 000 000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    capacity: i64,
}

/// A new location.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Roundhouse", "address": "Chalk Farm Rd, London", "country": "GB",
                          "halls": [{"name": "Main", "capacity": 100}]}))]
pub(crate) struct CreateLocationDto {
    /// 1 to 200 characters.
    #[schema(value_type = crate::openapi::Text)]
    name: String,
    /// 1 to 200 characters.
    #[schema(value_type = crate::openapi::Text)]
    address: String,
    /// The country, such as `GB` (1 to 200 characters).
    #[schema(value_type = crate::openapi::Text)]
    country: String,
    /// At most 100, names unique.
    #[schema(max_items = 100)]
    halls: Vec<HallDto>,
}

/// The most halls one request may create.
const MAX_HALLS: usize = 100;

fn parse_hall(dto: &HallDto, prefix: &str, problems: &mut Problems) -> Option<Hall> {
    let name = problems.check(format!("{prefix}name"), Name::parse(&dto.name));
    let capacity = problems.check(format!("{prefix}capacity"), Capacity::parse(dto.capacity));
    Some(Hall {
        name: name?,
        capacity: capacity?,
    })
}

impl TryFrom<CreateLocationDto> for LocationCommand {
    type Error = ApiError;

    fn try_from(dto: CreateLocationDto) -> Result<Self, ApiError> {
        let mut problems = Problems::default();
        let name = problems.check("name", Name::parse(&dto.name));
        let address = problems.check("address", Name::parse(&dto.address));
        let country = problems.check("country", Name::parse(&dto.country));
        if dto.halls.len() > MAX_HALLS {
            problems.push("halls", format!("at most {MAX_HALLS} halls at once"));
        }
        let halls: Vec<Option<Hall>> = dto
            .halls
            .iter()
            .enumerate()
            .map(|(i, hall)| parse_hall(hall, &format!("halls[{i}]."), &mut problems))
            .collect();
        problems.finish().map_err(ApiError::validation)?;
        match (name, address, country) {
            (Some(name), Some(address), Some(country)) => Ok(Self::CreateLocation {
                name,
                address,
                country,
                halls: halls.into_iter().flatten().collect(),
            }),
            _ => Err(ApiError::unexpected(
                "validation passed with a missing field",
            )),
        }
    }
}

/// Create a location with its halls (admin).
#[utoipa::path(post, path = "/v1/locations", tag = "locations", security(("bearer" = [])),
    request_body = CreateLocationDto,
    responses(
        (status = 201, description = "Created.", body = crate::commands::Accepted,
         headers(("X-Consistency-Token" = String, description = "As `consistency_token`."))),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with `details`), `duplicate_hall`, `idempotency_key_reused`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn create_location(
    State(app): State<AppState>,
    Admin(user): Admin,
    context: RequestContext,
    body: JsonBody<CreateLocationDto>,
) -> Result<Response, ApiError> {
    let command = LocationCommand::try_from(body.value)?;
    let submission = Submission {
        name: "create_location",
        user: &user,
        context: &context,
        fingerprint: &body.fingerprint,
        accepted: StatusCode::CREATED,
        status: None,
        creates: true,
    };
    Ok(submit(&app, &app.locations, submission, Uuid::now_v7(), command).await)
}

/// Add a hall to a location (admin).
#[utoipa::path(post, path = "/v1/locations/{id}/halls", tag = "locations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The location.")),
    request_body = HallDto,
    responses(
        (status = 201, description = "Added.", body = crate::commands::Accepted,
         headers(("X-Consistency-Token" = String, description = "As `consistency_token`."))),
        (status = 403, description = "Not an admin.", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such location.", body = platform::openapi::ErrorBody),
        (status = 409, description = "`hall_exists`, `concurrency_conflict`.", body = platform::openapi::ErrorBody),
        (status = 422, description = "`validation_failed`, `idempotency_key_reused`.", body = platform::openapi::ErrorBody),
    ))]
pub(crate) async fn add_hall(
    State(app): State<AppState>,
    Admin(user): Admin,
    context: RequestContext,
    PathId(location_id): PathId,
    body: JsonBody<HallDto>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::default();
    let hall = parse_hall(&body.value, "", &mut problems);
    problems.finish().map_err(ApiError::validation)?;
    let hall =
        hall.ok_or_else(|| ApiError::unexpected("validation passed with a missing field"))?;
    let submission = Submission {
        name: "add_hall",
        user: &user,
        context: &context,
        fingerprint: &body.fingerprint,
        accepted: StatusCode::CREATED,
        status: None,
        creates: false,
    };
    Ok(submit(
        &app,
        &app.locations,
        submission,
        location_id,
        LocationCommand::AddHall { hall },
    )
    .await)
}
