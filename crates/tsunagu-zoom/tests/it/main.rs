//! The Zoom client against the Zoom sandbox (one test binary for the crate).

mod auth;
