//! Duo keeps a person's alternative credit data (rent, utilities, phone, subscriptions, bank transactions) on
//! their own computer and lets a financial institution learn from it only through releases the owner approved.
//!
//! This crate is the facade: it re-exports the engine, the policies and the node. The `duo` command line is the
//! crate's binary (`src/main.rs` and the modules in `src/cli/`), built on this facade.
//!
//! The FI side works through lazy pointers: each operation is type-checked by the owner's node against the
//! published metadata and extends a lineage; nothing is computed until a release is approved.
//!
//! # Example: an FI session
//!
//! ```no_run
//! use duo::fi::{Client, FiHome};
//! use duo::policies::Backend;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), duo::node::Error> {
//! // The FI paired earlier with `duo fi pair URL CODE`; its keys and the pinned owner key live here.
//! let home = FiHome::new(std::path::Path::new("/var/lib/acme/duo/fi"));
//! let mut fi = Client::connect(&home, None).await?;
//!
//! // Metadata and the catalogue, never rows.
//! for d in fi.datasets().await? {
//!     println!("{}: {}", d.meta.name, d.meta.description);
//! }
//!
//! // Take a column, chain operations: each step is only type-checked on the owner's node.
//! let rent = fi.dataset("rent").await?;
//! let recent = fi.last_months(&rent, 12).await?;
//! let amount = fi.column(&recent, "amount").await?;
//! let clamped = fi.clamp(&amount, 0.0, 300_000.0).await?;
//! let mean = fi.mean(&clamped).await?;
//! println!("asking for: {}", mean.description);
//!
//! // Ask for a release with a reason, and wait for the owner's decision.
//! let req = fi.request(&mean, Backend::Plaintext, "affordability check for a loan application").await?;
//! let done = fi.status(req.id, Duration::from_secs(60)).await?;
//! println!("{:?}: {:?} {:?}", done.state, done.answer, done.why);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub use duo_engine as engine;

pub use duo_node as node;
pub use duo_node::fi;
pub use duo_policies as policies;
