//! Authentication: HS256 JWTs signed with `BOXOFFICE_JWT_SECRET`.
//!
//! Claims read: `sub` (the user id, a pseudonymous id), `role` (`admin` or `customer`),
//! `exp`, and when present `nbf`, `iat`, `iss`, `aud`, and the standard contact claims
//! `email` and `name` (personal data: a booking keeps them encrypted). The rules
//! ([`JwtRules`]): a token not yet valid (`nbf`) or expired is refused, with no leeway;
//! `BOXOFFICE_JWT_ISSUER` and `BOXOFFICE_JWT_AUDIENCE`, when set, must match `iss` and
//! `aud`; a token may live at most `BOXOFFICE_JWT_MAX_TTL_SECS` (from the earlier of its
//! `iat` and now; an `iat` more than a minute ahead is refused); a secret shorter than
//! 32 bytes stops the service at start-up.
//!
//! A token that is missing, malformed, badly signed or breaks a rule is a 401 with
//! `WWW-Authenticate: Bearer` and a message of ours (never the library's); a valid
//! token with the wrong role for the route is a 403 ([`Admin`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far in the future a token's `iat` may be (the issuer's clock may run ahead).
const IAT_SKEW_SECS: u64 = 60;

use anyhow::ensure;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{empty_is_unset, set};
use crate::http::ApiError;

/// The shortest secret a service accepts: HS256 is as strong as its key.
pub const MIN_SECRET_BYTES: usize = 32;

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

/// The claims boxoffice reads from a token, and writes into the ones it issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's role.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audience (a string or a list of strings; checked by the rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// The user's e-mail address (personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's name (personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Claims {
    /// Claims for `sub` with `role`, issued now and valid for `ttl`.
    pub fn new(sub: &str, role: Role, ttl: Duration) -> Self {
        let now = now_secs();
        Self {
            sub: sub.to_owned(),
            role,
            exp: now.saturating_add(ttl.as_secs()),
            nbf: Some(now),
            iat: Some(now),
            iss: None,
            aud: None,
            email: None,
            name: None,
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a token must satisfy besides its signature and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// `BOXOFFICE_JWT_ISSUER` (optional): the `iss` every token must carry.
    pub issuer: Option<String>,
    /// `BOXOFFICE_JWT_AUDIENCE` (optional): an `aud` every token must carry.
    pub audience: Option<String>,
    /// `BOXOFFICE_JWT_MAX_TTL_SECS` (default 86400): the longest a token may live.
    pub max_ttl: Duration,
}

impl Default for JwtRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The JWT settings (`BOXOFFICE_JWT_*`) of the services that check tokens.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Auth")]
pub struct JwtSettings {
    /// The HS256 secret of the tokens (required, at least 32 bytes: a shorter one stops
    /// the service at start-up). Hidden here, never logged; set it in the environment,
    /// where other users cannot read it. `openssl rand -hex 32` makes one.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true, value_parser = empty_is_unset::<String>())]
    pub jwt_secret: Option<String>,
    /// When set, every token must carry this `iss`.
    #[arg(long, env = "BOXOFFICE_JWT_ISSUER", value_parser = empty_is_unset::<String>())]
    pub jwt_issuer: Option<String>,
    /// When set, every token must carry this `aud`.
    #[arg(long, env = "BOXOFFICE_JWT_AUDIENCE", value_parser = empty_is_unset::<String>())]
    pub jwt_audience: Option<String>,
    /// The longest a token may live (from the earlier of its `iat` and now), in seconds;
    /// an `iat` more than a minute in the future is refused.
    #[arg(long, env = "BOXOFFICE_JWT_MAX_TTL_SECS", default_value_t = 24 * 3600, value_parser = empty_is_unset::<u64>())]
    pub jwt_max_ttl_secs: u64,
}

impl JwtSettings {
    /// `BOXOFFICE_JWT_SECRET`; an error when it is unset. (Its length is checked by
    /// [`Jwt::for_service`].)
    pub fn secret(&self) -> anyhow::Result<String> {
        crate::config::required("BOXOFFICE_JWT_SECRET", &self.jwt_secret)
    }

    /// The rules tokens must satisfy.
    pub fn rules(&self) -> JwtRules {
        JwtRules {
            issuer: set(&self.jwt_issuer).map(str::to_owned),
            audience: set(&self.jwt_audience).map(str::to_owned),
            max_ttl: Duration::from_secs(self.jwt_max_ttl_secs),
        }
    }
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("jwt_secret", &set(&self.jwt_secret).map(|_| "<redacted>"))
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_max_ttl_secs", &self.jwt_max_ttl_secs)
            .finish()
    }
}

