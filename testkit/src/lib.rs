//! Shared set-up for Duo's tests and benches: a sample owner on disk, its node serving on loopback, FIs paired
//! with it, the policies the tests run under, and private-scoring runs through a real node or in memory.
//!
//! Before this crate the same set-up was written out in the end-to-end tests, the crash-safety tests, the
//! benches and `duo bench`; it now lives here once. The crate depends only on the library crates (`engine`,
//! `policies`, `protocols`, `node`), never on the `duo` package, so that the `duo` binary (its demo and
//! `duo bench`) can use it too.
//!
//! Two kinds of functions live here, and their names say which:
//!
//! - set-up for tests (`owner_with_sample`, `paired_fi`, `connect`, the [`scoring`] helpers) panics with a
//!   message naming the step that failed, so a test reads as a list of steps;
//! - set-up that a program also runs ([`sample_owner`], [`SampleOwner::create`], [`OwnerNode::sample`],
//!   [`fi::pair`], [`fi::pair_and_connect`], [`scoring::Instance::random`]) returns a `Result`.
//!
//! # Example: an owner node with an FI paired to it
//!
//! ```no_run
//! use duo_testkit::{connect, owner_with_sample, paired_fi, policy};
//!
//! # async fn run() {
//! let owner = owner_with_sample(policy::TEST_POLICY);
//! let node = owner.start().await;
//! let fi = paired_fi(&owner, &node, "Acme").await;
//! let mut client = connect(&fi).await;
//! assert!(!client.datasets().await.unwrap().is_empty());
//! client.close().await;
//! node.shutdown().await;
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod attack;
pub mod fi;
pub mod owner;
pub mod policy;
pub mod scoring;

pub use fi::{connect, paired_fi, Fi};
pub use owner::{log_kinds, owner_with_sample, sample_owner, OwnerNode, SampleOwner};
