//! The LINE feature's job kinds.

use std::time::Duration;

use crate::jobs::{JobKind, kinds};

pub fn job_kinds() -> Vec<JobKind> {
    vec![JobKind::new(kinds::LINE_EVENTS, Duration::from_secs(600), |app, _worker, job| async move {
        super::events::run(&app, &job).await
    })]
}
