//! Runs the shared behavioural suite against every backend.
//!
//! PostgreSQL runs when `OPENEG_TEST_DATABASE_URL` is set, in a fresh schema dropped at the
//! end; with `OPENEG_REQUIRE_PG=1` a missing URL fails instead of skipping (CI).

mod suite;

use std::path::PathBuf;
use std::sync::Arc;

use openeg_store::{open_store, Kind, MetaStore, PgStore, SqliteStore};
use rand::RngCore;
use sqlx::Connection;

fn unique_suffix() -> String {
    format!(
        "{}_{:016x}",
        std::process::id(),
        rand::rngs::OsRng.next_u64()
    )
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("openeg-store-test-{}", unique_suffix()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_in_memory() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    suite::run_suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file() {
    let dir = temp_dir();
    let path = dir.join("sub").join("meta.db");
    let store = SqliteStore::open(&path).await.unwrap();
    suite::run_suite(Arc::new(store)).await;

    // Reopening runs migrations again (no-op) and sees the data.
    let again = SqliteStore::open(&path).await.unwrap();
    assert!(!again.ensure_project("proj-a").await.unwrap());
    assert!(again
        .get_by_name("dup", Kind::Channel, "same")
        .await
        .unwrap()
        .is_some());
    again.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_store_defaults_to_sqlite_in_data_dir() {
    let dir = temp_dir().join("data");
    let store = open_store(None, &dir).await.unwrap();
    assert!(store.ensure_project("p").await.unwrap());
    assert!(dir.join("openeg.db").is_file());
    drop(store);
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

/// `Some(url)` or `None` after printing why PostgreSQL is skipped.
fn pg_url() -> Option<String> {
    match std::env::var("OPENEG_TEST_DATABASE_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("OPENEG_REQUIRE_PG").as_deref() != Ok("1"),
                "OPENEG_REQUIRE_PG=1 but OPENEG_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipped: OPENEG_TEST_DATABASE_URL not set");
            None
        }
    }
}

/// A URL whose connections use `schema` as search_path.
fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let Some(url) = pg_url() else { return };
    let schema = format!("openeg_t_{}", unique_suffix());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();

    let scoped = with_search_path(&url, &schema);
    // Run in a task so the schema is dropped even when an assertion fails.
    let run = tokio::spawn({
        let scoped = scoped.clone();
        async move {
            let store = PgStore::connect(&scoped).await.unwrap();
            suite::run_suite(Arc::new(store.clone())).await;
            store.close().await;

            // Concurrent connects migrate once; reconnecting sees the data.
            let (a, b) = tokio::join!(PgStore::connect(&scoped), PgStore::connect(&scoped));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(!a.ensure_project("proj-a").await.unwrap());
            assert!(b
                .get_by_name("dup", Kind::Channel, "same")
                .await
                .unwrap()
                .is_some());
            a.close().await;
            b.close().await;

            let via_open = open_store(Some(&scoped), std::path::Path::new("/nonexistent"))
                .await
                .unwrap();
            assert!(!via_open.ensure_project("proj-b").await.unwrap());
        }
    })
    .await;

    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn postgres_bad_url_does_not_leak_password() {
    let err = PgStore::connect("postgres://user:s3cr3tpw@127.0.0.1:1/db?sslmode=bogus")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("s3cr3tpw"), "{err}");
}
