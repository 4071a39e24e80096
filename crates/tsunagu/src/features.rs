//! The features of this build, as they plug in at startup. A feature module exposes its job
//! kinds (`job_kinds()`), and the list below is the one place that names them: the worker and
//! `app.rs` know no feature.

use std::sync::Arc;

use crate::jobs::{JobKind, Registry};

/// Every job kind: the foundation's own, then each feature's.
pub fn job_kinds() -> Vec<JobKind> {
    let mut kinds = crate::jobs::own_kinds();
    kinds.extend(crate::mail::job_kinds());
    kinds.extend(crate::line::job_kinds());
    kinds.extend(crate::media::job_kinds());
    kinds
}

pub fn job_registry() -> Arc<Registry> {
    Arc::new(Registry::new(job_kinds()))
}
