use tsunagu_store::{Store, StoreOptions};

fn unique_suffix() -> String {
    tsunagu_store::testing::unique_name("t")
}

pub async fn sqlite() -> (Store, tempdir::TempDir) {
    let dir = tempdir::TempDir::new();
    let url = format!("sqlite://{}/test.db", dir.path().display());
    let store = Store::open(&url, &StoreOptions::default()).await.expect("open sqlite");
    (store, dir)
}

/// `None` when PostgreSQL is not configured (allowed only outside CI).
pub async fn postgres() -> Option<Store> {
    let Ok(admin) = std::env::var("TSUNAGU_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "TSUNAGU_TEST_PG_URL is not set under CI: run the suite through ./scripts/test"
        );
        eprintln!("TSUNAGU_TEST_PG_URL not set: skipping the PostgreSQL half");
        return None;
    };
    let url = tsunagu_store::testing::create_pg_database(&admin, "tsunagu_store").await.expect("create database");
    Some(Store::open(&url, &StoreOptions::default()).await.expect("open postgres"))
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!("tsunagu-store-{}", super::unique_suffix()));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
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
