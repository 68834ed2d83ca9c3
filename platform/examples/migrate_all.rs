//! Applies every migration set (event store, read models, payment gateway) to one
//! database, each in its own schema as the services apply them: the schema that
//! sqlx's compile-time checked queries are described against (`scripts/sqlx-prepare`).
//!
//!     cargo run -p platform --example migrate_all -- postgres://owner@host/db

use platform::db;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: migrate_all <database URL of the owner>"))?;
    db::migrate_event_store(&db::connect(&url, 2).await?).await?;
    db::migrate_read_models(&db::connect_read_models(&url, 2).await?).await?;
    let payments = db::connect_in_schema(&url, db::PAYMENT_GATEWAY_SCHEMA, 2).await?;
    db::migrate_payment_gateway(&payments).await?;
    println!("event store, read models and payment gateway migrated");
    Ok(())
}
