//! The catalogue of named alternative-data attributes.
