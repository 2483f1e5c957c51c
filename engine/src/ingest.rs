//! CSV ingest into typed datasets.
