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
