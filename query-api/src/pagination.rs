//! Cursor pagination. A page is ordered by a key that never changes for a row (an id,
//! or an event's start and id); the cursor is the key of the last row sent, so rows
//! inserted while a client pages never shift a page: nothing is sent twice or skipped.
//! Cursors are opaque to clients (hex of a small JSON value).

use platform::http::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

/// Rows per page when the client does not say.
pub const DEFAULT_LIMIT: i64 = 50;
/// The most rows per page.
pub const MAX_LIMIT: i64 = 200;

/// The page size: `limit`, 1 to [`MAX_LIMIT`].
pub fn limit(raw: Option<i64>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(field_error(
            "limit",
            &format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// Decodes a cursor this API gave out.
pub fn decode<K: DeserializeOwned>(raw: Option<&str>) -> Result<Option<K>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    hex::decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| field_error("cursor", "is not a cursor this API gave out"))
}

/// The cursor after `key`.
pub fn encode<K: Serialize>(key: &K) -> String {
    hex::encode(serde_json::to_vec(key).unwrap_or_default())
}

/// `{"items", "next_cursor"}` from up to `limit + 1` rows: the extra row, if any, says
/// there is a next page.
pub fn page<R, K: Serialize, T>(
    mut rows: Vec<R>,
    limit: i64,
    key: impl Fn(&R) -> K,
    render: impl Fn(&R) -> T,
) -> crate::contract::Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more {
        rows.last().map(|r| encode(&key(r)))
    } else {
        None
    };
    crate::contract::Page {
        items: rows.iter().map(render).collect(),
        next_cursor,
    }
}

/// A 422 naming one query parameter.
pub fn field_error(field: &str, message: &str) -> ApiError {
    ApiError::validation(json!([{ "field": field, "message": message }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = encode(&("2030-01-01T00:00:00Z", 7));
        assert_eq!(
            decode::<(String, i32)>(Some(&cursor)).unwrap(),
            Some(("2030-01-01T00:00:00Z".into(), 7))
        );
        assert!(decode::<(String, i32)>(Some("zz")).is_err());
        assert!(decode::<(String, i32)>(None).unwrap().is_none());
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }

    #[test]
    fn a_page_says_whether_more_follows() {
        let page = page(vec![1, 2, 3], 2, |n| *n, |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(decode::<i32>(page.next_cursor.as_deref()).unwrap(), Some(2));
        let last = super::page(vec![1], 2, |n| *n, |n| *n);
        assert!(last.next_cursor.is_none());
    }
}
