//! Domain types and rules of Tsunagu. No IO lives here.

pub mod email;
pub mod plan;
pub mod rate;
pub mod role;

pub use email::{Email, EmailError};
pub use plan::{Feature, Plan};
pub use role::Role;

/// Identifier of an account (主催者/講師). Only the store hands these out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct AccountId(pub i64);

impl std::fmt::Display for AccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
