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

/// A database error, classified into pixl's own words. sqlx's and Postgres's messages can
/// quote values (a unique violation's detail names the duplicate key, a type error the
/// text that did not parse), so they never reach a log line, a failure reason or a dead
/// letter; only the kind, the SQLSTATE code and the constraint's name do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbFailure {
    /// A constraint refused the change: retrying cannot help.
    #[error("database: the change breaks constraint {constraint} (SQLSTATE {code})")]
    Constraint { constraint: String, code: String },
    /// The server answered with another error.
    #[error("database: the server refused a statement (SQLSTATE {code})")]
    Refused { code: String },
    /// The server is unreachable or the pool is exhausted: may pass.
    #[error("database: {0}")]
    Unavailable(&'static str),
    /// A row did not have the expected shape (pixl's own bug or a schema mismatch).
    #[error("database: unexpected data ({0})")]
    Data(&'static str),
}

impl DbFailure {
    pub fn classify(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::Database(database) => {
                let code = database.code().map(|c| c.into_owned()).unwrap_or_default();
                // Class 23: integrity constraint violation.
                if code.starts_with("23") {
                    Self::Constraint { constraint: database.constraint().unwrap_or("unnamed").to_owned(), code }
                } else {
                    Self::Refused { code }
                }
            }
            sqlx::Error::PoolTimedOut => Self::Unavailable("no free connection in time"),
            sqlx::Error::PoolClosed => Self::Unavailable("the pool is closed"),
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => Self::Unavailable("the connection to Postgres failed"),
            sqlx::Error::RowNotFound => Self::Data("no row"),
            sqlx::Error::ColumnNotFound(_) | sqlx::Error::ColumnIndexOutOfBounds { .. } => Self::Data("a column is missing"),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => Self::Data("a value has the wrong type"),
            _ => Self::Unavailable("the query failed"),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
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
    let mut admin = PgConnection::connect_with(&settings.connect_options_for("postgres")).await.map_err(|source| connect_error(settings, source))?;
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
