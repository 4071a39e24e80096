//! Tsunagu (つなぐ): the application crate — config, startup, web console, jobs, mail, CLI.

pub mod accounts;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod courses;
pub mod crypto;
pub mod demo;
pub mod events;
pub mod features;
pub mod jobs;
pub mod limits;
pub mod line;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod payments;
pub mod startup;
pub mod telemetry;
pub mod web;
pub mod zoom;
