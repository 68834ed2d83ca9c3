//! The services' own database users, as tests run them: a login user per service, in
//! the group role its migrations grant rights to (`boxoffice_command`,
//! `boxoffice_projector`, `boxoffice_query`, `boxoffice_payments`, `boxoffice_notifier`). Roles belong to the
//! server, so these are made once per server and shared by every test database.

use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

/// command-api's login.
pub const COMMAND: &str = "bt_command";
/// The projector's login.
pub const PROJECTOR: &str = "bt_projector";
/// query-api's login.
pub const QUERY: &str = "bt_query";
/// The payment gateway's login.
pub const PAYMENTS: &str = "bt_payments";
/// The notifier's login.
pub const NOTIFIER: &str = "bt_notifier";

/// Every test login's password.
const PASSWORD: &str = "boxoffice-test";

/// Each login and its group.
const LOGINS: [(&str, &str); 5] = [
    (COMMAND, "boxoffice_command"),
    (PROJECTOR, "boxoffice_projector"),
    (QUERY, "boxoffice_query"),
    (PAYMENTS, "boxoffice_payments"),
    (NOTIFIER, "boxoffice_notifier"),
];

static MADE: OnceCell<()> = OnceCell::const_new();

/// Makes the logins (and their groups, which the migrations would make too) when the
/// server lacks them.
pub async fn ensure_logins() {
    MADE.get_or_init(|| async {
        let admin = crate::env("BOXOFFICE_TEST_DATABASE_URL");
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("cannot connect to the test Postgres");
        // Other test processes do the same at the same time: one at a time (advisory
        // locks are per database, and all of them come through this one).
        sqlx::query("SELECT pg_advisory_lock(hashtext('boxoffice.test-logins'))")
            .execute(&mut conn)
            .await
            .expect("cannot take the logins' lock");
        for (login, group) in LOGINS {
            // A migration elsewhere may make the group meanwhile: tolerated.
            create(&mut conn, group, &format!("CREATE ROLE {group} NOLOGIN")).await;
            create(
                &mut conn,
                login,
                &format!("CREATE ROLE {login} LOGIN PASSWORD '{PASSWORD}' IN ROLE {group}"),
            )
            .await;
        }
        sqlx::query("SELECT pg_advisory_unlock(hashtext('boxoffice.test-logins'))")
            .execute(&mut conn)
            .await
            .expect("cannot release the logins' lock");
        let _ = conn.close().await;
    })
    .await;
}

/// Runs `create` unless the role `name` exists; a failure is fine when it exists since.
async fn create(conn: &mut PgConnection, name: &str, create: &str) {
    if role_exists(conn, name).await {
        return;
    }
    if let Err(err) = sqlx::query(create).execute(&mut *conn).await {
        assert!(
            role_exists(conn, name).await,
            "cannot create the role {name}: {err}"
        );
    }
}

async fn role_exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .expect("cannot read pg_roles")
}

/// `url` (a test database's) with `login`'s credentials instead of the superuser's.
pub fn url_as(url: &str, login: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (_, host) = rest.split_once('@').expect("a URL with credentials");
    format!("{scheme}://{login}:{PASSWORD}@{host}")
}
