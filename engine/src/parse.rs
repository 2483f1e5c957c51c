//! The expression syntax.
