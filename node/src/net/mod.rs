//! The network: static keys and invite codes ([`keys`]), the WebSocket carrying a Noise channel
//! ([`transport`]), the admission of connections to a server ([`gate`]), and the chunked protocol messages
//! of a scoring run over that channel ([`run`]).

pub mod gate;
pub mod keys;
pub mod run;
pub mod transport;
