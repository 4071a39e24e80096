use tsunagu_store::schema::describe;

/// The two migration trees must describe the same schema: same tables, columns, kinds,
/// nullability and indexes. A column added to one tree only fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_schemas_match() {
    let (lite, _dir) = crate::harness::sqlite().await;
    let Some(pg) = crate::harness::postgres().await else { return };
    let a = describe(&lite).await.unwrap();
    let b = describe(&pg).await.unwrap();
    assert!(a.len() >= 8, "expected the foundation tables, got {:?}", a.keys().collect::<Vec<_>>());
    let ta: Vec<_> = a.keys().collect();
    let tb: Vec<_> = b.keys().collect();
    assert_eq!(ta, tb, "table sets differ");
    for (table, shape) in &a {
        assert_eq!(Some(shape), b.get(table), "table {table} differs between SQLite and PostgreSQL");
    }
}

/// Migration 0012 scopes students to an account (on SQLite by rebuilding the table): students
/// and their subscriptions from before it stay, each student takes the account of its course,
/// subscriptions still belong to their student, and one email may now study with two accounts.
async fn students_survive_their_move_to_accounts(store: tsunagu_store::Store) {
    use tsunagu_core::{Email, Plan, Role};
    use tsunagu_store::{accounts, courses};
    tsunagu_store::testing::migrate_up_to(&store, 11).await.unwrap();
    let new_account = async |email: &str| {
        let mut c = store.conn().await.unwrap();
        let email = Email::parse(email).unwrap();
        let a = accounts::NewAccount {
            email: &email,
            display_name: "講師",
            password_hash: "$argon2id$fake",
            plan: Plan::Business,
            role: Role::Member,
            time_zone: "Asia/Tokyo",
        };
        accounts::create(&mut c, &a, 1).await.unwrap().id
    };
    let first = new_account("first@example.com").await;
    let second = new_account("second@example.com").await;
    let mut c = store.conn().await.unwrap();
    let course = courses::create_course(&mut c, first, "k1", "講座", "Asia/Tokyo", 1).await.unwrap();
    // A student as release 11 stored it (no account).
    let student: i64 = sqlx::query_scalar(
        "INSERT INTO students (email, display_name, created_at, updated_at) VALUES ('s@example.com', '生徒', 1, 1) RETURNING id",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    let sub = courses::subscribe(&mut c, course, student, 2).await.unwrap();
    // A student deleted before the upgrade: its id is not handed out again after it.
    let gone: i64 = sqlx::query_scalar(
        "INSERT INTO students (email, display_name, created_at, updated_at) VALUES ('gone@example.com', '', 1, 1) RETURNING id",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    sqlx::query("DELETE FROM students WHERE id = $1").bind(gone).execute(&mut *c).await.unwrap();
    drop(c);
    assert_eq!(tsunagu_store::testing::migrate_up_to(&store, 12).await.unwrap(), vec![12]);
    let mut c = store.conn().await.unwrap();
    let owner: Option<i64> = sqlx::query_scalar("SELECT account_id FROM students WHERE id = $1")
        .bind(student)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(owner, Some(first.0), "the student takes its course's account");
    let subs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM course_subscriptions WHERE id = $1 AND student_id = $2")
        .bind(sub)
        .bind(student)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(subs, 1, "the subscription is kept");
    // The same email with another account is another student; twice in one account is refused.
    let again = courses::create_student(&mut c, second, Some("s@example.com"), None, "", 3).await.unwrap();
    assert!(again > gone, "ids are not reused");
    assert!(courses::create_student(&mut c, first, Some("s@example.com"), None, "", 3).await.is_err());
    // Subscriptions still refer to the students table: deleting the student takes them along.
    sqlx::query("DELETE FROM students WHERE id = $1").bind(student).execute(&mut *c).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM course_subscriptions").fetch_one(&mut *c).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_survive_their_move_to_accounts_sqlite() {
    let dir = tsunagu_store::testing::TempDir::new("tsunagu-upgrade");
    let url = format!("sqlite://{}/test.db", dir.path().display());
    let store = tsunagu_store::Store::connect(&url, &tsunagu_store::StoreOptions::default()).await.unwrap();
    students_survive_their_move_to_accounts(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_survive_their_move_to_accounts_postgres() {
    let Some(admin) = tsunagu_store::testing::pg_admin_url() else { return };
    let url = tsunagu_store::testing::create_pg_database(&admin, "tsunagu_upgrade").await.unwrap();
    let store = tsunagu_store::Store::connect(&url, &tsunagu_store::StoreOptions::default()).await.unwrap();
    students_survive_their_move_to_accounts(store).await;
}
