//! Lineages in plain words.
