//! The LINE client against the LINE sandbox (one test binary for the crate).

mod calls;
mod contract;
mod load;
mod login;
mod support;
