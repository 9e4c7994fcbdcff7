//! Protocol messages and their framed, incremental codec (bytes in, bytes out).

mod message;

pub use message::*;
