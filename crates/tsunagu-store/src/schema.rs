//! Introspection of the live schema in one neutral shape, so a test can prove the SQLite
//! and PostgreSQL migrations describe the same tables, columns, types, nullability and indexes.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{Backend, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColumnShape {
    pub name: String,
    /// One of `integer`, `text`.
    pub kind: String,
    pub not_null: bool,
}

/// table -> (columns sorted by name, unique/ordinary index column lists sorted)
pub type SchemaShape = BTreeMap<String, (Vec<ColumnShape>, Vec<String>)>;

fn normalise(ty: &str) -> String {
    let t = ty.to_ascii_lowercase();
    if t.contains("int") {
        "integer".into()
    } else if t.contains("text") || t.contains("char") {
        "text".into()
    } else {
        t
    }
}

pub async fn describe(store: &Store) -> Result<SchemaShape> {
    let mut c = store.conn().await?;
    let mut out = SchemaShape::new();
    match store.backend() {
        Backend::Sqlite => {
            let tables: Vec<String> = sqlx::query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for t in tables {
                let cols = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{t}')"
                )))
                .fetch_all(&mut *c)
                .await?;
                let mut columns: Vec<ColumnShape> = cols
                    .iter()
                    .map(|r| {
                        let pk: i64 = r.get(3);
                        let nn: i64 = r.get(2);
                        ColumnShape {
                            name: r.get(0),
                            kind: normalise(&r.get::<String, _>(1)),
                            not_null: nn == 1 || pk > 0,
                        }
                    })
                    .collect();
                columns.sort();
                let idx_rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT name, \"unique\" FROM pragma_index_list('{t}') WHERE origin <> 'pk'"
                )))
                .fetch_all(&mut *c)
                .await?;
                let mut indexes = Vec::new();
                for r in idx_rows {
                    let name: String = r.get(0);
                    let unique: i64 = r.get(1);
                    let cols: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT name FROM pragma_index_info('{name}') ORDER BY seqno"
                    )))
                    .fetch_all(&mut *c)
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                    indexes.push(format!("{}({})", if unique == 1 { "unique" } else { "index" }, cols.join(",")));
                }
                indexes.sort();
                out.insert(t, (columns, indexes));
            }
        }
        Backend::Postgres => {
            let rows = sqlx::query(
                "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
                 FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, column_name",
            )
            .fetch_all(&mut *c)
            .await?;
            for r in rows {
                let t: String = r.get(0);
                let col = ColumnShape {
                    name: r.get(1),
                    kind: normalise(&r.get::<String, _>(2)),
                    not_null: r.get::<String, _>(3) == "NO",
                };
                out.entry(t).or_default().0.push(col);
            }
            // Unique constraints and ordinary indexes, excluding primary keys (SQLite reports
            // a non-rowid primary key as an index too, so both sides skip them the same way).
            let idx = sqlx::query(
                "SELECT t.relname::text, ix.indisunique::text,
                        (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord)
                           FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
                           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum)
                 FROM pg_index ix
                 JOIN pg_class t ON t.oid = ix.indrelid
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 WHERE n.nspname = current_schema() AND NOT ix.indisprimary",
            )
            .fetch_all(&mut *c)
            .await?;
            for r in idx {
                let t: String = r.get(0);
                let unique = r.get::<String, _>(1) == "true";
                let cols: String = r.get(2);
                out.entry(t).or_default().1.push(format!("{}({cols})", if unique { "unique" } else { "index" }));
            }
            for (cols, idx) in out.values_mut() {
                cols.sort();
                idx.sort();
            }
        }
    }
    Ok(out)
}
