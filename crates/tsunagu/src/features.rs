//! The features of this build, as they plug in at startup. A feature module exposes its routes
//! (`routes()`, its pages and endpoints), its job kinds (`job_kinds()`) and, when it keeps state
//! in the process, that state (`state()`); the lists below are the one place that names them:
//! the web router, the job worker and `app.rs` know no feature.

use std::sync::Arc;

use crate::jobs::{JobKind, Registry};

/// Every job kind: the foundation's own, then each feature's.
pub fn job_kinds() -> Vec<JobKind> {
    let mut kinds = crate::jobs::own_kinds();
    kinds.extend(crate::mail::job_kinds());
    kinds.extend(crate::line::job_kinds());
    kinds.extend(crate::media::job_kinds());
    kinds.extend(crate::events::job_kinds());
    kinds.extend(crate::payments::job_kinds());
    kinds.extend(crate::courses::job_kinds());
    kinds
}

/// Every feature's state kept in the process.
pub fn state() -> crate::app::FeatureState {
    crate::app::FeatureState::default()
        .with(crate::mail::send::Accepted::default())
        .with(crate::line::LineState::default())
}

/// Every feature's pages and endpoints.
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    axum::Router::new()
        .merge(crate::accounts::routes())
        .merge(crate::jobs::routes())
        .merge(crate::mail::routes())
        .merge(crate::zoom::routes())
        .merge(crate::events::routes())
        .merge(crate::payments::routes())
        .merge(crate::courses::routes())
        .merge(crate::line::routes())
        .merge(crate::media::routes())
}

pub fn job_registry() -> Arc<Registry> {
    Arc::new(Registry::new(job_kinds()))
}
