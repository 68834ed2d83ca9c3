//! Contact data, opened for whoever may see it: a booking's owner and admins.
//!
//! The read models and the store keep a booking's contact data sealed under its user's
//! key (`platform::personal`). It is opened here, for the answer only, while the key
//! lives and no erasure of it is recorded (the `users` projection); otherwise it shows as
//! erased. Shown: `{"erased": false, "name", "email"}`, or `{"erased": true, "name":
//! null, "email": null}`; a booking made without contact data shows `null`.

use std::collections::{HashMap, HashSet};

use domain::personal::SealedContact;
use platform::http::ApiError;
use platform::personal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::AppState;

/// A booking's contact, as stored: its booking, its user, the sealed form.
pub struct Stored<'a> {
    /// The booking.
    pub booking_id: Uuid,
    /// Its owner.
    pub user_id: &'a str,
    /// The sealed contact (`null` or absent when there is none).
    pub sealed: Option<&'a Value>,
}

/// The contacts of `stored`, opened or shown erased, by booking.
pub async fn open_all(
    app: &AppState,
    stored: &[Stored<'_>],
) -> Result<HashMap<Uuid, Value>, ApiError> {
    let sealed: Vec<(&Stored<'_>, SealedContact)> = stored
        .iter()
        .filter_map(|s| Some((s, serde_json::from_value(s.sealed?.clone()).ok()?)))
        .collect();
    let mut shown: HashMap<Uuid, Value> = stored
        .iter()
        .filter(|s| s.sealed.is_none_or(Value::is_null))
        .map(|s| (s.booking_id, Value::Null))
        .collect();
    if sealed.is_empty() {
        return Ok(shown);
    }
    let users: Vec<&str> = sealed.iter().map(|(s, _)| s.user_id).collect();
    // `as`: the macro's check of parameter types wants `&[String]` for a text[], not
    // the borrowed `&str`s.
    let erased: HashSet<Uuid> = sqlx::query_scalar!(
        "SELECT erased_keys FROM user_view WHERE user_id = ANY($1)",
        &users as &[&str]
    )
    .fetch_all(&app.read)
    .await?
    .into_iter()
    .flatten()
    .collect();
    let wanted: Vec<Uuid> = sealed
        .iter()
        .map(|(_, c)| c.key_id)
        .filter(|k| !erased.contains(k))
        .collect();
    let keys = personal::keys(app.store.pool(), &wanted).await?;
    for (stored, contact) in sealed {
        let opened = keys.get(&contact.key_id).and_then(|key| {
            let bound = personal::associated_data(&stored.booking_id.to_string(), stored.user_id);
            personal::open(key, &bound, &contact)
        });
        shown.insert(
            stored.booking_id,
            match opened {
                Some(contact) => {
                    json!({"erased": false, "name": contact.name, "email": contact.email})
                }
                None => json!({"erased": true, "name": null, "email": null}),
            },
        );
    }
    Ok(shown)
}

/// Opens the contact in a booking's replayed state (the audit's state-at), in place.
pub async fn open_in_state(
    app: &AppState,
    booking_id: &str,
    state: &mut Value,
) -> Result<(), ApiError> {
    let Ok(booking_id) = Uuid::parse_str(booking_id) else {
        return Ok(());
    };
    let Some(booking) = state.get_mut("state").filter(|s| s.is_object()) else {
        return Ok(());
    };
    let user_id = booking["user_id"].as_str().unwrap_or_default().to_owned();
    let sealed = booking.get("contact").cloned();
    let mut shown = open_all(
        app,
        &[Stored {
            booking_id,
            user_id: &user_id,
            sealed: sealed.as_ref(),
        }],
    )
    .await?;
    booking["contact"] = shown.remove(&booking_id).unwrap_or(Value::Null);
    Ok(())
}
