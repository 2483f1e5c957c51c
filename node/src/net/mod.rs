//! The network: static keys and invite codes ([`keys`]), the WebSocket carrying a Noise channel
//! ([`transport`]), and the chunked protocol messages of a scoring run over that channel ([`run`]).

pub mod keys;
pub mod run;
pub mod transport;
