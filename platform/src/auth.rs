//! Authentication: HS256 JWTs signed with `BOXOFFICE_JWT_SECRET`.
//!
//! Claims are `sub` (the user id), `role` (`admin` or `customer`) and `exp`. A token that
//! is missing, malformed, badly signed, expired or carries an unknown role is a 401;
//! a valid token with the wrong role for the route is a 403 ([`Admin`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::ApiError;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the box office: locations, events, projections, audit.
    Admin,
    /// Buys tickets.
    Customer,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "customer" => Ok(Self::Customer),
            other => Err(format!(
                "unknown role {other:?}, expected admin or customer"
            )),
        }
    }
}

/// The claims boxoffice reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's role.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Signs and verifies tokens. Cheap to clone.
#[derive(Clone)]
pub struct Jwt(Arc<JwtKeys>);

struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Jwt {
    /// Keys for `secret`.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // An expired token is expired: no grace period.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self(Arc::new(JwtKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }))
    }

    /// A token for `sub` with `role`, valid for `ttl`.
    pub fn issue(&self, sub: &str, role: Role, ttl: Duration) -> String {
        let exp = SystemTime::now()
            .checked_add(ttl)
            .unwrap_or(SystemTime::now())
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            exp,
        };
        // Encoding HS256 claims of plain strings and numbers cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .unwrap_or_default()
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map_err(|err| ApiError::unauthorized(format!("invalid token: {err}")))?
            .claims;
        if claims.sub.is_empty() || claims.sub.len() > 200 {
            return Err(ApiError::unauthorized(
                "invalid token: sub must be 1 to 200 bytes",
            ));
        }
        Ok(claims)
    }
}

/// The authenticated caller, from `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The token's `sub`.
    pub id: String,
    /// The token's `role`.
    pub role: Role,
}

impl User {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl<S> FromRequestParts<S> for User
where
    Jwt: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("expected a Bearer token"))?;
        let claims = Jwt::from_ref(state).verify(token.trim())?;
        Ok(Self {
            id: claims.sub,
            role: claims.role,
        })
    }
}

/// An authenticated caller with the admin role; any other role is a 403.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl<S> FromRequestParts<S> for Admin
where
    Jwt: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = User::from_request_parts(parts, state).await?;
        if user.is_admin() {
            Ok(Self(user))
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips() {
        let jwt = Jwt::new("secret");
        let token = jwt.issue("alice", Role::Customer, Duration::from_secs(60));
        let claims = jwt.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.role, Role::Customer);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = Jwt::new("other").issue("alice", Role::Admin, Duration::from_secs(60));
        let err = Jwt::new("secret").verify(&token).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let jwt = Jwt::new("secret");
        let claims = Claims {
            sub: "alice".into(),
            role: Role::Admin,
            exp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                - 5,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(jwt.verify(&token).is_err());
    }

    #[test]
    fn an_unknown_role_is_refused() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "x", "role": "root", "exp": u64::MAX / 2}),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(Jwt::new("secret").verify(&token).is_err());
    }
}
