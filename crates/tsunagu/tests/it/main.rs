//! Integration tests of the `tsunagu` app crate (one binary: see STYLE.md).

mod accounts_web;
mod browser;
mod browser_line;
mod browser_manual;
mod courses;
mod courses_console;
mod courses_students;
mod events;
mod events_apply;
mod events_faults;
mod events_zoom;
mod helpers;
mod job_faults;
mod jobs;
mod limits;
mod line_contract;
mod line_intake;
mod line_webhook;
mod mail_smtp;
mod media;
mod ops;
mod retention;
mod security;
mod webdriver;
mod zoom_check;
mod zoom_tokens;
