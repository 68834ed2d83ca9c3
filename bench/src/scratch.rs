//! A scratch database on the stack's Postgres server: created for one scenario, with
//! the event store migrated, and dropped at the end, so a figure never depends on what
//! earlier runs left behind.

use anyhow::Context;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// A database of the scenario's own.
pub struct Scratch {
    admin: PgConnection,
    name: String,
    /// Its URL.
    pub url: String,
}

impl Scratch {
    /// Creates `<prefix>_<uuid>` on the server of `database_url`.
    pub async fn create(database_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let (server, _) = database_url
            .split('?')
            .next()
            .and_then(|url| url.rsplit_once('/'))
            .context("DATABASE_URL has no database name")?;
        let name = format!("{prefix}_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(database_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let url = format!("{server}/{name}");
        Ok(Self { admin, name, url })
    }

    /// Drops it.
    pub async fn drop(mut self) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut self.admin)
        .await?;
        Ok(())
    }
}
