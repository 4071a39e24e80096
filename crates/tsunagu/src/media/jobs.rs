//! The media feature's job kinds.

use std::time::Duration;

use crate::jobs::{JobKind, kinds};

pub fn job_kinds() -> Vec<JobKind> {
    vec![
        // A conversion's ffmpeg runs are each bounded by `convert::CONVERT_TIMEOUT` (an hour);
        // probing, the damage check and previews come on top.
        JobKind::new(kinds::MEDIA_CONVERT, Duration::from_secs(3 * 3600), |app, _worker, job| async move {
            super::library::run(&app, &job).await
        }),
        JobKind::new(kinds::MEDIA_REMOVE, Duration::from_secs(600), |app, _worker, job| async move {
            super::library::remove_stored(&app, &job).await
        }),
    ]
}
