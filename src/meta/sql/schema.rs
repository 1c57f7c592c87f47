//! Where a database's schema stands against the migrations this binary carries. `serve` migrates a
//! schema that is behind and refuses one that is ahead (a newer release migrated it: this binary's queries
//! were not written for it), with a message that says which; commands that only read (`fsck`) migrate
//! nothing and want the schema exactly current.
//!
//! Between adjacent releases the migrations are additive (new tables, nullable or defaulted columns,
//! indexes), so nodes of the previous release that are already running keep working while the new ones
//! start: docs/operations.md, "Rolling upgrades".

use sqlx::AnyPool;
use sqlx::migrate::Migrator;

use super::Engine;
use crate::meta::{MetaError, MetaResult};

/// The newest migration applied to the database, and the newest this binary has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub applied: i64,
    pub known: i64,
}

pub async fn versions(pool: &AnyPool, migrator: &Migrator, engine: &Engine) -> MetaResult<Versions> {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let exists = match engine {
        Engine::Sqlite { .. } => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Engine::Postgres { .. } => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
        }
    };
    let tables: i64 = sqlx::query_scalar(exists).fetch_one(pool).await.map_err(|e| engine.classify(e))?;
    let applied = if tables == 0 {
        0
    } else {
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .map_err(|e| engine.classify(e))?;
        newest.unwrap_or(0)
    };
    Ok(Versions { applied, known })
}

/// Applies pending migrations (`migrate`), or checks there are none; refuses a schema newer than this
/// binary's either way.
pub async fn prepare(pool: &AnyPool, migrator: &Migrator, engine: &Engine, migrate: bool) -> MetaResult<()> {
    let Versions { applied, known } = versions(pool, migrator, engine).await?;
    if applied > known {
        return Err(MetaError::other(format!(
            "the database's schema is at migration {applied}, newer than this filegate {} knows (up to {known}): a \
             newer release has migrated it. Run that release or a later one; this one will not serve a schema it \
             was not written for.",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if applied == known {
        return Ok(());
    }
    if !migrate {
        return Err(MetaError::other(format!(
            "the database's schema is at migration {applied}, older than this filegate's ({known}): run \
             `filegate migrate` (or start `filegate serve`, which migrates) first"
        )));
    }
    migrator.run(pool).await.map_err(|e| MetaError::other(format!("migrating the database failed: {e}")))
}

#[cfg(test)]
mod tests {
    use sqlx::Executor as _;

    use super::super::SqlMeta;
    use crate::meta::MetaStore as _;

    #[tokio::test]
    async fn a_schema_behind_is_migrated_only_when_asked_and_one_ahead_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let behind = SqlMeta::open_sqlite(&path, 1, false).await.err().expect("a fresh database is behind");
        assert!(behind.to_string().contains("run `filegate migrate`"), "{behind}");
        SqlMeta::open_sqlite(&path, 1, true).await.unwrap().close().await;
        let store = SqlMeta::open_sqlite(&path, 1, false).await.expect("current once migrated");
        // A later release's migration, as it would record it.
        store
            .pool()
            .execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (9999, 'from a newer release', TRUE, X'00', 0)",
            )
            .await
            .unwrap();
        store.close().await;
        for migrate in [true, false] {
            let ahead = SqlMeta::open_sqlite(&path, 1, migrate).await.err().expect("a newer schema is refused");
            let message = ahead.to_string();
            assert!(message.contains("at migration 9999, newer than this filegate"), "{message}");
        }
    }
}
