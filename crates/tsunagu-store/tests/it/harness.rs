use tsunagu_store::{Store, StoreOptions};

pub use tsunagu_store::testing::TempDir;

pub async fn sqlite() -> (Store, TempDir) {
    let dir = TempDir::new("tsunagu-store");
    let url = format!("sqlite://{}/test.db", dir.path().display());
    let store = Store::open(&url, &StoreOptions::default()).await.expect("open sqlite");
    (store, dir)
}

/// `None` when PostgreSQL is not configured (allowed only outside CI).
pub async fn postgres() -> Option<Store> {
    let admin = tsunagu_store::testing::pg_admin_url()?;
    let url = tsunagu_store::testing::create_pg_database(&admin, "tsunagu_store").await.expect("create database");
    Some(Store::open(&url, &StoreOptions::default()).await.expect("open postgres"))
}

/// Generates `<name>_sqlite` and `<name>_postgres` tests from one `async fn name(store: Store)`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let (store, _dir) = crate::harness::sqlite().await;
                    super::$name(store).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(store) = crate::harness::postgres().await {
                        super::$name(store).await;
                    }
                }
            }
        )*
    };
}
pub(crate) use conformance;
