//! Runs the shared behavioural suite against every backend.
//!
//! PostgreSQL runs when `OPENEG_TEST_DATABASE_URL` is set, in a fresh schema dropped at the
//! end; with `OPENEG_REQUIRE_PG=1` a missing URL fails instead of skipping (CI).

mod suite;

use std::path::PathBuf;
use std::sync::Arc;

use openeg_store::delivery::{DeliveryStore, NewDelivery};
use openeg_store::{open_store, open_stores, Kind, MetaStore, PgStore, SqliteStore};
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
    // Every trace write indexes its channel's event ids at once (sqlite_file keeps the
    // default, so lookups there go through the unindexed tail): the suite covers both.
    let mut store = SqliteStore::open_in_memory().await.unwrap();
    store.set_trace_index_rows(1);
    let store = Arc::new(store);
    suite::run_suite(store.clone()).await;
    suite::delivery::run_delivery_suite(store.clone(), "sqlite in-memory").await;
    suite::cluster::run_cluster_suite(store.clone(), "sqlite in-memory").await;
    suite::mirror::run_mirror_suite(store, "sqlite in-memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file() {
    let dir = temp_dir();
    let path = dir.join("sub").join("meta.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    suite::run_suite(store.clone()).await;
    suite::delivery::run_delivery_suite(store.clone(), "sqlite file").await;
    suite::cluster::run_cluster_suite(store.clone(), "sqlite file").await;
    suite::mirror::run_mirror_suite(store.clone(), "sqlite file").await;
    store.close().await;

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

fn delivery(project: &str) -> NewDelivery {
    NewDelivery {
        project_id: project.into(),
        channel_id: "ch".into(),
        offset: 1,
        event_id: "e".into(),
        received_at: 1,
        subscription_id: "s".into(),
        subscription_name: "sn".into(),
        target_id: "t".into(),
        target_name: "tn".into(),
        next_at: i64::MAX / 4,
    }
}

/// Both handles of `open_stores` work and see one database.
async fn check_stores_share_database(stores: &openeg_store::Stores) {
    assert!(stores.meta.ensure_project("open-stores").await.unwrap());
    let ids = stores
        .delivery
        .record_routed(&[], &[delivery("open-stores")])
        .await
        .unwrap();
    let got = stores
        .delivery
        .event_deliveries("open-stores", "ch", 1)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, ids[0].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_stores_sqlite_shares_one_database() {
    let dir = temp_dir().join("data");
    let stores = open_stores(None, &dir).await.unwrap();
    check_stores_share_database(&stores).await;
    drop(stores);
    // Reopened through the metadata-only entry point: migrations are a no-op, data is there.
    let meta = open_store(None, &dir).await.unwrap();
    assert!(!meta.ensure_project("open-stores").await.unwrap());
    drop(meta);
    let again = SqliteStore::open(&dir.join("openeg.db")).await.unwrap();
    assert_eq!(
        again
            .event_deliveries("open-stores", "ch", 1)
            .await
            .unwrap()
            .len(),
        1
    );
    again.close().await;
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

/// A database at schema version 1 (written by the previous release) is upgraded in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrades_from_version_1() {
    let dir = temp_dir();
    let path = dir.join("old.db");
    std::fs::create_dir_all(&dir).unwrap();
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        for stmt in [
            "CREATE TABLE openeg_schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            "INSERT INTO openeg_schema_migrations VALUES (1, 0)",
            "CREATE TABLE projects (project_id TEXT PRIMARY KEY, created_at INTEGER NOT NULL)",
            "INSERT INTO projects VALUES ('old', 0)",
        ] {
            sqlx::query(stmt).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(!store.ensure_project("old").await.unwrap());
    let ids = store.record_routed(&[], &[delivery("old")]).await.unwrap();
    assert_eq!(ids.len(), 1);
    let v: i64 = {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query_scalar("SELECT MAX(version) FROM openeg_schema_migrations")
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    assert_eq!(v, 9);
    store.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
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
            suite::delivery::run_delivery_suite(Arc::new(store.clone()), "postgres").await;
            suite::cluster::run_cluster_suite(Arc::new(store.clone()), "postgres").await;
            suite::mirror::run_mirror_suite(Arc::new(store.clone()), "postgres").await;
            // The retention pass leaves the planner fresh statistics (autovacuum may be off).
            store.purge_before(0).await.unwrap();
            let analyzed: Vec<(String,)> = sqlx::query_as(
                "SELECT relname::text FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema() AND last_analyze IS NOT NULL \
                 AND relname IN ('event_traces', 'deliveries') ORDER BY relname",
            )
            .fetch_all(&mut sqlx::PgConnection::connect(&scoped).await.unwrap())
            .await
            .unwrap();
            assert_eq!(
                analyzed,
                vec![("deliveries".to_string(),), ("event_traces".to_string(),)]
            );
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

            // An exclusive section holds across processes: a session elsewhere holding the
            // section's advisory lock keeps this store out until it lets go.
            let store = PgStore::connect(&scoped).await.unwrap();
            let mut other = sqlx::PgConnection::connect(&scoped).await.unwrap();
            let key =
                "('x' || substr(encode(sha256('openeg:section:cross'::bytea), 'hex'), 1, 16))\
                       ::bit(64)::bigint";
            sqlx::query(&format!("SELECT pg_advisory_lock({key})"))
                .execute(&mut other)
                .await
                .unwrap();
            let blocked = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                store.exclusive("cross"),
            )
            .await;
            assert!(blocked.is_err(), "entered a section another session holds");
            sqlx::query(&format!("SELECT pg_advisory_unlock({key})"))
                .execute(&mut other)
                .await
                .unwrap();
            let held = store.exclusive("cross").await.unwrap();
            let (taken,): (bool,) = sqlx::query_as(&format!("SELECT pg_try_advisory_lock({key})"))
                .fetch_one(&mut other)
                .await
                .unwrap();
            assert!(!taken, "the section's lock is not held in PostgreSQL");
            drop(held);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let (taken,): (bool,) = sqlx::query_as(&format!("SELECT pg_try_advisory_lock({key})"))
                .fetch_one(&mut other)
                .await
                .unwrap();
            assert!(taken, "leaving the section releases its lock");
            store.close().await;

            let via_open = open_store(Some(&scoped), std::path::Path::new("/nonexistent"))
                .await
                .unwrap();
            assert!(!via_open.ensure_project("proj-b").await.unwrap());

            let stores = open_stores(Some(&scoped), std::path::Path::new("/nonexistent"))
                .await
                .unwrap();
            check_stores_share_database(&stores).await;
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
