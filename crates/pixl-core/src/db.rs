//! The Postgres pool: created (with the database itself, if missing) and migrated at
//! start-up, so a fresh server needs no manual step.

use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};

use crate::config::DatabaseSettings;

/// Migrations embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A database step that failed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to Postgres at {host}:{port} as {user}: {source}")]
    Connect { host: String, port: u16, user: String, source: sqlx::Error },
    #[error("cannot create database {name:?}: {source}")]
    Create { name: String, source: sqlx::Error },
    #[error("database name {0:?} may only hold letters, digits and '_'")]
    BadName(String),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connects to the configured database, creating it if the server has none of that name,
/// and applies pending migrations.
pub async fn connect(settings: &DatabaseSettings, max_connections: u32) -> Result<PgPool, DbError> {
    ensure_database(settings).await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(settings.connect_options())
        .await
        .map_err(|source| connect_error(settings, source))?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

fn connect_error(settings: &DatabaseSettings, source: sqlx::Error) -> DbError {
    DbError::Connect { host: settings.host.clone(), port: settings.port, user: settings.user.clone(), source }
}

async fn ensure_database(settings: &DatabaseSettings) -> Result<(), DbError> {
    let name = &settings.name;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DbError::BadName(name.clone()));
    }
    // Try ours first: in a deployment it exists and the user may not reach `postgres`.
    if let Ok(conn) = PgConnection::connect_with(&settings.connect_options()).await {
        let _ = conn.close().await;
        return Ok(());
    }
    let mut admin = PgConnection::connect_with(&settings.connect_options_for("postgres"))
        .await
        .map_err(|source| connect_error(settings, source))?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .map_err(|source| DbError::Create { name: name.clone(), source })?;
    if !exists {
        // The name was checked above, so quoting it is enough.
        let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await;
        match created {
            Ok(_) => {}
            // Another process created it between our check and our CREATE: "duplicate
            // database", or, when both CREATEs run at once, the catalogue's unique index
            // (services starting together hit this).
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(source) => return Err(DbError::Create { name: name.clone(), source }),
        }
    }
    let _ = admin.close().await;
    Ok(())
}
