//! ferrolb: an HTTP load balancer and reverse proxy that reads nginx configuration.
//!
//! Layers, bottom to top; each uses only layers below it (`scripts/test.sh` checks this
//! with `layers.py`):
//!
//! * [`config`]: nginx syntax to typed, validated settings; knows no runtime.
//! * [`log`]: the error log. [`http1`]: the HTTP/1.1 codec; knows no peers.
//! * [`net`]: the transport: buffers, try-first socket I/O, client identity.
//! * [`upstream`]: peers as state (live counters, registry, idle pool, passive
//!   failure accounting, slow start).
//! * [`balance`]: the selectors, one file per method, and the group runtime that picks
//!   and reports.
//! * [`health`]: active health checks.
//! * [`vars`]: nginx variables. [`access_log`]: access logs.
//! * [`proxy`]: forwarding one request (plan, attempts, relay).
//! * [`acme`]: the ACME client that obtains and renews `acme_certificate`s.
//! * [`server`]: listeners, worker threads, client connections, vhosts, locations.
//! * [`admin`]: status, metrics, runtime API, dashboard. [`supervise`]: `ferrolb up`.
//! * [`process`]: start-up, signals, reload. [`demo`]: `ferrolb demo`.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod admission;
pub mod balance;
pub mod config;
pub mod demo;
pub mod health;
pub mod http1;
pub mod log;
pub mod net;
pub mod process;
pub mod proxy;
pub mod server;
pub mod supervise;
pub mod upstream;
pub mod vars;
