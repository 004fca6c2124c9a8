//! A fresh database on the machine's PostgreSQL for one run, dropped at
//! the end (as `control/tests/common/mod.rs` does for each test).

use sqlx::{Connection, PgConnection, Row};

/// A database created for this run.
#[derive(Debug)]
pub struct FreshDatabase {
    admin_url: String,
    /// Its name.
    pub name: String,
}

/// The prefix of the databases this benchmark creates.
const PREFIX: &str = "jitgate_bench_";

/// The URL of database `name` on the server behind `admin_url` (its last
/// path segment replaced).
fn url_of(admin_url: &str, name: &str) -> String {
    let base = admin_url.split('?').next().unwrap_or(admin_url);
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    format!("{server}/{name}")
}

impl FreshDatabase {
    /// Connects to `admin_url`, drops databases left by benchmark runs that
    /// died, and creates a new one. `Err` says why PostgreSQL is not usable.
    pub async fn create(admin_url: &str) -> Result<FreshDatabase, String> {
        let mut admin = PgConnection::connect(admin_url)
            .await
            .map_err(|e| format!("PostgreSQL not reachable at {admin_url}: {e}"))?;
        let leftovers = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'jitgate\\_bench\\_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
        for row in leftovers {
            let name: String = row.try_get("datname").unwrap_or_default();
            let pid = name.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
        let name = format!("{PREFIX}{}", std::process::id());
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("cannot drop {name}: {e}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        let _ = admin.close().await;
        Ok(FreshDatabase {
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    /// The URL the control service uses.
    pub fn url(&self) -> String {
        url_of(&self.admin_url, &self.name)
    }

    /// Drops the database (the control service must be stopped first;
    /// `WITH (FORCE)` ends connections left behind anyway).
    pub async fn drop_database(self) -> Result<(), String> {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        let _ = admin.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::url_of;

    #[test]
    fn the_database_replaces_the_last_path_segment() {
        assert_eq!(
            url_of("postgres://postgres@127.0.0.1:5432/test", "jitgate_bench_1"),
            "postgres://postgres@127.0.0.1:5432/jitgate_bench_1"
        );
        assert_eq!(url_of("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x");
    }
}
