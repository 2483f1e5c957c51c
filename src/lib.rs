//! duo
