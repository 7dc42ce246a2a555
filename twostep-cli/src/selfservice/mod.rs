//! Self-service: users turn two-step login on and manage it for themselves, through a root
//! service that acts only for the caller the kernel names (docs/self-service.md).
//!
//! - `proto`: the request and response lines on the socket;
//! - `server`: `twostep serve-self`, the socket, peer credentials, one thread per connection;
//! - `limits`: connections, requests and password checks per user;
//! - `actions`: what each request does to the caller's own enrollment;
//! - `client`: `twostep self …`, run by the user.

mod actions;
pub mod client;
mod limits;
mod proto;
pub mod server;
