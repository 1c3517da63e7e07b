//! ferrolb: an HTTP load balancer and reverse proxy that reads nginx configuration.
//!
//! Layering (dependencies point one way): `config` knows no runtime; `http1` knows no
//! peers; `balance` is pure over peer state kept in `upstream`; `health` updates that
//! state; `proxy` forwards one request using all of them; `server` owns listeners,
//! worker threads and connections; `admin` and `supervise` sit on top.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod admin;
pub mod balance;
pub mod config;
pub mod demo;
pub mod health;
pub mod http1;
pub mod log;
pub mod proxy;
pub mod server;
pub mod supervise;
pub mod upstream;
