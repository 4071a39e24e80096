//! The Zoom client against the Zoom sandbox (one test binary for the crate), with every
//! exchange checked against the official schemas.

mod auth;
mod calls;
mod contract;
mod load;
mod oauth;
mod support;
