//! Seeded sample data.
