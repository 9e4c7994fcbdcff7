//! Protocol messages and their framed, incremental codec (bytes in, bytes out).
//!
//! [`encode`] appends one frame to a caller-owned buffer; a [`Decoder`] takes
//! the bytes of a stream in any split and yields the messages. No I/O.
//!
//! # Byte layout (protocol version 1)
//!
//! Every integer is fixed-width, unsigned, **big-endian**. There are no
//! varints and no padding.
//!
//! ## Frame
//!
//! | offset | size | field                                          |
//! | ------ | ---- | ---------------------------------------------- |
//! | 0      | 1    | protocol version, `1`                          |
//! | 1      | 1    | message type (below)                           |
//! | 2      | 4    | payload length `L` in bytes (header excluded)  |
//! | 6      | `L`  | payload                                        |
//!
//! A receiver refuses `L > max_frame_len` (default 65536,
//! [`DEFAULT_MAX_FRAME_LEN`]) from the header alone, and refuses a payload
//! with bytes left over after its message.
//!
//! ## Field types
//!
//! - `u8`, `u32`, `u64`: 1, 4, 8 bytes, big-endian.
//! - `bool`: one byte, exactly `0` (false) or `1` (true); any other value is an error.
//! - `tag`: one byte naming an enum variant, numbered from 0 in the order listed.
//! - `option<T>`: `tag` 0 = absent, or 1 followed by `T`.
//! - `cluster`: `u8` length `n` then `n` bytes of UTF-8 (so at most 255 bytes).
//! - `bytes`: `u16` length `n` then `n` bytes.
//! - `trailing<T>`: the last field of a payload only: absent when the
//!   payload ends before it, else `T`. A message without it is byte for
//!   byte the message as it was before the field existed.
//! - `endpoint`: `u16` length `n` (at most 326) then `n` bytes of UTF-8
//!   endpoint text: `[instance@]host:port`, an IPv6 host in brackets
//!   (`AOS01@aos1:2712`, `[::1]:2712`). Writers send this canonical form;
//!   readers accept every form of [`Endpoint`](crate::Endpoint)'s parser
//!   (a missing port means 2712).
//!
//! ## Messages (payloads)
//!
//! | type | message            | payload fields, in order |
//! | ---- | ------------------ | ------------------------ |
//! | 1    | `HandshakeRequest` | request_id `u64`, salt `u64`, load_balance `bool`, cluster `option<cluster>` |
//! | 2    | `HandshakeReply`   | request_id `u64`, outcome `tag` (0 Ranked, 1 Refused), then the outcome |
//! | 3    | `SessionRequest`   | request_id `u64`, credential `trailing<bytes>` (at most 4096 bytes) |
//! | 4    | `SessionReply`     | request_id `u64`, outcome `tag` (0 Accepted, 1 Rejected), then the outcome |
//! | 5    | `WorkloadQuery`    | query_id `u64` |
//! | 6    | `WorkloadReport`   | query_id `u64`, id `u32`, role `tag`, accepting `bool`, connected `u32`, max_sessions `u32` |
//!
//! Type 0 and types above 6 are unknown.
//!
//! - Ranked (outcome 0 of type 2): stale `bool`, count `u32` (at most
//!   `max_list_len`, default 1024, [`DEFAULT_MAX_LIST_LEN`]), then `count`
//!   entries, each: id `u32`, connected `u32`, max_sessions `u32`,
//!   `endpoint`. No two entries share an id or a target (host compared ASCII
//!   case-insensitively, an IPv6 host as an address, and port; the instance
//!   name is a label: [`Endpoint::same_target`](crate::Endpoint::same_target)).
//!   A ranked reply's payload is 14 bytes plus, per entry, 14 plus its
//!   endpoint text; [`entries_that_fit`] says how many entries fit a frame.
//! - Refused (outcome 1 of type 2): reason `tag`: 0 Busy, 1 WrongCluster.
//! - Accepted (outcome 0 of type 4): session_id `u64`.
//! - Rejected (outcome 1 of type 4): reason `tag`: 0 Full, 1 Draining, 2 NotServing, 3 Busy,
//!   4 AlreadyInSession, 5 Unauthorized, 6 AddressLimit.
//! - Credential (of type 3): opaque bytes for the instance's admission policy
//!   (SPEC "Drivers: admission policy"), at most
//!   [`MAX_CREDENTIAL_LEN`] (4096); a longer announced length is
//!   `CredentialTooLong`, refused before anything is allocated for it. An
//!   empty credential (`00 00`) is present, not absent.
//! - role: 0 Serving, 1 LoadBalancerOnly, 2 Standalone.
//! - A `WorkloadReport` must have `connected <= max_sessions`.
//!
//! ## Example
//!
//! `SessionRequest { request_id: 7, credential: None }` is the 14 bytes
//! `01 03 00 00 00 08 00 00 00 00 00 00 00 07`:
//!
//! ```
//! use aos_cluster::wire::{encode, Credential, Decoder, Message, SessionRequest};
//!
//! let msg = Message::SessionRequest(SessionRequest { request_id: 7, credential: None });
//! let mut out = Vec::new();
//! encode(&msg, &mut out).unwrap();
//! assert_eq!(out, [1, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
//!
//! let mut decoder = Decoder::new();
//! decoder.feed(&out[..5]); // a stream may deliver any split
//! assert_eq!(decoder.next(), Ok(None));
//! decoder.feed(&out[5..]);
//! assert_eq!(decoder.next(), Ok(Some(msg)));
//! assert_eq!(decoder.next(), Ok(None));
//!
//! // A credential follows the request id: its u16 length, then its bytes.
//! let credential = Credential::new(*b"tok").unwrap();
//! let msg = Message::SessionRequest(SessionRequest { request_id: 7, credential: Some(credential) });
//! let mut out = Vec::new();
//! encode(&msg, &mut out).unwrap();
//! assert_eq!(out, [1, 3, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 7, 0, 3, b't', b'o', b'k']);
//! ```
//!
//! ## Compatibility of the credential and the admission reasons
//!
//! The credential and reject reasons 5 and 6 extend version 1 without a
//! version change, because they change the meaning of nothing a peer that
//! does not know them sends: a request without a credential is exactly the
//! request such a client writes, and an instance without an admission policy
//! admits it. Only the extensions themselves are foreign to such a peer: an
//! instance that does not know credentials reads a request carrying one as
//! malformed (`TrailingBytes`) and closes the connection, and a client that
//! does not know reasons 5 and 6 reads them as malformed (`UnknownTag`);
//! either way that client's attempt fails and it moves on to the next entry,
//! as for any rejection.
//!
//! ## Errors and resynchronisation
//!
//! An unknown version or an oversized length is fatal: the stream cannot be
//! resynchronised and the decoder repeats that error. Any other malformed
//! frame (its length was known) is reported once and skipped. See
//! [`DecodeError`].

// One concern per file: the values, the layout's numbers, the limits, the
// errors, each direction of the codec, the stream decoder and the duplicate
// finder the codec shares with the client and the configuration.
mod decode;
mod decoder;
pub(crate) mod dedup;
mod encode;
mod error;
mod layout;
mod limits;
mod message;

pub use decoder::Decoder;
/// Test support (feature `test-support`): a frame written without the
/// encoder's checks, for the fuzz bodies to feed the decoder.
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub use encode::write_frame_unchecked;
pub use encode::{encode, encode_with_limits};
pub use error::{DecodeError, Duplicate, EncodeError};
pub use layout::{HEADER_LEN, MAX_CLUSTER_NAME_LEN, MAX_ENDPOINT_TEXT_LEN, PROTOCOL_VERSION};
pub use limits::{entries_that_fit, Limits, DEFAULT_MAX_FRAME_LEN, DEFAULT_MAX_LIST_LEN};
pub use message::*;
