//! End-to-end tests: a real owner node and real FI clients over a real loopback socket, and the `duo` binary.
//!
//! One test binary (fewer links); each module covers one part of the story.

mod bench_report;
mod cli;
mod cli_json;
mod dp;
mod frames;
mod lockout;
mod new_user;
mod owner_files;
mod pairing;
mod persistence;
mod portfolio;
mod readme;
mod relay;
mod requests;
mod scoring;
mod serve;
mod ui;
mod ui_budget;
mod ui_data;
mod ui_fi;