/// Signs and verifies tokens. Cheap to clone.
#[derive(Clone)]
pub struct Jwt(Arc<JwtKeys>);

struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    rules: JwtRules,
}

impl Jwt {
    /// A service's keys: `secret` must be at least [`MIN_SECRET_BYTES`] long, else the
    /// service must not start.
    pub fn for_service(secret: &str, rules: JwtRules) -> anyhow::Result<Self> {
        ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "BOXOFFICE_JWT_SECRET is {} bytes long; it must be at least {MIN_SECRET_BYTES} \
             (generate one with: openssl rand -hex 32)",
            secret.len()
        );
        Ok(Self::with_rules(secret, rules))
    }

    /// Keys for `secret` with the default rules, whatever its length: for issuing
    /// tokens (tests, the bench, `command-api token`).
    pub fn new(secret: &str) -> Self {
        Self::with_rules(secret, JwtRules::default())
    }

    fn with_rules(secret: &str, rules: JwtRules) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // An expired token is expired, and one not valid yet is not: no grace period.
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &rules.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience, a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Self(Arc::new(JwtKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            rules,
        }))
    }

    /// The rules tokens are checked against.
    pub fn rules(&self) -> &JwtRules {
        &self.0.rules
    }

    /// A token for `sub` with `role`, valid for `ttl`, from the issuer and for the
    /// audience of the rules.
    pub fn issue(&self, sub: &str, role: Role, ttl: Duration) -> String {
        self.sign(Claims::new(sub, role, ttl))
    }

    /// Signs `claims`, adding the rules' issuer and audience where they have none.
    pub fn sign(&self, mut claims: Claims) -> String {
        if claims.iss.is_none() {
            claims.iss.clone_from(&self.0.rules.issuer);
        }
        if claims.aud.is_none() {
            claims.aud = self.0.rules.audience.clone().map(serde_json::Value::from);
        }
        // Encoding HS256 claims of plain strings and numbers cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .unwrap_or_default()
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map_err(|err| ApiError::unauthorized(refusal(err.kind())))?
            .claims;
        if claims.sub.is_empty() || claims.sub.len() > 200 {
            return Err(ApiError::unauthorized(
                "the token's sub must be 1 to 200 bytes",
            ));
        }
        // A token issued "in the future" would stretch its lifetime past the limit (the
        // lifetime counts from the earlier of `iat` and now); beyond a minute of clock
        // skew it is refused.
        let now = now_secs();
        if claims.iat.is_some_and(|iat| iat > now + IAT_SKEW_SECS) {
            return Err(ApiError::unauthorized("the token was issued in the future"));
        }
        let lifetime = claims
            .exp
            .saturating_sub(claims.iat.map_or(now, |iat| iat.min(now)));
        if lifetime > self.0.rules.max_ttl.as_secs() {
            return Err(ApiError::unauthorized(format!(
                "the token lives longer than the {} s allowed",
                self.0.rules.max_ttl.as_secs()
            )));
        }
        // Contact claims are optional data, not identity: an implausible one (too long,
        // or with control characters) is dropped, and the token still names its user.
        let mut claims = claims;
        let plausible = |value: &String, max_chars: usize| {
            value.chars().count() <= max_chars && !value.chars().any(char::is_control)
        };
        if claims.email.as_ref().is_some_and(|v| !plausible(v, 254)) {
            tracing::debug!("an implausible email claim dropped");
            claims.email = None;
        }
        if claims.name.as_ref().is_some_and(|v| !plausible(v, 200)) {
            tracing::debug!("an implausible name claim dropped");
            claims.name = None;
        }
        Ok(claims)
    }
}

/// What a refused token is told: our words, not the library's.
fn refusal(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidIssuer => "the token comes from another issuer".into(),
        ErrorKind::InvalidAudience => "the token is meant for another audience".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidSignature => "the token's signature does not match".into(),
        _ => "the token is not a valid HS256 token of ours".into(),
    }
}

/// The authenticated caller, from `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The token's `sub`.
    pub id: String,
    /// The token's `role`.
    pub role: Role,
    /// The token's `email`, when it has one (personal data).
    pub email: Option<String>,
    /// The token's `name`, when it has one (personal data).
    pub name: Option<String>,
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
        if let Some(log) = parts.extensions.get::<crate::access_log::AccessUser>() {
            log.set(&claims.sub);
        }
        Ok(Self {
            id: claims.sub,
            role: claims.role,
            email: claims.email,
            name: claims.name,
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

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_settings_default_to_the_default_rules_and_need_a_secret() {
        let settings: JwtSettings = crate::config::from_args(&[]).unwrap();
        assert_eq!(settings.rules(), JwtRules::default());
        assert_eq!(
            settings.secret().unwrap_err().to_string(),
            "BOXOFFICE_JWT_SECRET must be set"
        );
        let settings: JwtSettings = crate::config::from_args(&[
            "--jwt-secret",
            SECRET,
            "--jwt-issuer",
            "",
            "--jwt-audience",
            "boxoffice",
        ])
        .unwrap();
        assert_eq!(settings.secret().unwrap(), SECRET);
        assert_eq!(settings.rules().issuer, None);
        assert_eq!(settings.rules().audience.as_deref(), Some("boxoffice"));
        assert!(!format!("{settings:?}").contains(SECRET));
    }

    fn signed(claims: &serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn service(rules: JwtRules) -> Jwt {
        Jwt::for_service(SECRET, rules).unwrap()
    }

    fn message(err: ApiError) -> String {
        err.body()["error"]["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_token_round_trips() {
        let jwt = service(JwtRules::default());
        let token = jwt.issue("alice", Role::Customer, Duration::from_secs(60));
        let claims = jwt.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.role, Role::Customer);
    }

    #[test]
    fn a_short_secret_stops_the_service() {
        let err = Jwt::for_service("too-short", JwtRules::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused_in_our_words() {
        let token = Jwt::new("another secret of thirty-two bytes!").issue(
            "alice",
            Role::Admin,
            Duration::from_secs(60),
        );
        let err = service(JwtRules::default()).verify(&token).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
        assert_eq!(message(err), "the token's signature does not match");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let now = now_secs();
        let token = signed(
            &serde_json::json!({"sub": "alice", "role": "admin", "exp": now - 5, "iat": now - 60}),
            SECRET,
        );
        let err = service(JwtRules::default()).verify(&token).unwrap_err();
        assert_eq!(message(err), "the token has expired");
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let now = now_secs();
        let token = signed(
            &serde_json::json!({"sub": "alice", "role": "admin", "exp": now + 600, "nbf": now + 60, "iat": now}),
            SECRET,
        );
        let err = service(JwtRules::default()).verify(&token).unwrap_err();
        assert_eq!(message(err), "the token is not valid yet");
    }

    #[test]
    fn issuer_and_audience_are_required_when_set() {
        let rules = JwtRules {
            issuer: Some("https://id.example".into()),
            audience: Some("boxoffice".into()),
            ..JwtRules::default()
        };
        let jwt = service(rules.clone());
        // What the service issues itself carries both.
        jwt.verify(&jwt.issue("alice", Role::Customer, Duration::from_secs(60)))
            .unwrap();
        let now = now_secs();
        let base =
            serde_json::json!({"sub": "alice", "role": "customer", "exp": now + 60, "iat": now});
        let with = |extra: serde_json::Value| {
            let mut claims = base.clone();
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            jwt.verify(&signed(&claims, SECRET))
        };
        assert_eq!(
            message(with(serde_json::json!({"aud": "boxoffice"})).unwrap_err()),
            "the token has no iss claim"
        );
        assert_eq!(
            message(
                with(serde_json::json!({"iss": "https://evil.example", "aud": "boxoffice"}))
                    .unwrap_err()
            ),
            "the token comes from another issuer"
        );
        assert_eq!(
            message(
                with(serde_json::json!({"iss": "https://id.example", "aud": "other"})).unwrap_err()
            ),
            "the token is meant for another audience"
        );
        with(serde_json::json!({"iss": "https://id.example", "aud": ["other", "boxoffice"]}))
            .unwrap();
        // Without rules, iss and aud are not looked at.
        service(JwtRules::default())
            .verify(&signed(&serde_json::json!({"sub": "a", "role": "admin", "exp": now + 60, "aud": "x", "iss": "y"}), SECRET))
            .unwrap();
    }

    #[test]
    fn a_token_that_lives_too_long_is_refused() {
        let rules = JwtRules {
            max_ttl: Duration::from_secs(3600),
            ..JwtRules::default()
        };
        let jwt = service(rules);
        let now = now_secs();
        let long = signed(
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 7200, "iat": now}),
            SECRET,
        );
        assert_eq!(
            message(jwt.verify(&long).unwrap_err()),
            "the token lives longer than the 3600 s allowed"
        );
        // Without iat, its remaining life counts.
        let no_iat = signed(
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 7200}),
            SECRET,
        );
        assert!(jwt.verify(&no_iat).is_err());
        let fine = signed(
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 3000}),
            SECRET,
        );
        jwt.verify(&fine).unwrap();
        // An iat in the future does not stretch the limit: from now, it lives too long.
        let stretched = signed(
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 7200, "iat": now + 3650}),
            SECRET,
        );
        assert_eq!(
            message(jwt.verify(&stretched).unwrap_err()),
            "the token was issued in the future"
        );
        let skewed = signed(
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 7200, "iat": now + 30}),
            SECRET,
        );
        assert_eq!(
            message(jwt.verify(&skewed).unwrap_err()),
            "the token lives longer than the 3600 s allowed"
        );
        let slightly_ahead = signed(
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 3000, "iat": now + 30}),
            SECRET,
        );
        jwt.verify(&slightly_ahead).unwrap();
    }

    #[test]
    fn an_unknown_role_is_refused() {
        let token = signed(
            &serde_json::json!({"sub": "x", "role": "root", "exp": now_secs() + 60}),
            SECRET,
        );
        let err = service(JwtRules::default()).verify(&token).unwrap_err();
        assert_eq!(message(err), "the token is not a valid HS256 token of ours");
    }

    #[test]
    fn an_implausible_contact_claim_is_dropped_and_the_token_still_counts() {
        let jwt = service(JwtRules::default());
        let now = now_secs();
        let token = signed(
            &serde_json::json!({"sub": "a", "role": "customer", "exp": now + 60,
                                "email": "x".repeat(255), "name": "Zoë\u{7}"}),
            SECRET,
        );
        let claims = jwt.verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.email, claims.name),
            ("a", None, None)
        );
        // Limits count characters, not bytes: 200 letters of a non-Latin name fit.
        let name = "ж".repeat(200);
        let token = signed(
            &serde_json::json!({"sub": "a", "role": "customer", "exp": now + 60, "name": name}),
            SECRET,
        );
        assert_eq!(jwt.verify(&token).unwrap().name, Some(name));
    }

    #[test]
    fn contact_claims_are_read() {
        let jwt = service(JwtRules::default());
        let mut claims = Claims::new("alice", Role::Customer, Duration::from_secs(60));
        claims.email = Some("alice@example.com".into());
        claims.name = Some("Alice Liddell".into());
        let read = jwt.verify(&jwt.sign(claims)).unwrap();
        assert_eq!(read.email.as_deref(), Some("alice@example.com"));
        assert_eq!(read.name.as_deref(), Some("Alice Liddell"));
    }
}
